"""Checks of lesson 02 (ResNet-50 on CIFAR-10): ``ResidualBlock``, ``make_stage`` and ``ResNet50``.

Each check prints one line per aspect. Besides an ``eval()`` forward they look at what such a
forward cannot see: BatchNorm settings and activation types, a ``train()`` step with its
gradients (a branch or shortcut cut off from the gradient shows there), large inputs (a clipping
activation shows there), the first block of layer1 (a channel change without a stride) and other
widths, the ``block`` a stage is asked to use, and ``num_classes``.
Question 3 is checked with the reference's ``make_stage`` and block, so that it is graded on its
own: a mistake in Question 1 or 2 is not counted twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from course_utils.checks.verdicts import (check_close, check_equal, check_param_count, check_same_as,
                                          check_same_settings, check_same_shapes, check_same_training, check_shape,
                                          labelled)
from course_utils.models import resnet

STAGE_SHAPES = [("layer1", (1, 256, 32, 32)), ("layer2", (1, 512, 16, 16)), ("layer3", (1, 1024, 8, 8)),
                ("layer4", (1, 2048, 4, 4))]


def check_residual_block(ResidualBlock: type[nn.Module]) -> None:
    """Question: the bottleneck ``ResidualBlock(in_channels, middle_channels, out_channels, stride)``."""
    x = torch.randn(2, 256, 8, 8, generator=torch.Generator().manual_seed(0))
    block = ResidualBlock(256, 64, 256).eval()  # identity shortcut
    check_equal(block.downsample is None, True, name="identity block has no downsample:")
    with torch.no_grad():
        check_shape(block(x.clone()), (2, 256, 8, 8), name="identity block output")
        projection = ResidualBlock(256, 128, 512, stride=2).eval()
        check_shape(projection(x.clone()), (2, 512, 4, 4), name="projection block output")
        check_shape(ResidualBlock(256, 64, 256, stride=2).eval()(x.clone()), (2, 256, 4, 4),
                    name="stride-2 block, same channels, output")
        check_shape(ResidualBlock(64, 64, 256).eval()(torch.zeros(2, 64, 8, 8)), (2, 256, 8, 8),
                    name="layer1's first block (64 -> 256 channels, stride 1) output")
        for b in (block, projection):  # zero the branch: only the shortcut is left
            nn.init.zeros_(b.bn3.weight)
            nn.init.zeros_(b.bn3.bias)
        check_close(block(x.clone()), torch.relu(x), name="identity block with zero branch = ReLU(x)")
        check_close(projection(x.clone()), torch.relu(projection.downsample(x)),
                    name="projection block with zero branch = ReLU(downsample(x))")
    check_same_settings(ResidualBlock(256, 128, 512, stride=2), resnet.Bottleneck(256, 128, 512, stride=2))
    cases = [((256, 64, 256, 1), (2, 256, 8, 8)), ((256, 128, 512, 2), (2, 256, 8, 8)),
             ((64, 64, 256, 1), (2, 64, 8, 8)),  # layer1's first block: a projection without a stride
             ((48, 16, 80, 2), (2, 48, 9, 7))]  # out != 4 x middle, odd and unequal height and width
    for (c_in, middle, c_out, stride), shape in cases:
        with labelled(f"{c_in} -> {middle} -> {c_out}, stride {stride}"):
            check_same_as(ResidualBlock(c_in, middle, c_out, stride=stride),
                          resnet.Bottleneck(c_in, middle, c_out, stride=stride), input_shape=shape)
    with labelled("256 -> 128 -> 512, stride 2"):
        check_same_as(ResidualBlock(256, 128, 512, stride=2), resnet.Bottleneck(256, 128, 512, stride=2),
                      input_shape=(2, 256, 8, 8), input_scale=100)
        check_same_training(ResidualBlock(256, 128, 512, stride=2), resnet.Bottleneck(256, 128, 512, stride=2),
                            input_shape=(2, 256, 8, 8))
    with labelled("256 -> 64 -> 256, stride 1"):
        check_same_training(ResidualBlock(256, 64, 256), resnet.Bottleneck(256, 64, 256), input_shape=(2, 256, 8, 8))


class _Recorder:
    """A block class that records the arguments it is built with (bound to Bottleneck's signature)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int, int]] = []
        recorder = self

        class RecordedBlock(resnet.Bottleneck):
            def __init__(self, *args, **kwargs):
                bound = inspect.signature(resnet.Bottleneck.__init__).bind(self, *args, **kwargs)
                bound.apply_defaults()
                arguments = bound.arguments
                recorder.calls.append((arguments["in_channels"], arguments["middle_channels"],
                                       arguments["out_channels"], arguments["stride"]))
                super().__init__(*args, **kwargs)

        self.block = RecordedBlock


def check_make_stage(make_stage: Callable) -> None:
    """Question: ``make_stage(in_channels, middle, out, blocks, stride, block)``: ``blocks`` blocks of
    class ``block``, only the first changing the shape."""
    stage = make_stage(256, 128, 512, blocks=4, stride=2, block=resnet.Bottleneck).eval()
    check_equal(len(stage), 4, name="blocks in the stage:")
    with torch.no_grad():
        check_shape(stage(torch.zeros(1, 256, 8, 8)), (1, 512, 4, 4), name="stage output")
    check_same_as(stage, resnet.make_stage(256, 128, 512, blocks=4, stride=2), input_shape=(1, 256, 8, 8))
    recorder = _Recorder()
    built = make_stage(32, 16, 64, blocks=3, stride=2, block=recorder.block)
    check_equal(isinstance(built, nn.Sequential) and all(type(b) is recorder.block for b in built), True,
                name="an nn.Sequential of blocks of the given `block` class:")
    check_equal(recorder.calls, [(32, 16, 64, 2), (64, 16, 64, 1), (64, 16, 64, 1)],
                name="(in, middle, out, stride) of each block of make_stage(32, 16, 64, blocks=3, stride=2)")
    with labelled("64 -> 64 -> 256, 2 blocks, stride 1"):
        check_same_training(make_stage(64, 64, 256, blocks=2, stride=1, block=resnet.Bottleneck),
                            resnet.make_stage(64, 64, 256, blocks=2, stride=1), input_shape=(2, 64, 6, 5))
    with labelled("one block"):
        check_same_as(make_stage(128, 32, 128, blocks=1, stride=1, block=resnet.Bottleneck),
                      resnet.make_stage(128, 32, 128, blocks=1, stride=1), input_shape=(1, 128, 4, 4))


def _build(ResNet50: type[nn.Module], **kwargs) -> nn.Module:
    """The student's ResNet50 with the reference's block and ``make_stage`` (Questions 1 and 2 apart)."""
    return ResNet50(block=resnet.Bottleneck, make_stage=resnet.make_stage, **kwargs)


def check_resnet50_cifar(ResNet50: type[nn.Module]) -> None:
    """Question: ``ResNet50(num_classes, stem="cifar")``: 3x3 stem without max-pool, four stages, pool, fc.

    Also the BatchNorm and activation settings, large inputs (a clipping activation shows) and
    ``num_classes=7`` (parameter shapes, on the ``meta`` device: building costs nothing there)."""
    model = _build(ResNet50, num_classes=10, stem="cifar").eval()
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(torch.zeros(1, 3, 32, 32)))))
        check_shape(x, (1, 64, 32, 32), name="stem")
        for name, shape in STAGE_SHAPES:
            x = getattr(model, name)(x)
            check_shape(x, shape, name=name)
        check_shape(model(torch.zeros(1, 3, 32, 32)), (1, 10), name="logits")
    reference = resnet.ResNet50(num_classes=10, stem="cifar")
    check_same_as(model, reference, input_shape=(1, 3, 32, 32))
    check_same_settings(model, reference)
    check_same_as(model, reference, input_shape=(1, 3, 16, 16), input_scale=100)
    with torch.device("meta"), labelled("num_classes=7"):  # shapes only: no memory, no initialisation
        check_same_shapes(_build(ResNet50, num_classes=7, stem="cifar"), resnet.ResNet50(num_classes=7, stem="cifar"))


def check_resnet50_imagenet(ResNet50: type[nn.Module]) -> None:
    """Question: ``ResNet50(stem="imagenet")`` is torchvision's ``resnet50``: same parameters and names,
    its ``state_dict`` loads with ``strict=True``, same output, and in ``train()`` the same output,
    gradients and BatchNorm statistics (on 32x32 images: cheap, and every layer still runs)."""
    torch.manual_seed(0)
    theirs = torchvision.models.resnet50(num_classes=10).eval()
    mine = _build(ResNet50, num_classes=10, stem="imagenet").eval()
    check_param_count(mine, 23_528_522)  # torchvision's resnet50(num_classes=10)
    try:
        mine.load_state_dict(theirs.state_dict(), strict=True)
        problem = "none"
    except RuntimeError as error:
        problem = " ".join(str(error).split())[:300]  # missing / unexpected keys, shape mismatches
    check_equal(problem, "none", name="load_state_dict(torchvision's, strict=True) errors:")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        check_close(mine(x), theirs(x), name="logits with torchvision's weights")
    check_same_training(mine, theirs, input_shape=(2, 3, 32, 32))
