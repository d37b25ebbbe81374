"""What a sweep is: its optimizers' spaces, its budget and its training settings.

A ``SweepSpec`` is written once, as JSON, into the user attributes of every
Optuna study of the sweep when the sweep is made; every worker, on any machine,
reads it back from there, so they all train exactly the same way. No torch here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from fmnist_gui.errors import FmnistError
from fmnist_gui.sweep.space import OptimizerSpace
from fmnist_gui.training.config import MAX_BATCH_SIZE, TrainConfig

SPEC_VERSION = 1
PRUNERS = ("median", "halving", "none")
PrunerName = Literal["median", "halving", "none"]
DEFAULT_OPTIMIZERS = ("sgd", "adam", "rmsprop")


class SweepError(FmnistError, ValueError):
    """A sweep that cannot be made, found or joined; the message says why and what to do."""


@dataclass(frozen=True)
class DataIdentity:
    """Which images a sweep trains on: sizes and a hash of the tensors (after ``subset``)."""

    train_size: int
    test_size: int
    fingerprint: str


@dataclass(frozen=True)
class SweepSpec:
    """The whole protocol: tune each optimizer, then rerun its best setting with seeds.

    ``trials`` tuning trials per optimizer, each ``epochs`` epochs long (pruned
    trials stop earlier); then the best setting of each optimizer trained with
    ``seeds`` new seeds. ``seed`` seeds the sampler and every tuning trial's
    weights (all tuning trials of a sweep start from the same weights, as in the
    Compare race); seed runs use ``seed + 1`` to ``seed + seeds``. ``subset``
    trains on the first N training images (the test set is always whole).
    """

    spaces: tuple[OptimizerSpace, ...]
    trials: int = 10
    epochs: int = 2
    seeds: int = 3
    batch_size: int = 64
    loss: str = "cross_entropy"
    shuffle: bool = False
    subset: int | None = None
    seed: int = 0
    pruner: PrunerName = "median"
    target_accuracy: float = 0.8
    data: DataIdentity | None = field(default=None, compare=True)

    @property
    def optimizers(self) -> list[str]:
        return [s.optimizer for s in self.spaces]

    def space(self, optimizer: str) -> OptimizerSpace:
        for space in self.spaces:
            if space.optimizer == optimizer:
                return space
        raise KeyError(optimizer)

    @property
    def startup_trials(self) -> int:
        """Trials sampled at random (and never pruned) before TPE and the pruner take over.

        Optuna's default of 10 would leave a 10-trial budget all random; a third of
        the budget, at least 3, lets TPE steer the rest.
        """
        return min(10, max(3, self.trials // 3))

    def seed_of_run(self, index: int) -> int:
        """The training seed of protocol run ``index`` (0-based): fresh, not the tuning seed."""
        return self.seed + 1 + index

    def train_config(
        self,
        optimizer: str,
        lr: float,
        params: Mapping[str, Any],
        seed: int,
        *,
        device: str = "auto",
    ) -> TrainConfig:
        """The training settings of one run of this sweep: a trial, a seed run, or its winner."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=lr,
            optimizer=optimizer,
            optimizer_params=dict(params),
            loss=self.loss,
            seed=seed,
            shuffle=self.shuffle,
            device=device,
        )

    def validate(self) -> SweepSpec:
        """Raise ``SweepError`` for the first bad setting; return self otherwise."""
        if not self.spaces:
            raise SweepError("a sweep needs at least one optimizer")
        names = self.optimizers
        if len(set(names)) != len(names):
            raise SweepError(f"an optimizer is listed twice: {', '.join(names)}")
        for name, value, low in (
            ("trials", self.trials, 1),
            ("epochs", self.epochs, 1),
            ("seeds", self.seeds, 0),
            ("batch size", self.batch_size, 1),
            ("seed", self.seed, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SweepError(f"{name} must be a whole number of at least {low}, got {value!r}")
        if self.batch_size > MAX_BATCH_SIZE:
            raise SweepError(f"batch size must be at most {MAX_BATCH_SIZE}, got {self.batch_size}")
        if self.subset is not None and (
            isinstance(self.subset, bool) or not isinstance(self.subset, int) or self.subset < 1
        ):
            raise SweepError(
                f"subset must be a whole number of images, at least 1, got {self.subset!r}"
            )
        if self.pruner not in PRUNERS:
            raise SweepError(f"pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        target = self.target_accuracy
        if not isinstance(target, (int, float)) or not (0 < target <= 1 and math.isfinite(target)):
            raise SweepError(
                f"target accuracy must be a fraction above 0 and at most 1, got {target!r}"
            )
        return self

    def with_data(self, identity: DataIdentity) -> SweepSpec:
        return replace(self, data=identity)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["spaces"] = [s.to_dict() for s in self.spaces]
        data["data"] = asdict(self.data) if self.data is not None else None
        data["version"] = SPEC_VERSION
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        data = dict(data)
        version = data.pop("version", None)
        if version != SPEC_VERSION:
            raise SweepError(
                f"this sweep was written by another version of fmnist-gui (format {version!r}, "
                f"this one reads {SPEC_VERSION})"
            )
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["spaces"] = tuple(OptimizerSpace.from_dict(s) for s in data["spaces"])
        if data.get("data") is not None:
            data["data"] = DataIdentity(**data["data"])
        return cls(**data)

    def differences(self, other: SweepSpec) -> list[str]:
        """Human words for each setting in which ``other`` differs from this one."""
        mine, theirs = self.to_dict(), other.to_dict()
        out = []
        for key in sorted(mine):
            if mine[key] != theirs.get(key):
                if key == "spaces":
                    out.append("the optimizers or what is tuned")
                elif key == "data":
                    out.append("the data (images or --subset)")
                else:
                    out.append(f"{key.replace('_', ' ')} {theirs.get(key)} (it has {mine[key]})")
        return out


__all__ = [
    "DEFAULT_OPTIMIZERS",
    "PRUNERS",
    "DataIdentity",
    "SweepError",
    "SweepSpec",
]
