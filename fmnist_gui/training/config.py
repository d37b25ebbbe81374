"""Training settings and their validation (no torch, no Qt)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fmnist_gui.errors import FmnistError

MAX_BATCH_SIZE = 60000
DEVICES = ("auto", "cpu", "cuda")
#: Field metadata: a saved config without this setting ran with its default.
ABSENT_MEANS_DEFAULT = "absent_means_default"


class ConfigError(FmnistError, ValueError):
    """A setting the user gave is invalid; the message names it and the fix."""


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the tutorial's."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "sgd"
    optimizer_params: dict[str, Any] = field(default_factory=dict)
    loss: str = "cross_entropy"
    loss_params: dict[str, Any] = field(default_factory=dict)
    # A schedule plugin's name; "constant" keeps the tutorial's fixed lr. Files
    # saved before schedules existed lack both, and ran exactly this default.
    scheduler: str = field(default="constant", metadata={ABSENT_MEANS_DEFAULT: True})
    scheduler_params: dict[str, Any] = field(
        default_factory=dict, metadata={ABSENT_MEANS_DEFAULT: True}
    )
    seed: int | None = None
    shuffle: bool = False
    device: str = "auto"

    def validate(self) -> TrainConfig:
        """Raise ``ConfigError`` for the first bad setting; return self otherwise."""
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)):
            raise ConfigError(f"learning rate must be a number, got {self.lr!r}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(
                f"learning rate must be a finite number above 0, got {self.lr} "
                "(the tutorial uses 1e-3)"
            )
        if not _is_int(self.batch_size) or not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(
                f"batch size must be a whole number from 1 to {MAX_BATCH_SIZE}, "
                f"got {self.batch_size!r} (the tutorial uses 64)"
            )
        if not _is_int(self.epochs) or self.epochs < 1:
            raise ConfigError(f"epochs must be a whole number of at least 1, got {self.epochs!r}")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**63):
            raise ConfigError(f"seed must be a whole number from 0 to 2^63-1, got {self.seed!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Tuples (Adam's betas) become lists so the dict is JSON- and
        # weights_only-friendly; Param.coerce turns them back.
        for key in ("optimizer_params", "loss_params", "scheduler_params"):
            data[key] = {k: list(v) if isinstance(v, tuple) else v for k, v in data[key].items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
