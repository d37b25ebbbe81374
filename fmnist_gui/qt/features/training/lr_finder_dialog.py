"""The "Find LR…" window: the learning-rate range test, run off the GUI thread.

The test itself is ``fmnist_gui.training.lr_finder``; here it runs in a
``FunctionWorker`` on its own ``Job``. The worker thread appends the points to
the finder's curve, and a timer in the GUI thread draws what arrived (loss
against lr on a log axis), as the Training tab's plots do. Stop ends the test
at the next batch; Apply hands the suggested lr to ``apply`` (the form's lr
for a new model, a live change for the current one).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui.qt.infra.worker import FunctionWorker, Job
from fmnist_gui.qt.widgets.plotting import StripLegend

if TYPE_CHECKING:
    from fmnist_gui.training.config import TrainConfig
    from fmnist_gui.training.lr_finder import FinderEnd, LRFinder

DRAW_MS = 100


@dataclass
class FinderInputs:
    """What one range test runs on: the settings and where the weights come from."""

    config: TrainConfig
    data: Any
    plugins: Any
    # A state_dict copied now, a Future of a training state (taken at a batch
    # boundary by a running model's driver), or None for fresh weights.
    weights: dict[str, Any] | Future | None
    target: str  # what Apply changes, in words


class LRFinderDialog(QDialog):
    """Runs range tests for ``inputs()`` and hands a chosen lr to ``apply``."""

    applied = Signal(float)

    def __init__(
        self,
        inputs: Callable[[], FinderInputs | str],
        apply: Callable[[float], str],
        target: Callable[[], str],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("lr_finder")
        self.setWindowTitle("Find the learning rate")
        self._inputs, self._apply, self._target = inputs, apply, target
        self.job: Job | None = None
        self.finder: LRFinder | None = None
        self.end: FinderEnd | None = None
        self._stop = threading.Event()
        self._drawn = 0
        self._build()
        self.timer = QTimer(self)
        self.timer.setInterval(DRAW_MS)
        self.timer.timeout.connect(self.draw)
        self._update_buttons()

    def _build(self) -> None:
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)
        dark = background.lightness() < 128
        self.intro = QLabel(
            "Trains a copy of the model while the learning rate rises exponentially, and "
            "suggests the lr where the loss falls fastest. The model itself is not touched."
        )
        self.intro.setWordWrap(True)
        self.start_edit = QLineEdit("1e-7")
        self.start_edit.setObjectName("finder_start_lr")
        self.end_edit = QLineEdit("10")
        self.end_edit.setObjectName("finder_end_lr")
        self.steps_spin = QSpinBox()
        self.steps_spin.setObjectName("finder_steps")
        self.steps_spin.setRange(10, 10_000)
        self.steps_spin.setValue(300)
        self.steps_spin.setToolTip("At most this many batches; an exploding loss ends it sooner.")
        for edit in (self.start_edit, self.end_edit):
            edit.setMaximumWidth(70)
        settings = QHBoxLayout()
        for text, widget in (
            ("lr from", self.start_edit),
            ("to", self.end_edit),
            ("over", self.steps_spin),
        ):
            settings.addWidget(QLabel(text))
            settings.addWidget(widget)
        settings.addWidget(QLabel("batches"))
        settings.addStretch(1)

        self.plot = pg.PlotWidget(background=background)
        self.plot.setObjectName("finder_plot")
        item = self.plot.getPlotItem()
        item.setLogMode(x=True, y=False)
        item.setLabel("bottom", "Learning rate (log scale)", color=foreground)
        item.setLabel("left", "Loss", color=foreground)
        for name in ("left", "bottom"):
            axis = item.getAxis(name)
            axis.setPen(foreground)
            axis.setTextPen(foreground)
            axis.enableAutoSIPrefix(False)  # lrs read as 0.001, not "1 (x0.001)"
        item.showGrid(x=True, y=True, alpha=0.15)
        StripLegend(item, foreground)
        raw = (120, 160, 220, 110) if dark else (70, 110, 190, 90)
        smooth = (110, 170, 255) if dark else (31, 87, 180)
        self.raw_curve = item.plot(pen=pg.mkPen(raw, width=1), name="loss")
        self.smooth_curve = item.plot(pen=pg.mkPen(smooth, width=2), name="smoothed")
        self.suggestion_line = pg.InfiniteLine(
            angle=90,
            movable=False,
            pen=pg.mkPen("#2ca02c", width=2, style=Qt.PenStyle.DashLine),
            label="",
            labelOpts={"position": 0.85, "color": "#2ca02c"},
        )
        self.suggestion_line.hide()
        item.addItem(self.suggestion_line)
        self.plot.setMinimumSize(320, 160)

        self.status = QLabel("Press Start.")
        self.status.setObjectName("finder_status")
        self.status.setWordWrap(True)
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("finder_start")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("finder_stop")
        self.stop_button.clicked.connect(self.stop)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setObjectName("finder_apply")
        self.apply_button.clicked.connect(self.apply_suggestion)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        buttons.addWidget(self.apply_button)
        buttons.addWidget(close)

        column = QVBoxLayout(self)
        column.addWidget(self.intro)
        column.addLayout(settings)
        column.addWidget(self.plot, 1)
        column.addWidget(self.status)
        column.addLayout(buttons)
        self.resize(560, 460)

    # ----- the test ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job is not None

    @property
    def suggestion(self) -> float | None:
        return self.end.suggestion if self.end is not None else None

    def start(self) -> bool:
        """Start a range test in a worker thread; False (with the reason shown) if it cannot."""
        from fmnist_gui.errors import FmnistError
        from fmnist_gui.training.lr_finder import FinderSettings

        if self.job is not None:
            return False
        try:
            settings = FinderSettings(
                start_lr=float(self.start_edit.text()),
                end_lr=float(self.end_edit.text()),
                num_steps=self.steps_spin.value(),
            ).validate()
        except (ValueError, FmnistError) as exc:
            self.status.setText(f"Cannot start: {exc}")
            return False
        inputs = self._inputs()
        if isinstance(inputs, str):
            self.status.setText(f"Cannot start: {inputs}")
            return False
        self.finder = None
        self.end = None
        self._drawn = 0
        self._stop = threading.Event()
        self.raw_curve.setData([], [])
        self.smooth_curve.setData([], [])
        self.suggestion_line.hide()
        self.status.setText(f"Running on a copy of {inputs.target}…")
        worker = FunctionWorker(self._run, inputs, settings, self._stop)
        worker.returned.connect(self._on_end)
        worker.errored.connect(self._on_error)
        self.job = Job(worker, self)
        self.job.done.connect(self._on_done)
        self.job.start()
        self.timer.start()
        self._update_buttons()
        return True

    def _run(self, inputs: FinderInputs, settings, stop: threading.Event) -> FinderEnd:
        # The worker thread: wait for a running model's weights, then the whole test.
        from fmnist_gui.training.lr_finder import LRFinder

        weights = inputs.weights
        if isinstance(weights, Future):
            weights = weights.result()["model"]
        self.finder = LRFinder(
            inputs.config,
            inputs.data,
            inputs.plugins,
            weights=weights,
            settings=settings,
            stop=stop,
        )
        return self.finder.run_to_end()

    def stop(self) -> None:
        """End the test at the next batch."""
        self._stop.set()
        if self.job is not None:
            self.status.setText("Stopping…")

    def _on_end(self, end: FinderEnd) -> None:
        self.end = end
        self.draw()
        if end.status == "failed":
            self.status.setText(f"The test failed: {end.message}")
            return
        how = {
            "finished": "Done",
            "exploded": f"Done ({end.message})",
            "stopped": "Stopped",
        }.get(end.status, end.status)
        if end.suggestion is None:
            self.status.setText(
                f"{how}: the loss does not clearly fall anywhere in this range, so there is "
                "no suggestion (a model that has trained already often shows this)."
            )
        else:
            self.status.setText(
                f"{how}. Suggested learning rate: {end.suggestion:.3g} "
                f"(steepest fall of the smoothed loss). Apply sets it for {self._target()}."
            )

    def _on_error(self, message: str, _details: str) -> None:
        self.status.setText(f"The test failed: {message}")

    def _on_done(self) -> None:
        self.job = None
        self.timer.stop()
        self.draw()
        self._update_buttons()

    def draw(self) -> None:
        """Draw the points that arrived since the last call, and the suggestion once known."""
        finder = self.finder
        if finder is not None:
            curve = finder.curve
            n = len(curve.smoothed)  # the worker appends lrs, losses, then smoothed
            if n != self._drawn:
                self._drawn = n
                self.raw_curve.setData(curve.lrs[:n], curve.losses[:n])
                self.smooth_curve.setData(curve.lrs[:n], curve.smoothed[:n])
                self._fit_y(curve.smoothed[:n])
        suggestion = self.suggestion
        if suggestion is not None:
            self.suggestion_line.setValue(math.log10(suggestion))
            self.suggestion_line.label.setFormat(f"suggested {suggestion:.3g}")
            self.suggestion_line.show()
        self._update_buttons()

    def _fit_y(self, smoothed: list[float]) -> None:
        # From the lowest smoothed loss to the highest before it, with a margin: the
        # spike of the raw losses where the test explodes would flatten the descent.
        finite = [v for v in smoothed if math.isfinite(v)]
        if len(finite) < 2:
            return
        lowest = min(finite)
        highest = max(finite[: finite.index(lowest) + 1])
        span = max(highest - lowest, 1e-3)
        view = self.plot.getPlotItem().getViewBox()
        bottom = lowest - 0.15 * span
        view.setYRange(max(bottom, 0.0) if lowest >= 0 else bottom, highest + 0.3 * span, padding=0)

    def apply_suggestion(self) -> None:
        """Hand the suggested lr to ``apply``; its answer ("" when done) is shown."""
        if self.suggestion is None:
            return
        problem = self._apply(self.suggestion)
        if problem:
            self.status.setText(f"Not applied: {problem}")
        else:
            self.status.setText(f"Applied lr {self.suggestion:.3g} to {self._target()}.")
            self.applied.emit(self.suggestion)

    def _update_buttons(self) -> None:
        running = self.job is not None
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.apply_button.setEnabled(not running and self.suggestion is not None)
        for widget in (self.start_edit, self.end_edit, self.steps_spin):
            widget.setEnabled(not running)

    def wait(self, msecs: int) -> bool:
        """Stop the test and wait for its thread (closing the app); True when it ended."""
        self._stop.set()
        return self.job.wait(msecs) if self.job is not None else True

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        # The thread ends at the next batch by itself; nothing waits for it here.
        self._stop.set()
        super().closeEvent(event)


__all__ = ["FinderInputs", "LRFinderDialog"]
