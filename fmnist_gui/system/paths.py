"""Per-user folders, following each platform's convention (no Qt here).

The CLI and the GUI must agree on these, so they live below both. The
``FMNIST_GUI_HOME`` environment variable moves everything at once (tests and
portable installs use it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_DIR_NAME = "fmnist-gui"


def user_data_dir() -> Path:
    """Where the app keeps data it owns: the dataset, user plugins, autosaves."""
    override = os.environ.get("FMNIST_GUI_HOME")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / APP_DIR_NAME


def default_data_root() -> Path:
    """The dataset root: torchvision's ``FashionMNIST/raw`` layout lives under it."""
    return user_data_dir() / "data"


def user_plugin_dir() -> Path:
    """The folder of single-file ``*.py`` plugins."""
    return user_data_dir() / "plugins"
