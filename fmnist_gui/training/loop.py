"""The tutorial's ``train_loop`` and ``test_loop``, as two plain functions.

``train_one_epoch`` is a generator that suspends after every optimizer step,
so whoever iterates it decides what happens between two batches (the
``Trainer`` counts them, a ``RunDriver`` stops or pauses there). Plugin code
(the loss, the optimizer) runs inside ``blame``, so a failure names its plugin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable

import torch
from torch import nn

from fmnist_gui.plugins.boundary import PluginFailure, blame
from fmnist_gui.plugins.specs import LossSpec, OptimizerSpec
from fmnist_gui.training.data import BatchLoader

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class DivergedError(Exception):
    """The loss is not a finite number; the batch that produced it was not applied."""

    def __init__(self, loss: float) -> None:
        super().__init__(f"the loss became {loss}")
        self.loss = loss


def train_one_epoch(
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch],
    *,
    loss_spec: LossSpec,
    optimizer_spec: OptimizerSpec,
) -> Generator[tuple[float, int], None, None]:
    """The tutorial's train_loop: yields ``(loss, len(X))`` once each batch's step is done.

    ``loss_spec`` and ``optimizer_spec`` name the plugins in failure messages.
    Raises ``DivergedError`` before a non-finite loss is applied and ``PluginFailure``
    when plugin code raises.
    """
    model.train()
    watched = _tensors_a_step_may_write(model, optimizer)
    for X, y in batches:
        pred = model(X)
        with blame(loss_spec, "loss", "training"):
            loss = loss_fn(pred, y)
            value = loss.item()
        if not math.isfinite(value):
            raise DivergedError(value)

        optimizer.zero_grad()
        with blame(loss_spec, "loss", "backward()"):
            loss.backward()
        _step(optimizer, optimizer_spec, watched)
        yield value, len(X)


@torch.no_grad()
def evaluate(
    model: nn.Module, loss_fn: LossFn, loader: BatchLoader, *, loss_spec: LossSpec
) -> tuple[float, float]:
    """The tutorial's test_loop: ``(mean batch loss, accuracy as a fraction)``."""
    model.eval()
    # float64 accumulators add exactly as the tutorial's Python floats do, without
    # a .item() (a device sync) per batch.
    test_loss = torch.zeros((), dtype=torch.float64, device=loader.device)
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    for X, y in loader.batches():
        pred = model(X)
        with blame(loss_spec, "loss", "testing"):
            test_loss += loss_fn(pred, y).double()
        correct += (pred.argmax(1) == y).sum()
    model.train()
    return test_loss.item() / len(loader), correct.item() / loader.dataset_size


def _tensors_a_step_may_write(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> list[torch.Tensor]:
    # Listed once an epoch rather than once a batch: the list is the costly part.
    watched: list[torch.Tensor] = list(model.parameters())
    known = {id(p) for p in watched}
    watched += [
        p for group in optimizer.param_groups for p in group["params"] if id(p) not in known
    ]
    return watched


def _step(
    optimizer: torch.optim.Optimizer, spec: OptimizerSpec, watched: list[torch.Tensor]
) -> None:
    """``optimizer.step()``; a failure says whether it had already changed weights."""
    # Every in-place write bumps a tensor's version counter: if the step raises,
    # the counters tell whether it had already changed weights (no copy needed).
    # Writes through ``p.data`` bypass the counter, so "no change" is only "none seen".
    versions = [p._version for p in watched]
    try:
        with blame(spec, "optimizer", "step()"):
            optimizer.step()
    except PluginFailure as exc:
        changed = sum(p._version != v for p, v in zip(watched, versions, strict=True))
        if not changed:
            raise  # the weights are still those after the last completed batch
        raise PluginFailure(
            exc.plugin,
            f"{exc}; it had already changed {changed} of the "
            f"{len(watched)} weight tensors, so this model is no longer as it was after "
            "the last completed batch: start a new one (Reset in the app), or continue "
            "from your last saved checkpoint.",
        ) from exc.__cause__


__all__ = ["DivergedError", "evaluate", "train_one_epoch"]
