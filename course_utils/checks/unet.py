"""Checks of lesson 04 (U-Net): ``DoubleConv``, ``Up`` and ``UNet``'s ``encode``/``forward``.

Each check prints one line per aspect. Beyond one ``eval()`` forward, they look at what such a
forward cannot see: BatchNorm momentum and eps and the activation modules, clipping activations
(inputs x100), a ``train()`` step with its gradients (a ``.detach()``ed skip or an encoder under
``torch.no_grad()`` shows), other channel counts, and skips whose height and width need different
padding (``dx != dy``, 8x9 maps).
"""

from __future__ import annotations

import torch
from torch import nn

from course_utils.checks.adapters import OneInOneOut, flat_shape
from course_utils.checks.verdicts import (check_equal, check_param_count, check_same_as, check_same_settings,
                                          check_same_training, check_shape, labelled)
from course_utils.models import unet

# (x, skip) shapes for Up(12, 4): the upsampled x needs dy rows and dx columns of padding
UP_CASES = {"dy=1, dx=0": [(2, 8, 4, 5), (2, 4, 9, 10)],
            "dy=0, dx=1 (8x9 skip)": [(2, 8, 4, 4), (2, 4, 8, 9)],
            "dy=1, dx=1": [(2, 8, 8, 12), (2, 4, 17, 25)]}


def check_double_conv(DoubleConv: type[nn.Module]) -> None:
    """Question: ``DoubleConv(in, out)``: (3x3 conv without bias, BatchNorm, ReLU) x 2, size kept."""
    block = DoubleConv(3, 64)
    with torch.no_grad():
        check_shape(block.eval()(torch.zeros(2, 3, 33, 47)), (2, 64, 33, 47))
    check_param_count(block, 38_848)  # conv weights 3*64*9 + 64*64*9, BatchNorm 2 * (64 + 64)
    reference = unet.DoubleConv(64, 128)
    mine = DoubleConv(64, 128)
    check_same_settings(mine, reference)
    check_same_as(mine, reference, input_shape=(2, 64, 16, 16))
    check_same_as(DoubleConv(5, 7), unet.DoubleConv(5, 7), input_shape=(2, 5, 9, 11), input_scale=100)
    check_same_training(DoubleConv(5, 7), unet.DoubleConv(5, 7), input_shape=(2, 5, 9, 11))


def check_up(Up: type[nn.Module]) -> None:
    """Question: ``Up(in, out)``: x2 bilinear upsample (align_corners=True), pad to the skip's size
    (an odd extra pixel after), concatenate [skip, x], DoubleConv."""
    up = Up(1024 + 512, 512)
    with torch.no_grad():
        check_shape(up.eval()(torch.zeros(1, 1024, 4, 5), torch.zeros(1, 512, 9, 11)), (1, 512, 9, 11))
    check_param_count(up, 9_439_232)  # the DoubleConv(1536, 512) only: bilinear upsampling learns nothing
    for case, shapes in UP_CASES.items():
        with labelled(case):
            check_same_as(Up(12, 4), unet.Up(12, 4), input_shape=shapes)
    shapes = UP_CASES["dy=0, dx=1 (8x9 skip)"]  # gradients must reach x and the skip
    check_same_training(OneInOneOut(Up(12, 4), shapes), OneInOneOut(unet.Up(12, 4), shapes),
                        input_shape=flat_shape(shapes))


def check_unet(UNet: type[nn.Module]) -> None:
    """Question: ``UNet.encode`` (x1..x5) and ``UNet.forward`` (up1..up4 with the skips x4..x1, then outc)."""
    model = UNet().eval()
    with torch.no_grad():
        maps = model.encode(torch.zeros(1, 3, 17, 23))  # not multiples of 16: the sizes round down
    check_equal([tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__ for f in maps],
                [(1, 64, 17, 23), (1, 128, 8, 11), (1, 256, 4, 5), (1, 512, 2, 2), (1, 1024, 1, 1)],
                name="encoder maps x1..x5")
    check_param_count(model, 31_386_133)
    small = dict(in_channels=1, num_classes=7, base_width=4)  # a narrow U-Net: the same wiring, fast to train
    with torch.no_grad():
        check_shape(UNet(**small).eval()(torch.zeros(2, 1, 35, 50)), (2, 7, 35, 50),
                    name="logits of UNet(in_channels=1, num_classes=7, base_width=4) for 35x50")
    check_same_as(model, unet.UNet(), input_shape=(1, 3, 17, 23))  # the output has the input's size
    with labelled("in_channels=1, num_classes=7, base_width=4"):
        check_same_as(UNet(**small), unet.UNet(**small), input_shape=(2, 1, 35, 50))
        check_same_training(UNet(**small), unet.UNet(**small), input_shape=(2, 1, 35, 50))
