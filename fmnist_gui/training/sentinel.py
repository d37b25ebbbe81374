"""The divergence sentinel: tell a diverged run, and go back to its last good state.

One rule, wherever it is checked: a non-finite loss, test loss, weight or
optimizer-state tensor is divergence; so is, when asked for, a loss spike
(a batch loss over ``spike_factor`` times the smoothed loss). The ``Trainer``
asks its ``Sentinel`` after every batch (a float comparison), snapshots every
``every`` batches and after every epoch's test pass (an ``isfinite`` pass
over the weights and the optimizer state, then one on-device copy of them),
and refuses an epoch whose test loss or state is not finite. Checkpoint saving
uses ``nonfinite_fields`` for the same rule.

Nothing here draws random numbers or changes the tensors it watches, so a run
that never diverges gives the same numbers as without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from fmnist_gui.training.trainer import Trainer

# A snapshot every this many batches: at the tutorial's batch size 64 that is
# about 9 an epoch, each an isfinite pass and a copy of ~2.7 MB of weights (plus
# the optimizer's buffers); a rollback goes back at most this many batches.
SNAPSHOT_EVERY = 100
# The smoothed loss a spike is measured against: an exponential moving average
# over about 1 / (1 - SMOOTHING) = 50 batches, trusted after WARMUP batches.
SMOOTHING = 0.98
WARMUP = 20


class DivergenceError(Exception):
    """Training diverged; ``reason`` says what was not finite (or spiked) and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Snapshot:
    """The last good state, kept in memory on the training device."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    epochs_done: int
    batch_in_epoch: int
    global_step: int
    epoch_generator_state: torch.Tensor
    shuffle_state: torch.Tensor
    torch_rng: torch.Tensor
    epoch_loss_sum: float
    epoch_train_seconds: float
    losses_kept: int  # len(history.batch_losses)
    epochs_kept: int  # len(history.epochs)
    lr: float
    smoothed: float | None
    seen: int

    @property
    def where(self) -> str:
        if self.batch_in_epoch == 0:
            return f"step {self.global_step}, after epoch {self.epochs_done}"
        return f"step {self.global_step}, epoch {self.epochs_done + 1} batch {self.batch_in_epoch}"


class Sentinel:
    """Watches one ``Trainer``: spots divergence and keeps its last good snapshot.

    ``spike_factor`` (None: off, the default) makes a batch loss above
    ``spike_factor`` times the smoothed loss a divergence too.
    """

    def __init__(
        self, trainer: Trainer, *, every: int = SNAPSHOT_EVERY, spike_factor: float | None = None
    ) -> None:
        if every < 1:
            raise ValueError("a snapshot every 0 batches is not possible")
        if spike_factor is not None and not (math.isfinite(spike_factor) and spike_factor > 1):
            raise ValueError(f"the spike factor must be a number above 1, not {spike_factor}")
        self.trainer = trainer
        self.every = every
        self.spike_factor = spike_factor
        self.snapshot: Snapshot | None = None
        self.smoothed: float | None = None  # bias-corrected EMA of the batch losses
        self._ema = 0.0
        self._snapshot_ema = 0.0
        self.seen = 0
        # (step, what happened) for every divergence and rollback: the plots mark them.
        self.events: list[tuple[int, str]] = []

    # ----- per batch -----------------------------------------------------------------
    def observe(self, loss: float) -> None:
        """Raise ``DivergenceError`` when ``loss`` (finite) is a spike; else smooth it in."""
        factor = self.spike_factor
        smoothed = self.smoothed
        if (
            factor is not None
            and smoothed is not None
            and self.seen >= WARMUP
            and loss > factor * smoothed
        ):
            raise DivergenceError(
                f"the loss jumped to {loss:g}, over {factor:g} times its smoothed "
                f"value {smoothed:.4g}"
            )
        self.seen += 1
        self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * loss
        self.smoothed = self._ema / (1 - SMOOTHING**self.seen)

    def batch_done(self) -> None:
        """Called at each batch boundary: a snapshot when one is due."""
        if self.trainer.global_step % self.every == 0:
            self.take()

    # ----- checks and snapshots ------------------------------------------------------------
    def check(self) -> None:
        """Raise ``DivergenceError`` naming the first non-finite weight or optimizer state."""
        trainer = self.trainer
        bad = _first_nonfinite(_named_state(trainer.model, trainer.optimizer))
        if bad is not None:
            raise DivergenceError(f"{bad} is no longer a finite number")

    def take(self) -> None:
        """Keep the trainer's state as the last good one (``DivergenceError`` if not finite)."""
        t = self.trainer
        self.check()
        self.snapshot = Snapshot(
            model={k: v.detach().clone() for k, v in t.model.state_dict().items()},
            optimizer=_clone(t.optimizer.state_dict()),
            epochs_done=t.epochs_done,
            batch_in_epoch=t.batch_in_epoch,
            global_step=t.global_step,
            epoch_generator_state=t.epoch_generator_state.clone(),
            shuffle_state=t.shuffle_generator.get_state(),
            torch_rng=torch.get_rng_state(),
            epoch_loss_sum=t.epoch_loss_sum,
            epoch_train_seconds=t.epoch_clock.seconds,
            losses_kept=len(t.history.batch_losses),
            epochs_kept=len(t.history.epochs),
            lr=float(t.optimizer.param_groups[0]["lr"]),
            smoothed=self.smoothed,
            seen=self.seen,
        )
        self._snapshot_ema = self._ema

    def roll_back(self, *, halve_lr: bool = False) -> str:
        """Put the trainer back to the last snapshot; returns a line saying what was done.

        The weights and the optimizer state become tensor-equal to the
        snapshot's; the position, the random generators and the history go
        back too. With ``halve_lr`` every parameter group's lr is halved (and
        the config's, so a checkpoint records the lr in use).
        """
        from fmnist_gui.training.trainer import Stopwatch

        snap = self.snapshot
        if snap is None:
            raise RuntimeError("there is no good state to roll back to")
        t = self.trainer
        diverged_at = t.global_step
        with torch.no_grad():
            for name, tensor in t.model.state_dict().items():
                tensor.copy_(snap.model[name])  # in place: the optimizer keeps its parameters
        t.optimizer.load_state_dict(_clone(snap.optimizer))
        t.epochs_done = snap.epochs_done
        t.batch_in_epoch = snap.batch_in_epoch
        t.global_step = snap.global_step
        t.epoch_generator_state = snap.epoch_generator_state.clone()
        t.shuffle_generator.set_state(snap.shuffle_state.clone())
        torch.set_rng_state(snap.torch_rng.clone())
        t.epoch_loss_sum = snap.epoch_loss_sum
        t.epoch_clock = Stopwatch(snap.epoch_train_seconds)
        del t.history.batch_losses[snap.losses_kept :]
        del t.history.epochs[snap.epochs_kept :]
        self.smoothed, self.seen, self._ema = snap.smoothed, snap.seen, self._snapshot_ema
        message = f"rolled back from step {diverged_at} to the last good state ({snap.where})"
        if halve_lr:
            for group in t.optimizer.param_groups:
                group["lr"] = group["lr"] / 2
            t.config.lr = float(t.optimizer.param_groups[0]["lr"])
            # The snapshot keeps its own lr: a second rollback halves again from there.
            snap.optimizer = _clone(t.optimizer.state_dict())
            snap.lr = t.config.lr
            message += f", learning rate halved to {t.config.lr:g}"
        t.diverged = None
        self.events.append((snap.global_step, message))
        return message


