"""Command-line options that every entry point spells the same way.

``fmnist-train``, ``fmnist-sweep`` and the app all take a dataset folder and plugin
folders; defining those options once keeps their names, types and help in step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist_gui.system.paths import default_data_root


def add_data_options(
    parser: argparse.ArgumentParser,
    *,
    data_dir_help: str | None = None,
    no_download: bool = True,
) -> None:
    """Add ``--data-dir DIR`` and, unless ``no_download`` is false, ``--no-download``."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=data_dir_help or f"dataset root (default {default_data_root()})",
    )
    if no_download:
        parser.add_argument("--no-download", action="store_true", help="never download the dataset")


def add_plugin_dir_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--plugin-dir DIR`` (repeatable): load plugins from DIR instead of the user folder."""
    parser.add_argument(
        "--plugin-dir",
        type=Path,
        action="append",
        default=None,
        metavar="DIR",
        help="load *.py plugins from DIR instead of the user plugin folder",
    )
