"""``fmnist-train``: the tutorial's training run from the command line.

It prints the tutorial's lines exactly (``Epoch N``, ``loss: ...``,
``Test Error:``, `` Accuracy: ...``, ``Done!``). Bad input is one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TextIO

from fmnist_gui import __version__
from fmnist_gui.config import ConfigError, TrainConfig
from fmnist_gui.paths import default_data_root
from fmnist_gui.tutorial_log import format_event

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = _ArgumentParser(
        prog="fmnist-train",
        description="Train the PyTorch tutorial's Fashion-MNIST network. "
        "Defaults are the tutorial's.",
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate, default {d.lr:g}")
    p.add_argument("--optimizer", default=d.optimizer, metavar="NAME",
                   help=f"an installed optimizer plugin (default {d.optimizer}; "
                   "see --list-plugins)")
    p.add_argument("--opt-param", action="append", default=[], metavar="KEY=VALUE",
                   help="an optimizer hyperparameter, e.g. momentum=0.9 (repeatable)")
    p.add_argument("--loss", default=d.loss, metavar="NAME",
                   help=f"an installed loss plugin (default {d.loss})")
    p.add_argument("--loss-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a loss hyperparameter (repeatable)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed torch first, as torch.manual_seed(S) at the top of the "
                   "tutorial's script")
    p.add_argument("--shuffle", action="store_true",
                   help="shuffle the training set each epoch (the tutorial does not)")
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help=f"dataset root (default {default_data_root()})")
    p.add_argument("--no-download", action="store_true",
                   help="never download the dataset")
    p.add_argument("--prepare-data", action="store_true",
                   help="make sure the dataset is under the data folder, then exit")
    p.add_argument("--metrics-json", type=Path, default=None, metavar="PATH",
                   help="write one JSON object per epoch (JSON Lines)")
    p.add_argument("--plugin-dir", type=Path, action="append", default=None, metavar="DIR",
                   help="load *.py plugins from DIR instead of the user plugin folder")
    p.add_argument("--list-plugins", action="store_true",
                   help="list the installed plugins, errors included, and exit")
    p.add_argument("--version", action="version", version=f"fmnist-train {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv, sys.stdout)
    except UsageError as exc:
        print(f"fmnist-train: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fmnist-train: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None, out: TextIO) -> int:
    args = build_parser().parse_args(argv)

    # Imports that pull in torch wait until the arguments are known to be sane.
    from fmnist_gui.data import DataError, ensure_dataset, load_dataset, raw_folder
    from fmnist_gui.engine import EpochEnd, PluginFailure, RunEnd, Trainer
    from fmnist_gui.plugin_manager import UnknownPluginError, get_plugin_manager
    from fmnist_gui.specs import ParamError

    plugins = get_plugin_manager(args.plugin_dir)
    if args.list_plugins:
        print_plugins(plugins, out)
        return EXIT_OK

    try:
        opt_params = plugins.optimizer(args.optimizer).parse_assignments(args.opt_param)
        loss_params = plugins.loss(args.loss).parse_assignments(args.loss_param)
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            optimizer=args.optimizer, optimizer_params=opt_params,
            loss=args.loss, loss_params=loss_params,
            seed=args.seed, shuffle=args.shuffle, device=args.device,
        ).validate()
    except (ConfigError, ParamError, UnknownPluginError) as exc:
        raise UsageError(str(exc)) from None

    data_root = args.data_dir or default_data_root()
    if args.prepare_data:
        try:
            ensure_dataset(data_root, allow_download=not args.no_download)
        except DataError as exc:
            raise UsageError(str(exc)) from None
        print(f"Fashion-MNIST is ready in {raw_folder(data_root)}", file=out)
        return EXIT_OK
    metrics = _open_metrics(args.metrics_json)
    try:
        data = load_dataset(data_root, allow_download=not args.no_download)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    try:
        trainer = Trainer(config, data, plugins)
    except (ConfigError, ParamError, UnknownPluginError, PluginFailure) as exc:
        raise UsageError(str(exc)) from None

    with metrics or contextlib.nullcontext():
        for event in trainer.run():
            # The same lines as the desktop app's log panel (fmnist_gui.tutorial_log).
            line = format_event(event)
            if line is not None:
                print(line, file=out)
            if isinstance(event, EpochEnd):
                if metrics is not None:
                    metrics.write(json.dumps(event.as_dict()) + "\n")
                    metrics.flush()
            elif isinstance(event, RunEnd):
                if event.status == "finished":
                    return EXIT_OK
                print(f"fmnist-train: {event.status}: {event.message}", file=sys.stderr)
                return EXIT_FAILED
    return EXIT_FAILED


def print_plugins(plugins, out: TextIO) -> None:
    """The plugin table (the manager dialog's columns), then every plugin's problem.

    A failed or untrusted plugin, or one whose optimizer failed the self-test,
    gets an ``error in plugin NAME (LOCATION): ...`` line; problems not tied
    to one plugin (an unreadable plugin folder) a ``warning:`` line.
    """
    rows = [("PLUGIN", "SOURCE", "VERSION", "STATUS", "PROVIDES")]
    for r in plugins.records.values():
        status = r.status + (f" ({len(r.rejected)} rejected)" if r.rejected else "")
        rows.append((r.name, r.source, r.version or "-", status, ", ".join(r.provides) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True))
        print(f"{cells}  {row[4]}", file=out)
    for r in plugins.errors:
        print(f"error in plugin {r.name} ({r.location}): {r.error}", file=out)
    for warning in plugins.warnings:
        print(f"warning: {warning}", file=out)


def _open_metrics(path: Path | None):
    if path is None:
        return None
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write --metrics-json {path}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    sys.exit(main())
