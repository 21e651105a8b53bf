"""U-Net with a ResNet-50 encoder, optionally ImageNet-pretrained. Taught in lesson 05.

The encoder is a ResNet-50 with torchvision's module names: the course's own ``ResNet50`` or
``torchvision.models.resnet50`` (which can bring ImageNet weights). Both go through the same
``resnet.encoder_features``: the stem at 1/2 of the input size (64 channels), then ``layer1..4``
at 1/4, 1/8, 1/16, 1/32 (256, 512, 1024, 2048 channels). The decoder climbs back to 1/2 with
U-Net blocks (upsample to the skip's size, concat, ``DoubleConv``); a 1x1 head gives the logits,
which are upsampled to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from course_utils.models.resnet import ResNet50, encoder_features
from course_utils.models.unet import DoubleConv, OutConv

DECODER_WIDTHS = (512, 256, 128, 64)  # output channels of the decoder blocks, at 1/16, 1/8, 1/4, 1/2


def torchvision_resnet50(pretrained: bool = False) -> nn.Module:
    """torchvision's ResNet-50, with ImageNet weights if asked and reachable; random init otherwise."""
    return _torchvision_resnet50(pretrained)[0]


def _torchvision_resnet50(pretrained: bool) -> tuple[nn.Module, bool]:
    """(model, whether the ImageNet weights were actually loaded)."""
    if not pretrained:
        return torchvision.models.resnet50(weights=None), False
    try:
        return torchvision.models.resnet50(weights=torchvision.models.ResNet50_Weights.IMAGENET1K_V2), True
    except (OSError, RuntimeError) as error:  # offline, proxy, interrupted download, bad checksum
        reason = " ".join(f"{type(error).__name__}: {error}".split())  # keep it on one line
        print(f"ImageNet weights could not be downloaded ({reason}); training the encoder from scratch")
        return torchvision.models.resnet50(weights=None), False


class DecoderBlock(nn.Module):
    """Bilinear upsample to the skip's size => concat [skip, upsampled] => DoubleConv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = DoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # to the skip's exact size (not x2), so odd input sizes line up without padding
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))  # (N, out_channels, H_skip, W_skip)


class ResNetUNet(nn.Module):
    """ResNet-50 encoder + U-Net decoder: (N, 3, H, W) -> logits (N, num_classes, H, W), H, W >= 32.

    Args:
        encoder: "course" (``models.resnet.ResNet50`` with the ImageNet stem) or "torchvision".
        pretrained: load torchvision's ImageNet weights (``encoder="torchvision"`` only). Offline,
            one line says so and the encoder starts from random weights.
        width_div: divide the encoder (course encoder only) and decoder widths (``ci`` profile).
    """

    min_size = 32  # the encoder divides the size by 32

    def __init__(self, num_classes: int = 21, encoder: str = "course", pretrained: bool = False,
                 width_div: int = 1) -> None:
        super().__init__()
        self.encoder_pretrained = False  # True only when ImageNet weights were really loaded
        if encoder == "course":
            if pretrained:
                raise ValueError("pretrained=True needs encoder='torchvision' (the course ResNet50 has no "
                                 "ImageNet weights of its own)")
            self.encoder = ResNet50(stem="imagenet", width_div=width_div)
        elif encoder == "torchvision":
            if width_div != 1:
                raise ValueError("width_div must be 1 with encoder='torchvision'; use encoder='course' "
                                 "for a small model")
            self.encoder, self.encoder_pretrained = _torchvision_resnet50(pretrained)
        else:
            raise ValueError(f"encoder must be 'course' or 'torchvision', got {encoder!r}")
        # the classification head is not used: drop its parameters (2 M for ImageNet's 1000 classes)
        self.encoder.avgpool, self.encoder.fc = nn.Identity(), nn.Identity()

        # channels of the encoder maps (stem, layer1..4), read from the modules themselves
        e = self.encoder
        c0, c1, c2, c3, c4 = [e.bn1.num_features] + [layer[-1].bn3.num_features
                                                     for layer in (e.layer1, e.layer2, e.layer3, e.layer4)]
        d4, d3, d2, d1 = (w // width_div for w in DECODER_WIDTHS)
        self.up4 = DecoderBlock(c4, c3, d4)  # 2048 + 1024 -> 512, at 1/16
        self.up3 = DecoderBlock(d4, c2, d3)  # 512 + 512 -> 256, at 1/8
        self.up2 = DecoderBlock(d3, c1, d2)  # 256 + 256 -> 128, at 1/4
        self.up1 = DecoderBlock(d2, c0, d1)  # 128 + 64 -> 64, at 1/2
        self.head = OutConv(d1, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"ResNetUNet expects images of shape (N, 3, H, W), got {got}")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"ResNetUNet needs images of at least {self.min_size}x{self.min_size} pixels "
                             f"(the encoder divides the size by 32), got {x.shape[-2]}x{x.shape[-1]}")
        stem, x1, x2, x3, x4 = encoder_features(self.encoder, x)  # 1/2, 1/4, 1/8, 1/16, 1/32
        y = self.up4(x4, x3)  # (N, 512, H/16, W/16)
        y = self.up3(y, x2)  # (N, 256, H/8, W/8)
        y = self.up2(y, x1)  # (N, 128, H/4, W/4)
        y = self.up1(y, stem)  # (N, 64, H/2, W/2)
        logits = self.head(y)  # (N, num_classes, H/2, W/2)
        # upsampling the logits equals upsampling the features first (both are linear), but is cheaper
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (N, C, H, W)

    def set_encoder_trainable(self, trainable: bool) -> None:
        """Freeze (False) or unfreeze (True) the encoder's parameters; the decoder always trains.

        BatchNorm running statistics still update in ``train()`` mode; only the weights are frozen.
        """
        for p in self.encoder.parameters():
            p.requires_grad_(trainable)

    def freeze_encoder(self, flag: bool = True) -> None:
        """Freeze the encoder (``flag=True``), e.g. for the first epochs on top of ImageNet features."""
        self.set_encoder_trainable(not flag)

    def param_groups(self, encoder_lr: float, decoder_lr: float) -> list[dict]:
        """Optimizer groups with their own learning rates: a pretrained encoder wants a smaller one."""
        decoder = [p for name, p in self.named_parameters() if not name.startswith("encoder.")]
        return [{"params": list(self.encoder.parameters()), "lr": encoder_lr},
                {"params": decoder, "lr": decoder_lr}]
