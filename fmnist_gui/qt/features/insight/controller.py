"""The Predictions and Confusion tabs, fed from the live model.

``InsightController`` is built with the window and imports nothing heavy; its
tabs are built by ``build_views()`` once the backend (torch, plugins, data) has
loaded, so the window still shows at once.

Predictions are computed from a *copy* of the model's weights, in a short
``FunctionWorker`` job, and only while the Predictions or Confusion tab is on
screen (or on Refresh): the GUI never blocks on 10,000 forward passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QWidget

from fmnist_gui.qt.features.training.controller import TrainingController
from fmnist_gui.qt.infra.worker import Job
from fmnist_gui.qt.shell.window import MainWindow

if TYPE_CHECKING:
    from fmnist_gui.analysis.insight import Predictions
    from fmnist_gui.qt.features.insight.views import ConfusionView, PredictionsView
    from fmnist_gui.training.data import Split


def _predict_snapshot(state: dict, split: Split) -> Predictions:
    """Worker-thread side: rebuild the network from copied weights and predict."""
    from fmnist_gui.analysis.insight import predict
    from fmnist_gui.training.model import NeuralNetwork

    model = NeuralNetwork()
    model.load_state_dict(state)
    return predict(model, split)


class InsightController(QObject):
    """Owns the Predictions and Confusion views and refreshes them from the live model."""

    # Built by build_views(), once the backend has loaded (``ready``).
    predictions_view: PredictionsView
    confusion_view: ConfusionView

    def __init__(self, window: MainWindow, training: TrainingController) -> None:
        super().__init__(window)
        self.window = window
        self.training = training
        self.ready = False
        self._prediction_job: Job | None = None
        self._stale = True  # the views lag the model
        window.closing.connect(self._join_predictions)

    def build_views(self) -> list[tuple[QWidget, str]]:
        """Build the two tabs (imports pyqtgraph and torch); once, after the backend loaded.

        Returns (widget, title) pairs for the window's tabs, in order.
        """
        from fmnist_gui.qt.features.insight.views import (
            ConfusionView,
            PredictionsView,
            connect_drilldown,
        )

        window, training = self.window, self.training
        self.predictions_view = PredictionsView()
        self.confusion_view = ConfusionView()
        self.predictions_view.setObjectName("predictions_view")
        self.confusion_view.setObjectName("confusion_view")
        connect_drilldown(self.confusion_view, self.predictions_view)
        self.confusion_view.cell_activated.connect(
            lambda *_: window.tabs.setCurrentWidget(self.predictions_view)
        )
        self.predictions_view.refresh_requested.connect(lambda: self.refresh_predictions(True))
        self.predictions_view.message.connect(
            lambda text: window.statusBar().showMessage(text, 8000)
        )
        self.ready = True
        training.trainer_changed.connect(self._on_model_changed)
        training.epoch_finished.connect(self._on_model_changed)
        window.state_changed.connect(self._on_state)
        window.tabs.currentChanged.connect(self._on_tab)
        return [(self.predictions_view, "Predictions"), (self.confusion_view, "Confusion")]

    @Slot(object)
    def _on_model_changed(self, _what: object = None) -> None:
        self._stale = True
        self.refresh_predictions()

    @Slot(str)
    def _on_state(self, state: str) -> None:
        if state in ("idle", "paused") and self.training.trainer is not None:
            self._stale = True
            self.refresh_predictions()  # on demand while paused or stopped

    @Slot(int)
    def _on_tab(self, _index: int) -> None:
        if self._stale:
            self.refresh_predictions()

    # ----- predictions ----------------------------------------------------------------------
    def insight_visible(self) -> bool:
        if not self.ready:
            return False
        current = self.window.tabs.currentWidget()
        return current is self.predictions_view or current is self.confusion_view

    def refresh_predictions(self, force: bool = False) -> bool:
        """Predict the test set with a copy of the current weights, in a worker thread.

        Only while a view shows it (or ``force``); one job at a time, and a
        request during a job is served once it ends. True when a job started.
        """
        from fmnist_gui.qt.infra.worker import FunctionWorker

        trainer, data = self.training.trainer, self.training.data
        if trainer is None or data is None or not (force or self.insight_visible()):
            return False
        if self._prediction_job is not None:
            self._stale = True
            return False
        self._stale = False
        # A copy, so the worker reads weights that no longer move. While training
        # runs, the copy may straddle one optimizer step (harmless for a
        # picture of the model); while paused or stopped it is exact.
        state = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}
        caption = f"After epoch {trainer.epochs_done}" if trainer.epochs_done else "Untrained"
        worker = FunctionWorker(_predict_snapshot, state, data.test)
        worker.returned.connect(lambda result: self._show_predictions(result, caption))
        worker.errored.connect(
            lambda message, details: self.window.statusBar().showMessage(
                f"Could not compute the predictions: {message}", 8000
            )
        )
        self._prediction_job = Job(worker, self)
        self._prediction_job.done.connect(self._on_prediction_done)
        self._prediction_job.start()
        return True

    def _show_predictions(self, predictions: Predictions, caption: str) -> None:
        data = self.training.data
        if data is None:
            return
        self.predictions_view.set_predictions(predictions, data.test.images)
        self.confusion_view.set_predictions(predictions, caption)

    @Slot()
    def _on_prediction_done(self) -> None:
        self._prediction_job = None
        if self._stale:
            self.refresh_predictions()

    def busy(self) -> bool:
        """True while a prediction job runs."""
        return self._prediction_job is not None

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Join the prediction job, if any."""
        if self._prediction_job is not None:
            self._prediction_job.wait(timeout_ms)

    @Slot()
    def _join_predictions(self) -> None:
        if self._prediction_job is not None:
            self._prediction_job.wait(10_000)  # a short job: join it, never abandon it
