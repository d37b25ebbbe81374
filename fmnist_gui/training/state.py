"""The shape of a training's saved state, written once.

``Trainer.state_dict()`` builds a ``TrainingState``; ``Trainer.from_state_dict``
reads one back; ``fmnist_gui.checkpoint`` adds its file header on top and
derives its validator from these definitions. Only tensors and Python
primitives appear, so ``torch.load(weights_only=True)`` reads it with no
allowlist. Adding a field here adds it to the check of every loaded file.
"""

from __future__ import annotations

from typing import Any, TypedDict

from torch import Tensor


class OptimizerState(TypedDict):
    name: str  # the plugin's optimizer name, e.g. "sgd"
    plugin: str  # the plugin that registered it
    params: dict[str, Any]  # resolved hyperparameters (tuples as lists)
    state_dict: dict[str, Any]  # torch.optim.Optimizer.state_dict()


class SchedulerState(TypedDict):
    name: str  # the plugin's schedule name, e.g. "cosine"
    plugin: str
    params: dict[str, Any]
    state_dict: dict[str, Any]  # LRScheduler.state_dict()


class LossState(TypedDict):
    name: str
    plugin: str
    params: dict[str, Any]


class Position(TypedDict):
    """Where the training stands: ``epochs_done`` epochs, then ``batch_in_epoch`` batches."""

    epochs_done: int
    batch_in_epoch: int
    global_step: int
    # The shuffle generator's state at the epoch's start: replaying it gives
    # an interrupted epoch the same order when it is continued.
    epoch_generator_state: Tensor
    epoch_loss_sum: float  # a Python float pickles as its 8 bytes: the sum comes back exactly
    epoch_train_seconds: float
    seed: int


class RngState(TypedDict):
    torch_cpu: Tensor
    cuda: list[Tensor]  # one per device; empty when training on the CPU
    shuffle: Tensor


class _ScheduleHistory(TypedDict, total=False):
    # Absent from files saved before schedules and live changes existed.
    lrs: Tensor  # 1-D float64: the lr of each batch
    changes: list[dict[str, Any]]  # {"step", "name", "value"} per live change


class HistoryState(_ScheduleHistory):
    batch_losses: Tensor  # 1-D float64: holds each float32-valued loss exactly
    epochs: list[dict[str, float]]  # EpochEnd.as_dict() per finished epoch


class DataSizes(TypedDict):
    train_size: int
    test_size: int


class _ScheduleState(TypedDict, total=False):
    # Absent from files saved before schedules existed: those ran "constant".
    scheduler: SchedulerState


class TrainingState(_ScheduleState):
    """Everything needed to continue a training bit for bit."""

    model: dict[str, Tensor]
    optimizer: OptimizerState
    loss: LossState
    config: dict[str, Any]  # TrainConfig.to_dict()
    position: Position
    rng: RngState
    history: HistoryState
    data: DataSizes
    torch_threads: int  # matrix products may round differently with another count
    plugins: dict[str, str]  # plugin name -> version, for messages when one is missing


__all__ = [
    "DataSizes",
    "HistoryState",
    "LossState",
    "OptimizerState",
    "Position",
    "RngState",
    "SchedulerState",
    "TrainingState",
]
