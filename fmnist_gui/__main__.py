"""``python -m fmnist_gui`` opens the desktop app (same as ``fmnist-gui``)."""

import sys

from fmnist_gui.qt.app import main

if __name__ == "__main__":
    sys.exit(main())
