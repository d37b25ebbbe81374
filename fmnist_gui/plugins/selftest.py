"""A quick check of every optimizer and loss a plugin registers, before it is offered.

Each optimizer is built on a tiny network and stepped a few times on a fixed
synthetic batch: the factory must return a ``torch.optim.Optimizer``, ``step()``
must not raise, and the loss must stay finite and go down. Each loss must
return a finite scalar tensor that can be differentiated. A spec that fails is
not offered for training; its plugin's record says why. Whatever the plugin's
code raises counts as its failure, ``SystemExit`` and ``KeyboardInterrupt``
included (``fmnist_gui.plugins.boundary``); only a real Ctrl-C passes through.

The check takes a few milliseconds per spec. It runs under
``torch.random.fork_rng`` so it never disturbs the caller's random stream
(the engine's ``--seed`` reproducibility depends on that), and it does not
guard against a factory that never returns or ends the process: nothing
in-process can (``fmnist_gui.plugins.probe`` runs it in a separate process first).

Plugin authors can call ``check_optimizer(spec)`` / ``check_loss(spec)`` from
their own tests (see ``plugins/README.md``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fmnist_gui.plugins.boundary import describe, from_plugin

if TYPE_CHECKING:
    from fmnist_gui.plugins.specs import LossSpec, OptimizerSpec

#: Optimizer steps taken on the synthetic batch.
STEPS = 8
#: The learning rate of the check: the tutorial's default.
LEARNING_RATE = 1e-3
NUM_CLASSES = 10  # the losses see logits shaped like the real network's
_FEATURES, _HIDDEN, _BATCH = 16, 32, 64


@dataclass(frozen=True)
class SelfTestResult:
    """The outcome of checking one spec. ``reason`` says what failed, in words."""

    kind: str  # "optimizer" or "loss"
    name: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0
    losses: tuple[float, ...] = field(default=(), repr=False)


def check_optimizer(
    spec: OptimizerSpec,
    values: dict[str, Any] | None = None,
    *,
    steps: int = STEPS,
    lr: float = LEARNING_RATE,
) -> SelfTestResult:
    """Build ``spec``'s optimizer (defaults overlaid with ``values``) and step it."""
    import torch
    from torch.nn import functional as F

    started = time.perf_counter()

    def result(ok: bool, reason: str = "", losses=()) -> SelfTestResult:
        return SelfTestResult(
            "optimizer", spec.name, ok, reason, time.perf_counter() - started, tuple(losses)
        )

    with _quiet_torch():
        model, X, y = _problem()
        try:
            hyper = spec.resolve(values)
            optimizer = spec.factory(model.parameters(), lr=lr, **hyper)
        except BaseException as exc:
            if not from_plugin(exc):
                raise
            return result(False, f"factory raised {describe(exc)}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            return result(
                False, f"factory returned {type(optimizer).__name__}, not a torch.optim.Optimizer"
            )
        losses: list[float] = []
        try:
            for _ in range(steps):
                loss = F.cross_entropy(model(X), y)
                losses.append(loss.item())
                if not math.isfinite(losses[-1]):
                    return result(
                        False,
                        f"diverged: the loss became {losses[-1]} after {len(losses) - 1} steps",
                        losses,
                    )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                losses.append(F.cross_entropy(model(X), y).item())
        except BaseException as exc:
            if not from_plugin(exc):
                raise
            return result(False, f"step {len(losses)} of {steps} raised {describe(exc)}", losses)
        if not math.isfinite(losses[-1]):
            return result(
                False, f"diverged: the loss became {losses[-1]} after {steps} steps", losses
            )
        # "Goes down": the best loss seen after stepping beats the start. The
        # best, not the last, so an optimizer that overshoots once still passes.
        if min(losses[1:]) >= losses[0]:
            return result(
                False,
                f"the loss did not go down in {steps} steps at lr {lr:g} "
                f"({losses[0]:.4g} -> {losses[-1]:.4g})",
                losses,
            )
        return result(True, losses=losses)


def check_loss(spec: LossSpec, values: dict[str, Any] | None = None) -> SelfTestResult:
    """Build ``spec``'s loss and call it on random logits and targets."""
    import torch

    started = time.perf_counter()

    def result(ok: bool, reason: str = "") -> SelfTestResult:
        return SelfTestResult("loss", spec.name, ok, reason, time.perf_counter() - started)

    with _quiet_torch():
        _, X, y = _problem()
        logits = torch.randn(X.shape[0], NUM_CLASSES, requires_grad=True)
        try:
            loss_fn = spec.factory(**spec.resolve(values))
        except BaseException as exc:
            if not from_plugin(exc):
                raise
            return result(False, f"factory raised {describe(exc)}")
        if not callable(loss_fn):
            return result(False, f"factory returned {type(loss_fn).__name__}, not a callable")
        try:
            loss = loss_fn(logits, y)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else None
                what = f"a tensor of shape {shape}" if shape else type(loss).__name__
                return result(False, f"returned {what}, not a scalar tensor")
            if not math.isfinite(loss.item()):
                return result(False, f"returned {loss.item()} on ordinary logits")
            loss.backward()
        except BaseException as exc:
            if not from_plugin(exc):
                raise
            return result(False, f"raised {describe(exc)}")
        if logits.grad is None:
            return result(False, "the loss does not depend on the logits (no gradient)")
        return result(True)


def warm_up() -> None:
    """Pay torch's one-off costs now (its first backward() imports ~3 s of modules).

    The plugin probe calls it before timing its first plugin.
    """
    from torch.nn import functional as F

    with _quiet_torch():
        model, X, y = _problem()
        F.cross_entropy(model(X), y).backward()


def _problem():
    """A tiny network and a learnable batch: the class is the argmax of a fixed projection."""
    import torch
    from torch import nn

    torch.manual_seed(0)  # inside fork_rng: the caller's stream is restored afterwards
    X = torch.randn(_BATCH, _FEATURES)
    y = (X @ torch.randn(_FEATURES, NUM_CLASSES)).argmax(1)
    model = nn.Sequential(nn.Linear(_FEATURES, _HIDDEN), nn.ReLU(), nn.Linear(_HIDDEN, NUM_CLASSES))
    return model, X, y


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    import torch

    # One intra-op thread: on a busy machine the thread pool's wake-ups cost
    # 20x the arithmetic of such tiny tensors (20 ms vs 1 ms per step here).
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        if threads != 1:
            torch.set_num_threads(1)
        try:
            with torch.enable_grad():
                yield
        finally:
            if threads != 1:
                torch.set_num_threads(threads)
