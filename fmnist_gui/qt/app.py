"""``fmnist-gui``: start the desktop app.

The window is shown before torch (and pyqtgraph) are imported: both take
seconds to import, so they load after the first paint (``MainWindow.start_loading``)
while the window already tells the user what it is doing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

_LAUNCHED = time.perf_counter()


def build_parser() -> argparse.ArgumentParser:
    from fmnist_gui import __version__

    p = argparse.ArgumentParser(
        prog="fmnist-gui",
        description="Train the PyTorch tutorial's Fashion-MNIST network in a desktop app.",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="dataset root (default: the last folder used, else the app's data folder)",
    )
    p.add_argument(
        "--plugin-dir",
        type=Path,
        action="append",
        default=None,
        metavar="DIR",
        help="load *.py plugins from DIR instead of the user plugin folder",
    )
    p.add_argument("--version", action="version", version=f"fmnist-gui {__version__}")
    return p


def _seconds_since_start() -> float:
    """Seconds since this process started (Linux), else since this module was imported."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _LAUNCHED


class _FirstPaint:
    """Calls ``callback`` once, after ``widget``'s first paint event."""

    def __init__(self, widget, callback) -> None:
        from PySide6.QtCore import QEvent, QObject

        outer = self

        class Filter(QObject):
            def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
                if event.type() == QEvent.Type.Paint and outer.callback is not None:
                    callback, outer.callback = outer.callback, None
                    widget.removeEventFilter(self)
                    callback()
                return False

        self.callback = callback
        self.filter = Filter()
        widget.installEventFilter(self.filter)


def app_icon():
    from importlib.resources import as_file, files

    from PySide6.QtGui import QIcon

    with as_file(files("fmnist_gui.resources") / "fmnist-gui.svg") as path:
        return QIcon(str(path))


def main(argv: list[str] | None = None) -> int:
    args, qt_args = build_parser().parse_known_args(argv)

    from fmnist_gui.qt import preflight

    # Before any Qt module loads: a missing X11 library makes Qt abort the process.
    problem = preflight.check()
    if problem is not None:
        print(problem.message, file=sys.stderr)
        return 1

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from fmnist_gui.qt.shell.main_window import SETTINGS_APP, SETTINGS_ORG, MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    app.setOrganizationName(SETTINGS_ORG)
    app.setApplicationName(SETTINGS_APP)
    app.setApplicationDisplayName("Fashion-MNIST Trainer")
    app.setDesktopFileName("fmnist-gui")
    app.setWindowIcon(app_icon())

    window = MainWindow(args.data_dir, plugin_dirs=args.plugin_dir)
    # The slow imports start once the window has painted itself for the first time.
    first_paint = _FirstPaint(window.statusBar(), lambda: QTimer.singleShot(0, shown))
    window.show()

    def shown() -> None:
        # FMNIST_GUI_REPORT_STARTUP: benchmarks/bench_gui.py reads this line.
        if os.environ.get("FMNIST_GUI_REPORT_STARTUP"):
            print(
                f"fmnist-gui: visible after {_seconds_since_start():.3f} s "
                f"(torch imported: {'torch' in sys.modules})",
                flush=True,
            )
        window.start_loading()

    status = app.exec()
    del first_paint
    window.shutdown()  # every worker thread is joined here; settings were saved on close
    if os.environ.get("FMNIST_GUI_FULL_TEARDOWN"):
        return status
    # Tearing the interpreter down with torch loaded takes 1.5-3.5 s on a busy
    # 2-core machine (measured), past the 2 s a closing window may take; nothing
    # is left to flush but the standard streams, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
