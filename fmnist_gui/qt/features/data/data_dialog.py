"""The "dataset not found" dialog: choose a folder, download it, or copy the system package.

The download runs in a worker thread with a cancellable progress bar
(``fmnist_gui.training.data.download`` reports progress and polls ``should_cancel``
between chunks). Every failure is shown in the dialog; none escapes it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui.qt.infra.worker import Job
from fmnist_gui.training import data as fdata


class DownloadWorker(QObject):
    """``fmnist_gui.training.data.download`` in a thread, progress as a signal, cancellable."""

    started = Signal()
    progress = Signal(str, int, int)
    finished = Signal()
    errored = Signal(str, str)

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = Path(root)
        self.cancel_requested = threading.Event()

    @Slot()
    def run(self) -> None:
        self.started.emit()
        try:
            fdata.download(
                self.root, progress=self.progress.emit, should_cancel=self.cancel_requested.is_set
            )
        except fdata.DownloadCancelled:
            self.errored.emit("The download was cancelled; nothing was left half-written.", "")
        except Exception as exc:  # noqa: BLE001 - shown in the dialog
            self.errored.emit(str(exc), "")
        finally:
            self.finished.emit()


class DataDialog(QDialog):
    """Explains that Fashion-MNIST is missing under ``root`` and offers three ways out.

    After ``exec()`` returns ``Accepted``, ``root`` is a folder holding the data.
    """

    def __init__(
        self,
        root: Path,
        reason: str = "",
        parent: QWidget | None = None,
        system_dir: Path = fdata.SYSTEM_DATASET_DIR,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fashion-MNIST not found")
        self.root = Path(root)
        self.system_dir = Path(system_dir)
        self.job: Job | None = None
        self.worker: DownloadWorker | None = None
        self._error = ""

        text = QLabel(
            f"<p>The training data (Fashion-MNIST, about 30 MB) is not in "
            f"<code>{fdata.raw_folder(self.root)}</code>.</p>"
            "<p>Choose a folder that already holds it, download it from the official "
            "mirrors, or copy it from the system package <code>dataset-fashion-mnist</code>"
            " when that is installed.</p>"
        )
        text.setWordWrap(True)
        self.detail = QLabel(reason)
        self.detail.setWordWrap(True)
        self.detail.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.hide()
        self.status = QLabel()
        self.status.setWordWrap(True)

        buttons = QDialogButtonBox()
        self.choose_button = QPushButton("Choose Folder…")
        self.download_button = QPushButton("Download")
        self.copy_button = QPushButton("Copy from System Package")
        self.copy_button.setEnabled(fdata.system_dataset_available(self.system_dir))
        if not self.copy_button.isEnabled():
            self.copy_button.setToolTip(
                f"Not installed ({self.system_dir} is missing); "
                "apt-get install dataset-fashion-mnist"
            )
        self.cancel_button = QPushButton("Cancel")
        for button, role in (
            (self.choose_button, QDialogButtonBox.ButtonRole.ActionRole),
            (self.download_button, QDialogButtonBox.ButtonRole.ActionRole),
            (self.copy_button, QDialogButtonBox.ButtonRole.ActionRole),
            (self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole),
        ):
            buttons.addButton(button, role)
        self.choose_button.clicked.connect(self.choose_folder)
        self.download_button.clicked.connect(self.start_download)
        self.copy_button.clicked.connect(self.copy_system)
        self.cancel_button.clicked.connect(self.cancel)

        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(self.detail)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self.resize(560, 260)

    # ----- the three ways out -------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with Fashion-MNIST", str(self.root))
        if not folder:
            return
        # Accept either the dataset root or the FashionMNIST/raw folder itself.
        for candidate in (Path(folder), Path(folder).parent.parent, Path(folder).parent):
            if not fdata.missing_files(candidate):
                self.root = candidate
                self.accept()
                return
        self.status.setText(
            f"{folder} does not hold the four files "
            f"({', '.join(fdata.RAW_FILES)}) under FashionMNIST/raw."
        )

    def copy_system(self) -> None:
        try:
            fdata.copy_from_system(self.root, self.system_dir)
        except OSError as exc:
            self.status.setText(
                f"Could not copy into {fdata.raw_folder(self.root)}: {exc.strerror or exc}"
            )
            return
        self.accept()

    def start_download(self) -> None:
        if self.job is not None:
            return
        self.worker = DownloadWorker(self.root)
        self.worker.progress.connect(self._on_progress)
        self.worker.errored.connect(self._on_error)
        self._error = ""
        self.job = Job(self.worker, self)
        self.job.done.connect(self._on_done)
        self.progress.setValue(0)
        self.progress.show()
        self.status.setText("Downloading…")
        for b in (self.choose_button, self.download_button, self.copy_button):
            b.setEnabled(False)
        self.job.start()

    def cancel(self) -> None:
        if self.worker is not None and self.job is not None:
            self.worker.cancel_requested.set()
            self.status.setText("Cancelling…")
            return  # _on_done closes nothing: the user can try again or close
        self.reject()

    def reject(self) -> None:
        if self.job is not None:  # never leave a running download behind
            if self.worker is not None:
                self.worker.cancel_requested.set()
            self.job.wait(10_000)
        super().reject()

    @Slot(str, int, int)
    def _on_progress(self, name: str, done: int, total: int) -> None:
        if total:
            self.progress.setRange(0, 100)
            self.progress.setValue(int(100 * done / total))
        else:
            self.progress.setRange(0, 0)
        self.status.setText(f"Downloading {name}: {done / 1e6:.1f} MB")

    @Slot(str, str)
    def _on_error(self, message: str, _details: str) -> None:
        self._error = message

    @Slot()
    def _on_done(self) -> None:
        self.job = None
        self.worker = None
        if not self._error and not fdata.missing_files(self.root):
            self.accept()
            return
        self.progress.hide()
        self.status.setText(self._error or "The download did not complete.")
        self.choose_button.setEnabled(True)
        self.download_button.setEnabled(True)
        self.copy_button.setEnabled(fdata.system_dataset_available(self.system_dir))
