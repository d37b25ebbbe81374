"""What a training run reports, one event at a time: plain data, no torch.

``Trainer.run()`` yields ``EpochStart``, then a ``BatchEnd`` per batch and an
``EpochEnd`` per epoch, and ends with one ``RunEnd``. Front ends (the CLI, the
window, the race) read them without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Literal

RunStatus = Literal["finished", "stopped", "diverged", "failed"]


@dataclass(frozen=True)
class EpochStart:
    """An epoch begins (or an interrupted one continues at ``resumed_at_batch``)."""

    epoch: int  # 1-based
    num_batches: int
    resumed_at_batch: int  # 0 unless an interrupted epoch is being continued


@dataclass(frozen=True)
class BatchEnd:
    """One optimizer step is done; the model is at a batch boundary."""

    epoch: int  # 1-based
    batch: int  # 0-based index within the epoch
    step: int  # 1-based count of optimizer steps since the start of training
    loss: float
    batch_len: int
    dataset_size: int
    num_batches: int

    @property
    def current(self) -> int:
        """The tutorial's ``current``: samples before this batch (``batch * len(X)``)."""
        return self.batch * self.batch_len

    @property
    def ends_epoch(self) -> bool:
        """True for the epoch's last batch: its ``EpochEnd`` (the test pass) comes next."""
        return self.batch + 1 == self.num_batches


@dataclass(frozen=True)
class EpochEnd:
    """An epoch's metrics; checkpoints and the run list store them as ``as_dict()``."""

    epoch: int
    train_loss: float  # mean of the epoch's batch losses
    test_loss: float
    test_accuracy: float  # fraction, 0..1
    train_seconds: float
    test_seconds: float
    samples_per_second: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# The names of ``EpochEnd``'s numbers, in order: the one list that checkpoints
# and the run list's CSV columns derive from.
EPOCH_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EpochEnd))


@dataclass(frozen=True)
class RunEnd:
    """The run is over: ``finished``, ``stopped`` (resumable), ``diverged`` or ``failed``."""

    status: RunStatus
    message: str = ""


Event = EpochStart | BatchEnd | EpochEnd | RunEnd


@dataclass
class History:
    """Everything the plots need to be redrawn: kept by the engine, saved in checkpoints."""

    batch_losses: list[float] = field(default_factory=list)
    epochs: list[EpochEnd] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)  # the lr each batch was trained with
    # Live changes, {"step", "name", "value"}: applied after that many batches.
    changes: list[dict] = field(default_factory=list)


__all__ = [
    "EPOCH_FIELDS",
    "BatchEnd",
    "EpochEnd",
    "EpochStart",
    "Event",
    "History",
    "RunEnd",
    "RunStatus",
]
