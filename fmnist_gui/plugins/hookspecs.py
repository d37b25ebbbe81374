"""The hooks a plugin can implement.

Every hook is called with keyword arguments only and returns a list of small
frozen dataclasses: plugins describe what they offer, the host decides what to
do with it. A new kind of plugin gets a new ``fmnist_register_<kind>`` hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from fmnist_gui.plugins.specs import LossSpec, OptimizerSpec, SchedulerSpec

hookspec = pluggy.HookspecMarker("fmnist_gui")
hookimpl = pluggy.HookimplMarker("fmnist_gui")


@hookspec
def fmnist_register_optimizers() -> list[OptimizerSpec]:
    """Return the optimizers this plugin offers, as a list of ``OptimizerSpec``.

    Each spec's ``factory(params, lr=..., **hyperparameters)`` must return a
    ``torch.optim.Optimizer`` over ``params``. The hyperparameters it accepts
    besides ``lr`` are declared in ``OptimizerSpec.params``.
    """


@hookspec
def fmnist_register_losses() -> list[LossSpec]:
    """Return the loss functions this plugin offers, as a list of ``LossSpec``.

    Each spec's ``factory(**hyperparameters)`` must return a callable
    ``loss_fn(logits, targets) -> scalar tensor``, where ``logits`` is the
    network's raw ``(batch, 10)`` output and ``targets`` the class indices.
    """


@hookspec
def fmnist_register_schedulers() -> list[SchedulerSpec]:
    """Return the learning-rate schedules this plugin offers, as a list of ``SchedulerSpec``.

    Each spec's ``factory(optimizer, *, total_steps, steps_per_epoch, **hyperparameters)``
    must return a ``torch.optim.lr_scheduler.LRScheduler`` over ``optimizer``.
    The engine calls its ``step()`` after every batch's optimizer step, so the
    schedule counts batches (``total_steps`` of them in the whole run), and
    saves its ``state_dict()`` in checkpoints for an exact resume.
    """
