"""The simplest segmentation model: one 3x3 conv, one filter per class. Taught in lesson 03.

It scores every pixel from its 3x3 neighbourhood of colours only, so it learns little more than
"which colours tend to be which class". Every later model has to beat it.
"""

from __future__ import annotations

import torch
from torch import nn


class SingleConvSegmenter(nn.Module):
    """One 3x3 conv (padding 1): (N, in_channels, H, W) -> logits (N, num_classes, H, W)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 21) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=1)  # padding 1 keeps H, W

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"SingleConvSegmenter expects images of shape (N, {self.in_channels}, H, W), "
                             f"got {got}")
        return self.conv(x)  # (N, num_classes, H, W)
