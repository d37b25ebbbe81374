"""Built-in optimizers: the tutorial's SGD, and the Adam and RMSProp it mentions."""

from __future__ import annotations

import torch

from fmnist_gui import OptimizerSpec, Param, hookimpl

WEIGHT_DECAY = Param(
    "weight_decay", "float", 0.0, "L2 penalty added to the gradient.", minimum=0, live=True
)
EPS = Param(
    "eps",
    "float",
    1e-8,
    "Added to the denominator for numerical stability.",
    minimum=0,
    exclusive_minimum=True,
)


def _sgd(params, lr, momentum, dampening, weight_decay, nesterov):
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=weight_decay,
        nesterov=nesterov,
    )


def _adam(params, lr, betas, eps, weight_decay, amsgrad):
    return torch.optim.Adam(
        params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


def _rmsprop(params, lr, alpha, eps, weight_decay, momentum, centered):
    return torch.optim.RMSprop(
        params,
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
    )


@hookimpl
def fmnist_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="sgd",
            label="SGD",
            factory=_sgd,
            description="Stochastic gradient descent, the tutorial's optimizer.",
            params=(
                Param(
                    "momentum",
                    "float",
                    0.0,
                    "Momentum factor (0 turns it off).",
                    minimum=0,
                    maximum=1,
                    exclusive_maximum=True,
                    live=True,
                ),
                Param("dampening", "float", 0.0, "Dampening for momentum.", minimum=0, maximum=1),
                WEIGHT_DECAY,
                Param(
                    "nesterov",
                    "bool",
                    False,
                    "Nesterov momentum; needs momentum > 0 and dampening 0.",
                ),
            ),
        ),
        OptimizerSpec(
            name="adam",
            label="Adam",
            factory=_adam,
            description="Adaptive moment estimation (Kingma & Ba, 2014).",
            params=(
                Param(
                    "betas",
                    "floats",
                    (0.9, 0.999),
                    "Decay rates of the running averages of the gradient and its square.",
                    minimum=0,
                    maximum=1,
                    exclusive_maximum=True,
                    live=True,
                ),
                EPS,
                WEIGHT_DECAY,
                Param("amsgrad", "bool", False, "Use the AMSGrad variant."),
            ),
        ),
        OptimizerSpec(
            name="rmsprop",
            label="RMSProp",
            factory=_rmsprop,
            description="Divides the gradient by a running average of its magnitude.",
            params=(
                Param(
                    "alpha",
                    "float",
                    0.99,
                    "Smoothing constant of the squared-gradient average.",
                    minimum=0,
                    maximum=1,
                ),
                EPS,
                WEIGHT_DECAY,
                Param("momentum", "float", 0.0, "Momentum factor.", minimum=0),
                Param("centered", "bool", False, "Normalise by the gradient's estimated variance."),
            ),
        ),
    ]
