"""The tutorial's network, with its module names, so ``state_dict`` keys match it."""

from __future__ import annotations

from torch import nn


class NeuralNetwork(nn.Module):
    """784-512-512-10 MLP with ReLUs, exactly as in the tutorial."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 10),
        )

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))