def _named_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Iterator:
    for name, tensor in model.state_dict().items():
        yield f"weight {name}", tensor
    names = {id(p): n for n, p in model.named_parameters()}
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                yield f"optimizer state {key!r} of {names.get(id(param), 'a parameter')}", value
    for i, group in enumerate(optimizer.param_groups):
        lr = group.get("lr")
        if isinstance(lr, float) and not math.isfinite(lr):
            yield f"the lr of parameter group {i}", torch.tensor(lr)


def _first_nonfinite(named: Iterator) -> str | None:
    items = [(n, t) for n, t in named if t.is_floating_point() or t.is_complex()]
    if not items:
        return None
    # One device sync for all of them; names are looked up only when something is wrong.
    flags = torch.stack([torch.isfinite(t).all() for _, t in items]).cpu()
    if bool(flags.all()):
        return None
    return items[int((~flags).nonzero()[0])][0]


def nonfinite_fields(state: Mapping[str, Any]) -> str | None:
    """The first non-finite weight or optimizer-state tensor of a ``Trainer.state_dict()``."""

    def named() -> Iterator:
        for name, tensor in state.get("model", {}).items():
            yield f"weight {name}", tensor
        opt = state.get("optimizer", {}).get("state_dict", {})
        for index, entry in opt.get("state", {}).items():
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    yield f"optimizer state {key!r} of parameter {index}", value

    return _first_nonfinite(
        (n, t) for n, t in named() if isinstance(t, torch.Tensor) and t.numel() > 0
    )


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    return value


__all__ = ["SNAPSHOT_EVERY", "DivergenceError", "Sentinel", "Snapshot", "nonfinite_fields"]
