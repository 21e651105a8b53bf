"""U-Net for semantic segmentation (Pascal VOC, 21 classes). Taught in lesson 04.

Parts first (``DoubleConv``, ``Down``, ``Up``, ``OutConv``), as in milesial/Pytorch-UNet's
``unet_parts.py``; then ``UNet`` only wires them, and its ``forward`` reads like the diagram:
an encoder of four ``Down`` steps (64 -> 1024 channels, 1/16 of the size), a decoder of four ``Up``
steps that each concatenate the encoder map of the same size (the skip connection), a 1x1 head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Module):
    """(3x3 conv => BN => ReLU) * 2; the size is kept (padding 1)."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        super().__init__()
        mid_channels = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),  # BN adds the bias
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """2x2 max-pool (halves H and W, rounding down) => DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """x2 upsample => pad to the skip's size => concat [skip, upsampled] => DoubleConv.

    ``in_channels`` counts the concatenation (skip + upsampled), e.g. ``Up(1024 + 512, 512)``.
    ``bilinear=False`` learns the upsampling with a 2x2 transposed conv that keeps the channel
    count, so the concat widths are the same in both modes.
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = True) -> None:
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        else:
            up_channels = in_channels - out_channels  # the skip brings out_channels
            self.up = nn.ConvTranspose2d(up_channels, up_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (N, C, 2h, 2w)
        # an odd size was rounded down by the max-pool: pad so the maps line up with the skip
        dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])  # (N, C, H_skip, W_skip)
        x = torch.cat([skip, x], dim=1)  # (N, C_skip + C, H_skip, W_skip)
        return self.conv(x)


class OutConv(nn.Module):
    """1x1 conv: per-pixel class scores (logits)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UNet(nn.Module):
    """U-Net: (N, in_channels, H, W) -> logits (N, num_classes, H, W) for any H, W >= 16.

    ``base_width`` is the first width; the others are 2x, 4x, 8x, 16x it (64 -> 64..1024; the
    ``ci`` profile trains ``base_width=8``).
    """

    min_size = 16  # four 2x2 max-pools: 16 px leave a 1x1 map at the bottom

    def __init__(self, in_channels: int = 3, num_classes: int = 21, bilinear: bool = True,
                 base_width: int = 64) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        w = base_width
        self.inc = DoubleConv(in_channels, w)
        self.down1 = Down(w, 2 * w)
        self.down2 = Down(2 * w, 4 * w)
        self.down3 = Down(4 * w, 8 * w)
        self.down4 = Down(8 * w, 16 * w)
        self.up1 = Up(16 * w + 8 * w, 8 * w, bilinear)  # 1024 + 512 -> 512
        self.up2 = Up(8 * w + 4 * w, 4 * w, bilinear)  # 512 + 256 -> 256
        self.up3 = Up(4 * w + 2 * w, 2 * w, bilinear)  # 256 + 128 -> 128
        self.up4 = Up(2 * w + w, w, bilinear)  # 128 + 64 -> 64
        self.outc = OutConv(w, num_classes)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"UNet expects images of shape (N, {self.in_channels}, H, W), got {got}")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"UNet needs images of at least {self.min_size}x{self.min_size} pixels "
                             f"(four 2x2 max-pools halve the size four times), got "
                             f"{x.shape[-2]}x{x.shape[-1]}; resize or pad the images")

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder maps x1..x5 (full, 1/2, 1/4, 1/8, 1/16 of the size): the skip connections and the bottom."""
        self._check_input(x)
        x1 = self.inc(x)  # (N, 64, H, W)
        x2 = self.down1(x1)  # (N, 128, H/2, W/2)
        x3 = self.down2(x2)  # (N, 256, H/4, W/4)
        x4 = self.down3(x3)  # (N, 512, H/8, W/8)
        x5 = self.down4(x4)  # (N, 1024, H/16, W/16)
        return [x1, x2, x3, x4, x5]

    @torch.no_grad()
    def skip_shapes(self, x: torch.Tensor) -> list[tuple[int, ...]]:
        """Shapes of the encoder maps x1..x5 for input ``x`` (for a check cell)."""
        was_training = self.training
        self.eval()  # a shape probe must not update the BatchNorm running statistics
        try:
            return [tuple(f.shape) for f in self.encode(x)]
        finally:
            self.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2, x3, x4, x5 = self.encode(x)
        x = self.up1(x5, x4)  # (N, 512, H/8, W/8)
        x = self.up2(x, x3)  # (N, 256, H/4, W/4)
        x = self.up3(x, x2)  # (N, 128, H/2, W/2)
        x = self.up4(x, x1)  # (N, 64, H, W)
        return self.outc(x)  # (N, num_classes, H, W) logits
