"""VGG16 with BatchNorm for CIFAR-10 (32x32 images). Taught in lesson 01.

The feature extractor is built from a config list, as in torchvision's ``vgg.py``: an int is a
3x3 conv (+BatchNorm) + ReLU with that many output channels, ``"M"`` is a 2x2 max-pool. Five
pools take a 32x32 image to a 1x1 map of 512 channels, so the head is a small MLP on 512 numbers
instead of ImageNet's 7x7x512 -> 4096 -> 4096 (that head alone would be 120 M parameters).
"""

from __future__ import annotations

import torch
from torch import nn

VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                              512, 512, 512, "M", 512, 512, 512, "M"]


def scale_cfg(cfg: list[int | str], width_div: int = 1) -> list[int | str]:
    """Divide every conv width of ``cfg`` by ``width_div`` (the ``ci`` profile trains small models)."""
    if width_div < 1 or any(isinstance(v, int) and v % width_div for v in cfg):
        raise ValueError(f"width_div must be a positive divisor of every conv width, got {width_div}")
    return [v if v == "M" else v // width_div for v in cfg]


def make_layers(cfg: list[int | str], batch_norm: bool = True, in_channels: int = 3) -> nn.Sequential:
    """3x3 conv (+BN) + ReLU per int in ``cfg``, 2x2 max-pool per "M": (N,3,32,32) -> (N,512,1,1)."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))  # halves H and W
            continue
        # bias kept even before BN (torchvision does the same; BN makes it redundant, not harmful)
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """torchvision's VGG init: Kaiming-normal convs, BN to identity, small-normal linears."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class VGG(nn.Module):
    """``features`` (N,3,32,32) -> (N,C,1,1), then Flatten - Linear - ReLU - Dropout - Linear."""

    def __init__(self, features: nn.Sequential, num_classes: int = 10, hidden: int = 512,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
        self.in_channels = convs[0].in_channels  # checked in forward
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, C, 1, 1) -> (N, C)
            nn.Linear(convs[-1].out_channels, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fits = x.ndim == 4 and x.shape[1] == self.in_channels and x.shape[-2] // 32 == x.shape[-1] // 32 == 1
        if not fits:
            raise ValueError(f"VGG expects images of shape (N, {self.in_channels}, 32, 32) (CIFAR-10 size: "
                             f"five 2x2 max-pools must leave a 1x1 map), got {tuple(x.shape)}")
        x = self.features(x)  # (N, 512, 1, 1)
        return self.classifier(x)  # (N, num_classes) logits


def vgg16(num_classes: int = 10, width_div: int = 1) -> VGG:
    """VGG16-BN for CIFAR-10; ``width_div`` divides every conv width and the hidden width."""
    features = make_layers(scale_cfg(VGG16_CFG, width_div), batch_norm=True)
    return VGG(features, num_classes=num_classes, hidden=512 // width_div)
