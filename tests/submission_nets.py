"""Tiny file-source models for the leaderboard tests: entry points `submission_nets:<factory>`.

Not a test module; the tests put this directory on sys.path so the entry points import.
"""

import time

import torch
from torch import nn


class TinyNet(nn.Module):
    """28×28 grey digits -> `classes` logits through one hidden layer (milliseconds per frame)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.flatten = nn.Flatten()   # float32 whatever the default dtype (test_frames sets float64)
        self.fc1 = nn.Linear(28 * 28, 16, dtype=torch.float32)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(16, classes, dtype=torch.float32)
        self.observable_layers = ["act"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.flatten(x))))


class NaNNet(TinyNet):
    """Right shape, but every logit is NaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("nan")


class SlowNet(TinyNet):
    """TinyNet taking 20 ms a forward pass: a card that takes seconds to score (an interrupted rescore)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return super().forward(x)


def tiny() -> nn.Module:
    return TinyNet()


def seven_classes() -> nn.Module:
    return TinyNet(classes=7)


def nan_outputs() -> nn.Module:
    return NaNNet()


def slow() -> nn.Module:
    return SlowNet()
