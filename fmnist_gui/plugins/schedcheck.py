"""A quick check of every learning-rate schedule a plugin registers, before it is offered.

The schedule is built on a bare optimizer over one tensor and stepped a few times:
the factory must return a ``torch.optim.lr_scheduler.LRScheduler``, ``step()``
must not raise, every learning rate must stay a finite number of at least 0,
and ``state_dict()`` must load back into a fresh schedule (checkpoints rely on
it). Whatever the plugin's code raises counts as its failure
(``fmnist_gui.plugins.boundary``).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from fmnist_gui.plugins.boundary import describe, from_plugin
from fmnist_gui.plugins.selftest import LEARNING_RATE, SelfTestResult

if TYPE_CHECKING:
    from fmnist_gui.plugins.specs import SchedulerSpec

#: The run the check pretends to be: a few epochs of a few batches.
STEPS_PER_EPOCH = 4
TOTAL_STEPS = 12


def check_scheduler(spec: SchedulerSpec, values: dict[str, Any] | None = None) -> SelfTestResult:
    """Build ``spec``'s schedule (defaults overlaid with ``values``) and step it through a run."""
    import torch

    started = time.perf_counter()

    def result(ok: bool, reason: str = "", lrs=()) -> SelfTestResult:
        return SelfTestResult(
            "scheduler", spec.name, ok, reason, time.perf_counter() - started, tuple(lrs)
        )

    def build():
        weight = torch.nn.Parameter(torch.zeros(2))
        optimizer = _bare_optimizer([weight], LEARNING_RATE)
        scheduler = spec.factory(
            optimizer, total_steps=TOTAL_STEPS, steps_per_epoch=STEPS_PER_EPOCH, **hyper
        )
        return optimizer, scheduler

    lrs: list[float] = []
    try:
        hyper = spec.resolve(values)
        optimizer, scheduler = build()
    except BaseException as exc:
        if not from_plugin(exc):
            raise
        return result(False, f"factory raised {describe(exc)}")
    if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        return result(
            False,
            f"factory returned {type(scheduler).__name__}, "
            "not a torch.optim.lr_scheduler.LRScheduler",
        )
    try:
        for _ in range(TOTAL_STEPS):
            lrs.append(float(optimizer.param_groups[0]["lr"]))
            if not (math.isfinite(lrs[-1]) and lrs[-1] >= 0):
                return result(False, f"the lr became {lrs[-1]} after {len(lrs) - 1} steps", lrs)
            optimizer.step()
            scheduler.step()
        _, again = build()
        again.load_state_dict(scheduler.state_dict())
    except BaseException as exc:
        if not from_plugin(exc):
            raise
        return result(False, f"step {len(lrs)} of {TOTAL_STEPS} raised {describe(exc)}", lrs)
    return result(True, lrs=lrs)


__all__ = ["check_scheduler"]


def _bare_optimizer(params: list, lr: float) -> Any:
    """Only what a schedule touches: param_groups with an lr, and a state_dict."""
    import torch

    class BareOptimizer(torch.optim.Optimizer):
        def step(self, closure=None):  # a schedule only calls it
            return None

    return BareOptimizer(params, {"lr": lr})
