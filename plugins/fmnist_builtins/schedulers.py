"""Built-in learning-rate schedules, each a ``torch.optim.lr_scheduler`` stepped per batch.

``constant`` is the tutorial's: the learning rate never changes. The others
count in batches (``total_steps`` of them in the whole run); where a user
thinks in epochs (``step``), the factory converts with ``steps_per_epoch``.
"""

from __future__ import annotations

from torch.optim import lr_scheduler

from fmnist_gui import Param, SchedulerSpec, hookimpl

ETA_MIN = Param(
    "eta_min", "float", 0.0, "The lowest learning rate, reached at the end of the run.", minimum=0
)


def _constant(optimizer, *, total_steps, steps_per_epoch):
    # A factor of exactly 1.0 for no steps: every lr is the optimizer's own, bit for bit.
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _step(optimizer, *, total_steps, steps_per_epoch, step_epochs, gamma):
    return lr_scheduler.StepLR(optimizer, step_size=step_epochs * steps_per_epoch, gamma=gamma)


def _cosine(optimizer, *, total_steps, steps_per_epoch, eta_min):
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1), eta_min=eta_min)


def _warmup_cosine(optimizer, *, total_steps, steps_per_epoch, warmup_steps, start_factor, eta_min):
    # At least one cosine step is left, so a short run still ends on the cosine.
    warmup = max(1, min(warmup_steps, total_steps - 1))
    return lr_scheduler.SequentialLR(
        optimizer,
        [
            lr_scheduler.LinearLR(optimizer, start_factor=start_factor, total_iters=warmup),
            lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(total_steps - warmup, 1), eta_min=eta_min
            ),
        ],
        milestones=[warmup],
    )


def _one_cycle(
    optimizer, *, total_steps, steps_per_epoch, max_lr, pct_start, div_factor, final_div_factor
):
    # cycle_momentum is off: not every optimizer has a momentum to cycle.
    return lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=max(total_steps, 2),
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        cycle_momentum=False,
    )


@hookimpl
def fmnist_register_schedulers() -> list[SchedulerSpec]:
    return [
        SchedulerSpec(
            name="constant",
            label="Constant (tutorial)",
            factory=_constant,
            description="The learning rate stays as set, as in the tutorial.",
        ),
        SchedulerSpec(
            name="step",
            label="Step decay",
            factory=_step,
            params=(
                Param(
                    "step_epochs",
                    "int",
                    1,
                    "Multiply the lr by gamma every this many epochs.",
                    minimum=1,
                ),
                Param(
                    "gamma",
                    "float",
                    0.1,
                    "The factor applied at each step.",
                    minimum=0,
                    maximum=1,
                    exclusive_minimum=True,
                ),
            ),
            description="Multiplies the learning rate by gamma every few epochs.",
        ),
        SchedulerSpec(
            name="cosine",
            label="Cosine annealing",
            factory=_cosine,
            params=(ETA_MIN,),
            description="Lowers the learning rate along a half cosine over the whole run.",
        ),
        SchedulerSpec(
            name="warmup_cosine",
            label="Linear warm-up + cosine",
            factory=_warmup_cosine,
            params=(
                Param("warmup_steps", "int", 100, "Batches of linear warm-up.", minimum=1),
                Param(
                    "start_factor",
                    "float",
                    0.01,
                    "The first batch's lr, as a fraction of lr.",
                    minimum=0,
                    maximum=1,
                    exclusive_minimum=True,
                ),
                ETA_MIN,
            ),
            description="Rises linearly to the learning rate, then follows a cosine down.",
        ),
        SchedulerSpec(
            name="one_cycle",
            label="One-cycle",
            factory=_one_cycle,
            params=(
                Param(
                    "max_lr",
                    "float",
                    0.01,
                    "The peak learning rate (replaces lr).",
                    minimum=0,
                    exclusive_minimum=True,
                ),
                Param(
                    "pct_start",
                    "float",
                    0.3,
                    "The fraction of the run spent rising.",
                    minimum=0,
                    maximum=1,
                    exclusive_minimum=True,
                    exclusive_maximum=True,
                ),
                Param(
                    "div_factor", "float", 25.0, "The first lr is max_lr / div_factor.", minimum=1
                ),
                Param(
                    "final_div_factor",
                    "float",
                    1e4,
                    "The last lr is the first / final_div_factor.",
                    minimum=1,
                ),
            ),
            description="Leslie Smith's one-cycle policy: up to max_lr, then far below the start.",
        ),
    ]
