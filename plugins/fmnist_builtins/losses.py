"""Built-in losses. Each takes the network's logits and the class indices."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fmnist_gui import LossSpec, Param, hookimpl

NUM_CLASSES = 10


def _cross_entropy(label_smoothing):
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)


def _nll():
    # NLLLoss expects log-probabilities; the tutorial notes that
    # CrossEntropyLoss is exactly LogSoftmax followed by NLLLoss.
    nll = nn.NLLLoss()

    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nll(F.log_softmax(logits, dim=1), targets)

    return loss_fn


def _mse():
    mse = nn.MSELoss()

    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(targets, NUM_CLASSES).to(logits.dtype)
        return mse(F.softmax(logits, dim=1), one_hot)

    return loss_fn


@hookimpl
def fmnist_register_losses() -> list[LossSpec]:
    return [
        LossSpec(
            name="cross_entropy",
            label="Cross-entropy",
            factory=_cross_entropy,
            description="nn.CrossEntropyLoss on the logits, the tutorial's loss.",
            params=(
                Param(
                    "label_smoothing",
                    "float",
                    0.0,
                    "Mixes the target with a uniform distribution (0 turns it off).",
                    minimum=0,
                    maximum=1,
                ),
            ),
        ),
        LossSpec(
            name="nll",
            label="Negative log-likelihood",
            factory=_nll,
            description="nn.NLLLoss on log_softmax(logits).",
        ),
        LossSpec(
            name="mse",
            label="Mean squared error",
            factory=_mse,
            description="nn.MSELoss between softmax(logits) and one-hot targets.",
        ),
    ]
