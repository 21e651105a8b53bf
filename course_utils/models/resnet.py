"""ResNet-50 (torchvision's v1.5) for CIFAR-10 and as a segmentation encoder. Taught in lesson 02.

Module names follow torchvision's ``resnet.py`` exactly (``conv1``, ``bn1``, ``relu``, ``maxpool``,
``layer1..4``, ``avgpool``, ``fc``; in a block ``conv1..3``, ``bn1..3``, ``relu``, ``downsample``),
so ``ResNet50(stem="imagenet", num_classes=1000)`` loads torchvision's ImageNet weights with
``load_state_dict(strict=True)``. "v1.5" means a block's stride sits on its 3x3 conv, not its
first 1x1 conv (the original paper): a 1x1 conv with stride 2 would skip 3 of every 4 pixels.
"""

from __future__ import annotations

import torch
from torch import nn

class Bottleneck(nn.Module):
    """1x1 conv (reduce) - 3x3 conv (stride) - 1x1 conv (expand), each with BN; add the shortcut, then ReLU.

    The shortcut is the input itself, or a 1x1 conv + BN projection ("downsample") when the
    block changes the number of channels or the resolution, so the two can be added.
    """

    expansion = 4  # out_channels = 4 * middle_channels in ResNet-50

    def __init__(self, in_channels: int, middle_channels: int, out_channels: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, middle_channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(middle_channels)
        self.conv2 = nn.Conv2d(middle_channels, middle_channels, kernel_size=3, stride=stride, padding=1,
                               bias=False)  # bias=False: the BN that follows has its own bias
        self.bn2 = nn.BatchNorm2d(middle_channels)
        self.conv3 = nn.Conv2d(middle_channels, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if downsample is None and (stride != 1 or in_channels != out_channels):
            downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (N, out, H/stride, W/stride)
        out = self.relu(self.bn1(self.conv1(x)))  # (N, middle, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (N, middle, H/stride, W/stride)
        out = self.bn3(self.conv3(out))  # (N, out, H/stride, W/stride)
        return self.relu(out + identity)  # ReLU after the add keeps the shortcut a clean identity path


ResidualBlock = Bottleneck  # the name the lesson's Question cell uses


def make_stage(in_channels: int, middle_channels: int, out_channels: int, blocks: int,
               stride: int = 1, block: type[nn.Module] = Bottleneck) -> nn.Sequential:
    """``blocks`` blocks (bottlenecks); only the first changes channels and (with ``stride=2``) halves H and W."""
    layers = [block(in_channels, middle_channels, out_channels, stride=stride)]
    layers += [block(out_channels, middle_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def encoder_features(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Stem output (before the max-pool) and the output of ``layer1..4`` of a torchvision-named ResNet.

    Works for this module's ``ResNet50`` and for ``torchvision.models.resnet50`` alike. With the
    ImageNet stem the sizes are 1/2, 1/4, 1/8, 1/16 and 1/32 of the input.
    """
    stem = net.relu(net.bn1(net.conv1(x)))  # (N, 64, H/2, W/2) with the ImageNet stem
    x1 = net.layer1(net.maxpool(stem))  # (N, 256, H/4, W/4)
    x2 = net.layer2(x1)  # (N, 512, H/8, W/8)
    x3 = net.layer3(x2)  # (N, 1024, H/16, W/16)
    x4 = net.layer4(x3)  # (N, 2048, H/32, W/32)
    return [stem, x1, x2, x3, x4]


def make_stem(stem: str, width: int) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """``conv1, bn1, relu, maxpool`` of a ResNet: "imagenet" (7x7 stride 2 + 3x3 max-pool stride 2)
    or "cifar" (3x3 stride 1, no max-pool, so a 32x32 image keeps its detail)."""
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
    if stem == "imagenet":
        conv = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    else:
        conv = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    # nn.Identity keeps the name "maxpool", so both stems have the same module names
    maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
    return conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True), maxpool


class ResNet50(nn.Module):
    """ResNet-50: stem, four stages of bottlenecks [3, 4, 6, 3], global average pool, linear classifier.

    ``stem="cifar"``: 3x3 conv stride 1 and no max-pool, so a 32x32 image keeps its detail
    (layer4 is 4x4). ``stem="imagenet"``: 7x7 conv stride 2 and a 3x3 max-pool stride 2, as in
    torchvision (a 32x32 image shrinks to 1x1 by layer4). ``width_div`` divides every width
    (the ``ci`` profile trains small models).
    """

    def __init__(self, num_classes: int = 10, stem: str = "cifar", width_div: int = 1) -> None:
        super().__init__()
        if width_div < 1 or 64 % width_div:
            raise ValueError(f"width_div must divide 64 (1, 2, 4, 8, ...), got {width_div}")
        self.in_channels = 3
        width = 64 // width_div
        self.conv1, self.bn1, self.relu, self.maxpool = make_stem(stem, width)

        # stage: (in, middle, out) channels, number of blocks, stride of its first block
        self.layer1 = make_stage(width, width, 4 * width, 3, stride=1)  # keeps the size of the stem output
        self.layer2 = make_stage(4 * width, 2 * width, 8 * width, 4, stride=2)
        self.layer3 = make_stage(8 * width, 4 * width, 16 * width, 6, stride=2)
        self.layer4 = make_stage(16 * width, 8 * width, 32 * width, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(32 * width, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's init: Kaiming-normal convs (fan_out), BN to identity; ``fc`` keeps PyTorch's default."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"ResNet50 expects a batch of images of shape (N, {self.in_channels}, H, W), "
                             f"got {got}; add a batch dimension with x.unsqueeze(0) for one image")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[stem (before max-pool), layer1, layer2, layer3, layer4] outputs, for a segmentation encoder."""
        self._check_input(x)
        return encoder_features(self, x)

    stages = features  # same thing under the name some lessons use

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # cifar: (N, 64, 32, 32)
        x = self.layer1(x)  # (N, 256, 32, 32)
        x = self.layer2(x)  # (N, 512, 16, 16)
        x = self.layer3(x)  # (N, 1024, 8, 8)
        x = self.layer4(x)  # (N, 2048, 4, 4)
        x = torch.flatten(self.avgpool(x), 1)  # (N, 2048)
        return self.fc(x)  # (N, num_classes) logits


def resnet50(num_classes: int = 10, stem: str = "cifar", width_div: int = 1) -> ResNet50:
    """ResNet-50 for CIFAR-10 by default; ``stem="imagenet", num_classes=1000`` matches torchvision."""
    return ResNet50(num_classes=num_classes, stem=stem, width_div=width_div)


class SmallResNet(nn.Module):
    """A ResNet of any depth and width from the same bottlenecks: stem, stages, average pool, linear.

    Stage ``i`` holds ``stage_blocks[i]`` bottlenecks of middle width ``base_width * 2**i`` and
    output width four times that; every stage after the first halves H and W. The module names
    are ResNet50's (``conv1``, ``bn1``, ``maxpool``, ``layer1..``, ``fc``), and
    ``SmallResNet(stage_blocks=(3, 4, 6, 3), base_width=64)`` IS ``ResNet50``: same parameters,
    same output. Used by lesson 06 (your own dataset), where a few thousand images need a small net.
    """

    _init_weights = ResNet50._init_weights  # the same torchvision init

    def __init__(self, num_classes: int = 10, stage_blocks: tuple[int, ...] = (1, 1, 1),
                 base_width: int = 32, stem: str = "cifar") -> None:
        super().__init__()
        if not stage_blocks or any(int(b) != b or b < 1 for b in stage_blocks):
            raise ValueError(f"stage_blocks must list at least one stage of >= 1 blocks, e.g. (1, 1, 1); "
                             f"got {stage_blocks!r}")
        if int(base_width) != base_width or base_width < 1:
            raise ValueError(f"base_width must be a positive integer (e.g. 32), got {base_width!r}")
        self.in_channels = 3
        self.conv1, self.bn1, self.relu, self.maxpool = make_stem(stem, base_width)
        in_channels = base_width
        for i, blocks in enumerate(stage_blocks):
            middle = base_width * 2**i
            stage = make_stage(in_channels, middle, 4 * middle, blocks, stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", stage)  # layer1, layer2, ... as in torchvision
            in_channels = 4 * middle
        self.num_stages = len(stage_blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"SmallResNet expects a batch of images of shape (N, 3, H, W), got {got}; "
                             f"add a batch dimension with x.unsqueeze(0) for one image")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # cifar stem: (N, base_width, H, W)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)  # stage i: (N, 4 * base_width * 2**(i-1), H/2**(i-1), ...)
        x = torch.flatten(self.avgpool(x), 1)  # (N, 4 * base_width * 2**(stages-1))
        return self.fc(x)  # (N, num_classes) logits
