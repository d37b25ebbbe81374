"""What every feature works with: the plugin host and the dataset, loaded after the window shows.

torch, the plugins and the dataset take seconds to load, so ``Backend.start_loading``
runs ``load_backend`` in a worker thread once the window has painted; ``loaded`` is
emitted in the GUI thread when that thread has ended, whatever the outcome.
``cancel()`` (the window closing) makes the loader stop at its next phase and
``loaded`` report nothing: the app may then leave without waiting for it, since
that thread only imports and reads files.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSettings, Signal, Slot

from fmnist_gui.qt.infra.worker import FunctionWorker, Job, load_backend

if TYPE_CHECKING:
    from fmnist_gui.plugins.host import PluginHost
    from fmnist_gui.training.data import FashionMNISTData

DATA_DIR_KEY = "folders/data_dir"


class Backend(QObject):
    """The app's ``PluginHost`` and ``FashionMNISTData`` (both ``None`` until loaded)."""

    loaded = Signal()  # the loading thread has ended (``failed`` came first if it failed)
    failed = Signal(str, str)  # message, traceback: torch or the plugins could not load
    plugins_changed = Signal(object)  # the PluginHost now in use (rebuilt or changed in place)
    progress = Signal(str)  # what the loader is doing, for the status bar

    def __init__(
        self,
        settings: QSettings,
        data_dir: Path | None = None,
        *,
        plugins: PluginHost | None = None,
        plugin_dirs: list[Path] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        from fmnist_gui.system.paths import default_data_root

        self.settings = settings
        # --data-dir wins; otherwise the folder the user chose last time; else the default.
        remembered = str(settings.value(DATA_DIR_KEY, "") or "")
        self.data_dir = Path(data_dir or remembered or default_data_root())
        self.plugin_dirs = plugin_dirs
        self.plugins: PluginHost | None = plugins
        self.data: FashionMNISTData | None = None
        self.data_error = ""
        self._loader: Job | None = None
        self._cancel = threading.Event()
        #: Seconds each loading phase took (torch, plugins, dataset), once loaded.
        self.phases: dict[str, float] = {}

    @property
    def cancelled(self) -> bool:
        """True once ``cancel()`` was called: what the loader brings back is dropped."""
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Stop loading at the next phase; ``loaded`` still follows when the thread ends."""
        self._cancel.set()

    @property
    def loading(self) -> bool:
        """True while the loading thread runs."""
        return self._loader is not None

    def start_loading(self, *, safe_mode: bool = False) -> None:
        """Load torch, the plugins (unless given) and the dataset in a worker thread.

        ``safe_mode``: load the built-in plugins only.
        """
        if self._loader is not None:
            return
        load = functools.partial(
            load_backend,
            safe_mode=safe_mode,
            cancelled=self._cancel,
            progress=self.progress.emit,
        )
        worker = FunctionWorker(load, self.data_dir, self.plugin_dirs, self.plugins)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        self._loader = Job(worker, self)
        self._loader.done.connect(self._on_loader_done)
        self._loader.start()

    @Slot(object)
    def _on_returned(self, result: dict) -> None:
        if self.cancelled:
            return
        self.data, self.data_error = result["data"], result["data_error"]
        self.phases = result["phases"]
        self.set_plugins(result["plugins"])

    @Slot(str, str)
    def _on_errored(self, message: str, details: str) -> None:
        if not self.cancelled:  # a cancelled load ends in LoadCancelledError: nothing to tell
            self.failed.emit(message, details)

    @Slot()
    def _on_loader_done(self) -> None:
        self._loader = None
        self.loaded.emit()

    def set_plugins(self, plugins: PluginHost) -> None:
        """Use ``plugins`` from now on (also after it changed in place: enabled, installed)."""
        self.plugins = plugins
        self.plugins_changed.emit(plugins)

    def set_data(self, data: FashionMNISTData, root: Path) -> None:
        """Use ``data``, found in ``root``; the next launch looks there first."""
        self.data, self.data_dir, self.data_error = data, root, ""
        self.settings.setValue(DATA_DIR_KEY, str(root))

    def save_settings(self) -> None:
        self.settings.setValue(DATA_DIR_KEY, str(self.data_dir))

    def wait(self, timeout_ms: int) -> None:
        """Join the loading thread, if any (when the app shuts down)."""
        if self._loader is not None:
            self._loader.wait(timeout_ms)
