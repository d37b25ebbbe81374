"""NAdam and RAdam for fmnist-gui: an example of a plugin shipped as a package.

``pyproject.toml`` declares this module in the ``fmnist_gui`` entry-point
group; fmnist-gui imports it and calls the hook below.
"""

from __future__ import annotations

import torch

from fmnist_gui import OptimizerSpec, Param, hookimpl

__version__ = "1.0.0"

BETAS = Param(
    "betas",
    "floats",
    (0.9, 0.999),
    "Decay rates of the running averages of the gradient and its square.",
    minimum=0,
    maximum=1,
    exclusive_maximum=True,
)
EPS = Param(
    "eps",
    "float",
    1e-8,
    "Added to the denominator for numerical stability.",
    minimum=0,
    exclusive_minimum=True,
)
WEIGHT_DECAY = Param(
    "weight_decay", "float", 0.0, "L2 penalty (or decoupled decay, below).", minimum=0
)
DECOUPLED = Param(
    "decoupled_weight_decay",
    "bool",
    False,
    "Decay the weights directly, as AdamW does, instead of an L2 penalty.",
)


def make_nadam(params, lr, betas, eps, weight_decay, momentum_decay, decoupled_weight_decay):
    # The factory receives the model's parameters, the app's learning rate and
    # exactly the hyperparameters declared below, already checked.
    return torch.optim.NAdam(
        params,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        momentum_decay=momentum_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )


def make_radam(params, lr, betas, eps, weight_decay, decoupled_weight_decay):
    return torch.optim.RAdam(
        params,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )


@hookimpl
def fmnist_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="nadam",
            label="NAdam",
            factory=make_nadam,
            description="Adam with Nesterov momentum (Dozat, 2016).",
            params=(
                BETAS,
                EPS,
                WEIGHT_DECAY,
                Param(
                    "momentum_decay", "float", 4e-3, "Momentum decay (psi in the paper).", minimum=0
                ),
                DECOUPLED,
            ),
        ),
        OptimizerSpec(
            name="radam",
            label="RAdam",
            factory=make_radam,
            description="Adam with a rectified adaptive learning rate (Liu et al., 2019).",
            params=(BETAS, EPS, WEIGHT_DECAY, DECOUPLED),
        ),
    ]
