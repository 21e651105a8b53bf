"""Checks of lesson 05 (ResNet-50 U-Net): ``encoder_features``, ``DecoderBlock`` and ``ResNetUNet``.

Each check prints one line per aspect. Beyond one ``eval()`` forward, they try odd and unequal
input sizes (65x47: sides that round up differently), torchvision's ResNet-50 as well as the
course's, a ``train()`` step whose gradients must reach every parameter, the encoder's included
(an encoder run under ``torch.no_grad()`` or a ``.detach()``ed skip shows), BatchNorm statistics
updated once per layer, and another ``num_classes``. The ``train()`` steps run the student's code
on 8x narrower ResNets (the same wiring), so that each check takes a few seconds on a laptop CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from course_utils.checks.adapters import OneInOneOut, flat_shape
from course_utils.checks.verdicts import (check_close, check_equal, check_param_count, check_same_as,
                                          check_same_training, check_shape, labelled, randomize_batchnorm)
from course_utils.models import resnet, resnet_unet

FEATURE_SHAPES = [(1, 64, 33, 24), (1, 256, 17, 12), (1, 512, 9, 6), (1, 1024, 5, 3), (1, 2048, 3, 2)]  # 65x47


def _flat(maps: object) -> object:
    """A list of tensors as one flat tensor (to compare values at once); anything else unchanged."""
    if isinstance(maps, (list, tuple)) and maps and all(isinstance(m, torch.Tensor) for m in maps):
        return torch.cat([m.flatten() for m in maps])
    return maps


def check_encoder_features(encoder_features: Callable) -> None:
    """Question: ``encoder_features(net, x)`` -> [stem (before the max-pool), layer1, ..., layer4]."""
    net = randomize_batchnorm(resnet.ResNet50(stem="imagenet").eval())  # a fresh BatchNorm does nothing in eval()
    x = torch.randn(1, 3, 65, 47, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        maps = encoder_features(net, x)
        expected = resnet.encoder_features(net, x)
    check_equal(len(maps) if isinstance(maps, (list, tuple)) else type(maps).__name__, 5, name="number of feature maps")
    check_equal([tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__ for m in maps], FEATURE_SHAPES,
                name="feature map shapes for a 65x47 input")
    check_close(_flat(maps), _flat(expected), name="feature values (course ResNet50)")
    tv_net = randomize_batchnorm(torchvision.models.resnet50().eval())
    with torch.no_grad():
        check_close(_flat(encoder_features(tv_net, x)), _flat(resnet.encoder_features(tv_net, x)),
                    name="feature values (torchvision resnet50)")
    shapes = [(2, 3, 65, 47)]
    narrow = resnet.ResNet50(stem="imagenet", width_div=8)
    with labelled("ResNet50 8x narrower"):
        check_same_training(OneInOneOut(narrow, shapes, call=encoder_features),
                            OneInOneOut(copy.deepcopy(narrow), shapes, call=resnet.encoder_features),
                            input_shape=flat_shape(shapes))


def check_decoder_block(DecoderBlock: type[nn.Module]) -> None:
    """Question: ``DecoderBlock(in, skip, out)``: bilinear upsample to the skip's size (align_corners=False),
    concatenate [skip, x], ``unet.DoubleConv``."""
    block = DecoderBlock(2048, 1024, 512).eval()  # the deepest block of the ResNet-50 U-Net
    with torch.no_grad():
        check_shape(block(torch.zeros(1, 2048, 3, 4), torch.zeros(1, 1024, 5, 7)), (1, 512, 5, 7))
    check_param_count(block, 16_517_120)
    # two inputs, one shape each: x from below (3x4, upsampled to 5x7) and the skip (5x7)
    check_same_as(block, resnet_unet.DecoderBlock(2048, 1024, 512), input_shape=[(1, 2048, 3, 4), (1, 1024, 5, 7)])
    shapes = [(2, 8, 3, 4), (2, 4, 6, 9)]  # the skip is not twice x: 2 times the height, 2.25 times the width
    with labelled("x 3x4, skip 6x9"):
        check_same_as(DecoderBlock(8, 4, 6), resnet_unet.DecoderBlock(8, 4, 6), input_shape=shapes)
        check_same_training(OneInOneOut(DecoderBlock(8, 4, 6), shapes),
                            OneInOneOut(resnet_unet.DecoderBlock(8, 4, 6), shapes), input_shape=flat_shape(shapes))


def _with_parts_of(model: nn.Module, donor: nn.Module) -> nn.Module:
    """``model`` with each part (``encoder``, ``up4`` ... ``head``) replaced by a copy of ``donor``'s part
    of the same name: the student's ``forward`` on the donor's (narrow) parts."""
    for name, part in donor.named_children():
        setattr(model, name, copy.deepcopy(part))
    return model


def check_resnet_unet(ResNetUNet: type[nn.Module]) -> None:
    """Question: ``ResNetUNet(num_classes)``: ResNet-50 encoder without its head, up4..up1, 1x1 head,
    logits upsampled bilinearly to the input's size."""
    with torch.device("meta"):  # shapes only: no memory, no time spent on random initial weights
        model = ResNetUNet(num_classes=21)
        seven = ResNetUNet(num_classes=7)
    check_param_count(model, 43_862_165)
    check_param_count(model, 43_862_165, trainable_only=True)  # nothing frozen in the constructor
    with labelled("num_classes=7"):
        check_param_count(seven, 43_861_255)
    narrow = resnet_unet.ResNetUNet(num_classes=7, width_div=8)
    small = _with_parts_of(seven, narrow)  # your forward on 8x narrower parts: fast
    with torch.no_grad():
        check_shape(small.eval()(torch.zeros(1, 3, 35, 47)), (1, 7, 35, 47), name="logits for 35x47 (odd sizes)")
    # the reference's weights are copied in: the meta model only needs (uninitialised) memory
    check_same_as(model.to_empty(device="cpu"), resnet_unet.ResNetUNet(num_classes=21), input_shape=(1, 3, 35, 47))
    with labelled("num_classes=7, parts 8x narrower"):
        check_same_training(small, narrow, input_shape=(2, 3, 35, 47))
