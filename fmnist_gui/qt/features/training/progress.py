"""The Progress box of the training form: epoch and run bars, elapsed, remaining, speed, lr."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QProgressBar, QWidget


def format_duration(seconds: float | None) -> str:
    """``m:ss`` or ``h:mm:ss``; a dash when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressPanel(QGroupBox):
    """Epoch and run progress bars, elapsed time, ETA, samples/s and learning rate."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Progress", parent)
        self.epoch_bar = QProgressBar()
        self.epoch_bar.setObjectName("epoch_progress")
        self.run_bar = QProgressBar()
        self.run_bar.setObjectName("run_progress")
        for bar in (self.epoch_bar, self.run_bar):
            bar.setRange(0, 1000)
            bar.setValue(0)
            bar.setTextVisible(True)
        self.epoch_bar.setFormat("Epoch –")
        self.run_bar.setFormat("Run –")
        self.elapsed = QLabel("–")
        self.eta = QLabel("–")
        self.speed = QLabel("–")
        self.lr = QLabel("–")
        form = QFormLayout(self)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Epoch:", self.epoch_bar)
        form.addRow("Run:", self.run_bar)
        form.addRow("Elapsed:", self.elapsed)
        form.addRow("Remaining:", self.eta)
        form.addRow("Speed:", self.speed)
        form.addRow("Learning rate:", self.lr)

    def show_position(
        self, epoch: int, batch: int, num_batches: int, epochs_done: int, total_epochs: int
    ) -> None:
        """``batch`` batches of epoch ``epoch`` (1-based) are done."""
        num_batches = max(num_batches, 1)
        total = max(total_epochs, 1) * num_batches
        done = epochs_done * num_batches + (batch if epoch > epochs_done else 0)
        self._set_bar(
            self.epoch_bar,
            int(1000 * batch / num_batches),
            f"{epoch}: {batch}/{num_batches} batches",
        )
        self._set_bar(
            self.run_bar,
            int(1000 * min(done, total) / total),
            f"{epochs_done}/{total_epochs} epochs ({100 * done / total:.0f}%)",
        )

    def clear(self) -> None:
        """No position to show (no model): empty bars and dashes."""
        for bar, text in ((self.epoch_bar, "Epoch –"), (self.run_bar, "Run –")):
            bar.setValue(0)
            bar.setFormat(text)
        for label in (self.elapsed, self.eta, self.speed, self.lr):
            label.setText("–")

    @staticmethod
    def _set_bar(bar: QProgressBar, value: int, text: str) -> None:
        # QProgressBar.setValue repaints at once, synchronously (a round trip to
        # the display server, ~1 ms each); with updates off, the change is drawn
        # with the rest of the window in the next paint instead.
        bar.setUpdatesEnabled(False)
        bar.setValue(value)
        bar.setFormat(text)
        bar.setUpdatesEnabled(True)
