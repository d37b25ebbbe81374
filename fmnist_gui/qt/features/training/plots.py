"""The live plots of the Training tab (pyqtgraph).

Data and drawing are apart, as in pyqtgraph's ``examples/scrollingPlots.py``:
the training worker's ``batch_loss(step, loss)`` signal and each ``EpochEnd``
only append to the plot's buffers (``add_loss``, ``add_epoch``); the window's
paced frame timer calls ``draw()``, which extends the smoothed curve by what
arrived since the last frame and calls ``setData`` once per curve, with
clip-to-view and peak downsampling so long runs stay cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui.qt.widgets.plotting import StripLegend, debiased_ema

if TYPE_CHECKING:
    from fmnist_gui.training.events import EpochEnd

X_STEPS, X_EPOCHS = "steps", "epochs"
DIVERGENCE_COLOR = "#d62728"
CHANGE_COLOR = "#9467bd"  # live hyperparameter changes
# The lr curve changes slowly (or not at all): redrawn at most this often while training.
LR_SECONDS = 1.0
# The lr axis runs from 0 to this much above the largest lr shown: a constant lr is a
# line clear of the plot's top edge, and a schedule's fall reads as a fall toward 0.
LR_HEADROOM = 1.25


class _Buffer:
    """A growable float array: appends amortised O(1), views without copies."""

    def __init__(self, capacity: int = 4096) -> None:
        self.data = np.empty(capacity, dtype=np.float64)
        self.size = 0

    def extend(self, values: np.ndarray | Sequence[float]) -> None:
        n = len(values)
        if self.size + n > len(self.data):
            grown = np.empty(max(2 * len(self.data), self.size + n), dtype=np.float64)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : self.size + n] = values
        self.size += n

    def view(self) -> np.ndarray:
        return self.data[: self.size]

    def clear(self) -> None:
        self.size = 0


class TrainingPlots(QWidget):
    """Training loss per batch (raw and smoothed), test loss and test accuracy per epoch."""

    smoothing_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.smoothing = 0.9
        self.x_mode = X_STEPS
        self.steps_per_epoch = 1
        self._steps = _Buffer()
        self._losses = _Buffer()
        self._smoothed = _Buffer()
        self._ema_state: tuple[float, int] = (0.0, 0)
        # Arrived since the last draw(): appended by add_loss, one call per batch.
        self._new_steps: list[int] = []
        self._new_losses: list[float] = []
        self._epochs: list[EpochEnd] = []
        self._epochs_drawn = 0
        self._lrs = _Buffer()
        self._lrs_drawn_at = 0.0
        self._changes_marked = 0
        self._change_marks: list[tuple[int, pg.InfiniteLine]] = []
        self.planned_steps = 0
        self._fitting = True
        self._build()
        self.loss_plot.getPlotItem().getViewBox().sigRangeChangedManually.connect(
            self._on_loss_view_changed_manually
        )

    # ----- building ---------------------------------------------------------------
    def _build(self) -> None:
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)
        dark = background.lightness() < 128
        self._raw_color = (120, 160, 220, 90) if dark else (70, 110, 190, 70)
        self._smooth_color = (110, 170, 255) if dark else (31, 87, 180)
        self._test_color = (255, 150, 60) if dark else (214, 94, 0)
        self._acc_color = (80, 200, 120) if dark else (0, 140, 70)

        controls = QHBoxLayout()
        controls.setContentsMargins(4, 0, 4, 0)
        controls.addWidget(QLabel("Smoothing:"))
        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal)
        self.smoothing_slider.setRange(0, 999)
        self.smoothing_slider.setValue(int(self.smoothing * 1000))
        self.smoothing_slider.setMaximumWidth(220)
        self.smoothing_slider.setToolTip(
            "Weight of the exponential moving average drawn over the raw batch losses "
            "(debiased, as in TensorBoard). 0 draws the raw values."
        )
        self.smoothing_label = QLabel(f"{self.smoothing:.3f}")
        self.smoothing_label.setMinimumWidth(40)
        self.smoothing_slider.valueChanged.connect(lambda v: self.set_smoothing(v / 1000))
        controls.addWidget(self.smoothing_slider)
        controls.addWidget(self.smoothing_label)
        controls.addSpacing(24)
        controls.addWidget(QLabel("X axis:"))
        self.x_axis_combo = QComboBox()
        self.x_axis_combo.addItem("Steps", X_STEPS)
        self.x_axis_combo.addItem("Epochs", X_EPOCHS)
        self.x_axis_combo.setToolTip(
            "Show the training loss against optimizer steps (batches) or against epochs"
        )
        self.x_axis_combo.currentIndexChanged.connect(
            lambda _i: self.set_x_mode(self.x_axis_combo.currentData())
        )
        controls.addWidget(self.x_axis_combo)
        controls.addStretch(1)

        def make_plot(title: str, left: str, bottom: str, grid: bool) -> pg.PlotWidget:
            widget = pg.PlotWidget(background=background)
            item = widget.getPlotItem()
            item.setTitle(title, color=foreground, size="11pt")
            for name in ("left", "bottom"):
                axis = item.getAxis(name)
                axis.setPen(foreground)
                axis.setTextPen(foreground)
                # Losses of 0.42 read as 0.42, not "420 (x0.001)".
                axis.enableAutoSIPrefix(False)
            item.setLabel("left", left, color=foreground)
            item.setLabel("bottom", bottom, color=foreground)
            # A grid is drawn by the axes across the whole view, with alpha: on the live
            # loss plot that repaint held the GIL for 50-100 ms per frame (measured) and
            # stalled the training thread, so only the per-epoch plots, which change
            # once an epoch, get one.
            item.showGrid(x=grid, y=grid, alpha=0.15)
            widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
            widget.setMinimumHeight(150)
            return widget

        self.loss_plot = make_plot("Training loss per batch", "Loss", "Step (batches)", grid=False)
        item = self.loss_plot.getPlotItem()
        StripLegend(item, foreground)
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        self.raw_curve = item.plot(pen=pg.mkPen(self._raw_color, width=1), name="raw")
        self.smooth_curve = item.plot(pen=pg.mkPen(self._smooth_color, width=2), name="smoothed")
        self._build_lr_axis(item, foreground, dark)
        # A 2 px line was most of a frame's cost (Qt strokes each wide segment). The
        # smoothed curve barely moves from one batch to the next, so one vertex per
        # 2 px of plot, each the mean of the batches it covers, draws the same line
        # at half the frame time; zooming in (clip-to-view) brings every point back.
        self.smooth_curve.opts["autoDownsampleFactor"] = 0.5
        self.smooth_curve.setDownsampling(auto=True, method="mean")
        # pyqtgraph's downsampling leaves out the last, partial bucket: the line stops
        # up to ~3 px short of the newest batch. A separate undownsampled tail closed
        # that gap but cost 40% more per frame (measured), so the gap stays.

        self.test_loss_plot = make_plot("Test loss per epoch", "Loss", "Epoch", grid=True)
        item = self.test_loss_plot.getPlotItem()
        StripLegend(item, foreground)
        self.test_loss_curve = item.plot(
            pen=pg.mkPen(self._test_color, width=2),
            symbol="o",
            symbolSize=6,
            symbolBrush=self._test_color,
            symbolPen=None,
            name="test loss",
        )
        self.train_epoch_curve = item.plot(
            pen=pg.mkPen(self._smooth_color, width=2, style=Qt.PenStyle.DashLine),
            symbol="s",
            symbolSize=5,
            symbolBrush=self._smooth_color,
            symbolPen=None,
            name="train loss (mean)",
        )

        self.accuracy_plot = make_plot(
            "Test accuracy per epoch", "Accuracy (%)", "Epoch", grid=True
        )
        item = self.accuracy_plot.getPlotItem()
        StripLegend(item, foreground)
        self.accuracy_curve = item.plot(
            pen=pg.mkPen(self._acc_color, width=2),
            symbol="o",
            symbolSize=6,
            symbolBrush=self._acc_color,
            symbolPen=None,
            name="test accuracy",
        )

        bottom = QHBoxLayout()
        bottom.setSpacing(6)
        bottom.addWidget(self.test_loss_plot)
        bottom.addWidget(self.accuracy_plot)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 6, 4, 4)
        layout.setSpacing(6)
        layout.addLayout(controls)
        layout.addWidget(self.loss_plot, 3)
        layout.addLayout(bottom, 2)

    def _build_lr_axis(self, item: pg.PlotItem, foreground, dark: bool) -> None:
        # The lr the schedule (or a live change) set, on its own axis at the right of
        # the loss plot: a view box of its own, its x linked to the loss's.
        color = (170, 130, 220) if dark else (120, 70, 170)
        self.lr_view = pg.ViewBox(enableMouse=False)
        item.showAxis("right")
        item.scene().addItem(self.lr_view)
        right = item.getAxis("right")
        right.linkToView(self.lr_view)
        right.setPen(foreground)
        right.setTextPen(color)
        right.enableAutoSIPrefix(False)
        right.setLabel("Learning rate", color=pg.mkColor(color).name())
        self.lr_view.setXLink(item)
        # Not fitted automatically: a flat line (a constant lr) would get an axis
        # centred on it, half of it negative (see _redraw_lrs).
        self.lr_view.disableAutoRange(axis=pg.ViewBox.YAxis)
        self.lr_curve = pg.PlotDataItem(
            pen=pg.mkPen(color, width=1.5, style=Qt.PenStyle.DashLine), name="lr"
        )
        self.lr_curve.setDownsampling(auto=True, method="subsample")
        self.lr_curve.setClipToView(True)
        self.lr_view.addItem(self.lr_curve)
        if item.legend is not None:
            item.legend.addItem(self.lr_curve, "lr")
        main = item.getViewBox()

        def follow() -> None:
            self.lr_view.setGeometry(main.sceneBoundingRect())

        main.sigResized.connect(follow)
        follow()

    # ----- data -------------------------------------------------------------------
    @property
    def point_count(self) -> int:
        """How many batch losses the plot holds, drawn or not yet."""
        return self._losses.size + len(self._new_losses)

    @Slot(int, float)
    def add_loss(self, step: int, loss: float) -> None:
        """One batch's loss (``step`` counts from 1); drawn at the next ``draw()``.

        Called once per batch, in the GUI thread: it only appends.
        """
        self._new_steps.append(step)
        self._new_losses.append(loss)

    def add_epoch(self, epoch: EpochEnd) -> None:
        """One epoch's test results; drawn at the next ``draw()``."""
        self._epochs.append(epoch)

    def set_history(self, losses: Sequence[float], epochs: Sequence[EpochEnd]) -> None:
        """Hold exactly a whole history (steps 1, 2, …), e.g. of a loaded checkpoint."""
        self.clear()
        self._new_steps = list(range(1, len(losses) + 1))
        self._new_losses = list(losses)
        self._epochs = list(epochs)

    def draw(self, steps_per_epoch: int | None = None, planned_steps: int = 0) -> bool:
        """Draw what arrived since the last call; True when anything changed.

        ``planned_steps`` (all the steps of the run) fixes the x range while the
        view is fitted automatically, so the curve grows across a still axis.
        """
        if steps_per_epoch and steps_per_epoch != self.steps_per_epoch:
            self.steps_per_epoch = steps_per_epoch
            self._redraw_losses()
            self._redraw_lrs()
        self.planned_steps = planned_steps
        changed = False
        if self._new_losses:
            steps, losses = self._new_steps, self._new_losses
            self._new_steps, self._new_losses = [], []
            self._steps.extend(steps)
            self._losses.extend(losses)
            smoothed, self._ema_state = debiased_ema(losses, self.smoothing, self._ema_state)
            self._smoothed.extend(smoothed)
            self._redraw_losses()
            changed = True
        if len(self._epochs) != self._epochs_drawn:
            self._redraw_epochs()
            changed = True
        return changed

    def set_lrs(self, lrs: Sequence[float], *, now: float | None = None) -> bool:
        """Show the lr of every batch so far (``lrs[i]`` trained step ``i + 1``).

        Only the new values are copied; while training (``now`` given) the curve
        is redrawn at most every ``LR_SECONDS``. True when it was redrawn.
        """
        n = len(lrs)
        if n < self._lrs.size:  # a rollback or a new model: the history is shorter
            self._lrs.clear()
        if n == self._lrs.size:
            return False
        if now is not None and now - self._lrs_drawn_at < LR_SECONDS:
            return False
        self._lrs.extend(list(lrs[self._lrs.size : n]))
        self._lrs_drawn_at = now or 0.0
        self._redraw_lrs()
        return True

    @property
    def lr_points(self) -> int:
        """How many lr values the lr curve shows."""
        return self._lrs.size

    def _redraw_lrs(self) -> None:
        steps = np.arange(1, self._lrs.size + 1, dtype=np.float64)
        if self.x_mode == X_EPOCHS:
            steps /= max(self.steps_per_epoch, 1)
        lrs = self._lrs.view()
        self.lr_curve.setData(steps, lrs)
        finite = lrs[np.isfinite(lrs)]
        top = float(finite.max()) if finite.size else 0.0
        if top <= 0:  # nothing to show yet: any range will do
            top = 1.0
        self.lr_view.setYRange(0.0, top * LR_HEADROOM, padding=0)

    def show_changes(self, changes: Sequence[Mapping[str, Any]]) -> None:
        """Mark the live changes not marked yet: a labelled line at each change's step."""
        if len(changes) < self._changes_marked:
            # A rollback took the model back before some changes: mark what it has now.
            for mark in self._change_marks:
                self.loss_plot.removeItem(mark[1])
                self._marks.remove(mark)
            self._change_marks = []
            self._changes_marked = 0
        by_step: dict[int, list[str]] = {}
        for change in changes[self._changes_marked :]:
            by_step.setdefault(int(change["step"]), []).append(
                f"{change['name']} {_format_value(change['value'])}"
            )
        self._changes_marked = len(changes)
        for step, parts in by_step.items():
            self.mark_step(step, ", ".join(parts), color=CHANGE_COLOR)
            self._change_marks.append(self._marks[-1])

    def mark_step(self, step: int, text: str, color: str = DIVERGENCE_COLOR) -> None:
        """A labelled vertical line on the loss plot at ``step`` (e.g. a divergence)."""
        if not hasattr(self, "_marks"):
            self._marks: list[tuple[int, pg.InfiniteLine]] = []
            self.x_axis_combo.currentIndexChanged.connect(self._place_marks)
        line = pg.InfiniteLine(
            angle=90,
            movable=False,
            pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine),
            label=text,
            # Staggered, so the labels of nearby lines do not cover each other.
            labelOpts={"position": 0.9 - 0.12 * (len(self._marks) % 3), "color": color},
        )
        self.loss_plot.addItem(line)
        self._marks.append((step, line))
        self._place_marks()

    def clear_marks(self) -> None:
        """Remove every ``mark_step`` line."""
        for _step, line in getattr(self, "_marks", []):
            self.loss_plot.removeItem(line)
        self._marks = []
        self._changes_marked = 0
        self._change_marks = []

    @property
    def marks(self) -> list[tuple[int, str]]:
        """``(step, label)`` of the lines drawn by ``mark_step``."""
        return [(step, line.label.toPlainText()) for step, line in getattr(self, "_marks", [])]

    def _place_marks(self, *_args) -> None:
        per = max(self.steps_per_epoch, 1) if self.x_mode == X_EPOCHS else 1
        for step, line in getattr(self, "_marks", []):
            line.setValue(step / per)

    def clear(self) -> None:
        self._steps.clear()
        self._losses.clear()
        self._smoothed.clear()
        self._new_steps, self._new_losses = [], []
        self._ema_state = (0.0, 0)
        self._epochs = []
        self._lrs.clear()
        self._redraw_lrs()
        self._redraw_losses()
        self._redraw_epochs()
        for plot in (self.test_loss_plot, self.accuracy_plot):
            plot.getPlotItem().enableAutoRange()
        self._fit_loss_view(force=True)

    # ----- the loss plot's view ---------------------------------------------------
    # pyqtgraph's auto-range refits the view on every setData: each frame the axes
    # then regenerate their ticks and labels, the costliest part of a frame, during
    # which the GUI thread holds the GIL. Instead the x range ends with the current
    # epoch and the y range changes in steps, so most frames repaint only the curves. A zoom or
    # pan by the user turns this off; the view's "A" button turns it back on.
    def _on_loss_view_changed_manually(self, *_args) -> None:
        self._fitting = False

    def _fit_loss_view(self, force: bool = False) -> None:
        view = self.loss_plot.getPlotItem().getViewBox()
        if any(view.autoRangeEnabled()):  # the "A" button, or first use
            view.disableAutoRange()
            self._fitting = True
        if not (self._fitting or force):
            return
        self._fitting = True
        values = self._losses.view()
        finite = values[np.isfinite(values)] if values.size else values
        n = int(self._steps.data[self._steps.size - 1]) if self._steps.size else 0
        # Up to the end of the current epoch: the axis moves once an epoch, and the
        # curve fills the plot from the first epoch on.
        per_epoch = max(self.steps_per_epoch, 1)
        steps = max(per_epoch * (n // per_epoch + 1), 1)
        if self.planned_steps:
            steps = min(steps, max(self.planned_steps, n))
        x_max = steps / per_epoch if self.x_mode == X_EPOCHS else steps
        (x0, x1), (y0, y1) = view.viewRange()
        if force or abs(x1 - x_max * 1.01) > 1e-9 * max(x_max, 1) or x0 != 0:
            view.setXRange(0, x_max * 1.01, padding=0)
        if finite.size == 0:
            return
        low, high = float(finite.min()), float(finite.max())
        span = max(high - low, 1e-6)
        # Refit when the data leaves the view or fills less than 40% of it. A falling
        # loss would cross a tight bottom edge every frame, and each refit redraws both
        # axes (the costliest part of a frame): so the bottom gets room for the curve
        # to fall by half its span again, down to 0 for a loss that is never negative.
        if force or low < y0 or high > y1 or (y1 - y0) > 2.5 * span:
            bottom = low - 0.5 * span
            if low >= 0:
                bottom = max(bottom, 0.0)
            view.setYRange(bottom, high + 0.05 * span, padding=0)

    def set_smoothing(self, weight: float) -> None:
        weight = min(max(float(weight), 0.0), 0.999)
        self.smoothing = weight
        self.smoothing_label.setText(f"{weight:.3f}")
        if self.smoothing_slider.value() != round(weight * 1000):
            self.smoothing_slider.setValue(round(weight * 1000))
        smoothed, self._ema_state = debiased_ema(self._losses.view(), weight)
        self._smoothed.clear()
        self._smoothed.extend(smoothed)
        self._redraw_losses()
        self.smoothing_changed.emit(weight)

    def set_x_mode(self, mode: str) -> None:
        self.x_mode = X_EPOCHS if mode == X_EPOCHS else X_STEPS
        index = self.x_axis_combo.findData(self.x_mode)
        if self.x_axis_combo.currentIndex() != index:
            self.x_axis_combo.setCurrentIndex(index)
        label = "Epoch" if self.x_mode == X_EPOCHS else "Step (batches)"
        self.loss_plot.getPlotItem().setLabel("bottom", label)
        self._redraw_losses()
        self._redraw_lrs()
        self._fit_loss_view(force=True)

    def _x(self) -> np.ndarray:
        steps = self._steps.view()
        if self.x_mode == X_EPOCHS:
            return steps / max(self.steps_per_epoch, 1)
        return steps

    def _redraw_losses(self) -> None:
        x = self._x()
        self.raw_curve.setData(x, self._losses.view())
        self.smooth_curve.setData(x, self._smoothed.view())
        self._fit_loss_view()

    def _redraw_epochs(self) -> None:
        self._epochs_drawn = len(self._epochs)
        epochs = np.array([e.epoch for e in self._epochs], dtype=np.float64)
        self.test_loss_curve.setData(epochs, [e.test_loss for e in self._epochs])
        self.train_epoch_curve.setData(epochs, [e.train_loss for e in self._epochs])
        self.accuracy_curve.setData(epochs, [100 * e.test_accuracy for e in self._epochs])
        # Whole epochs only while they fit; pyqtgraph's automatic ticks beyond that.
        for plot in (self.test_loss_plot, self.accuracy_plot):
            axis = plot.getPlotItem().getAxis("bottom")
            if len(epochs) <= 12:
                axis.setTickSpacing(1, 1)
            else:
                axis.setTickSpacing()


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)
