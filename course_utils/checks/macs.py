"""Check of lesson 07's question: ``conv2d_macs``, the multiply-adds of a convolution.

The student's formula is compared with what ``measure.count_macs`` (PyTorch's ``FlopCounterMode``)
counts when the real layer runs, on the lesson's layers and on layers where a formula that only
fits square images, stride 1, padding 1 or exact divisions breaks: odd sizes that a stride does
not divide, unequal height and width, padding 2, stride 3. The answer must be an ``int``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from course_utils import measure
from course_utils.checks.verdicts import check_equal

LAYERS = [  # (in, out, kernel, height, width, stride, padding, what)
    (3, 64, 3, 32, 32, 1, 1, "VGG16's first conv at 32x32"),
    (128, 128, 3, 16, 16, 2, 1, "a 3x3 conv with stride 2 (ResNet)"),
    (3, 64, 7, 224, 224, 2, 3, "ResNet's ImageNet stem at 224x224"),
    (1024, 256, 1, 8, 8, 1, 0, "a 1x1 conv (bottleneck)"),
    (16, 8, 3, 21, 12, 2, 0, "a 3x3 conv on a 21x12 image"),
]
MORE_LAYERS = [  # sizes a stride does not divide, unequal sides, more padding, stride 3
    (5, 7, 5, 17, 30, 3, 2), (2, 3, 3, 9, 4, 2, 1), (1, 4, 4, 10, 13, 1, 0), (6, 2, 1, 7, 11, 2, 0),
    (4, 4, 3, 1, 1, 1, 1),
]


def _counted(c_in: int, c_out: int, k: int, height: int, width: int, stride: int, padding: int) -> int:
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding)
    return measure.count_macs(conv, (1, c_in, height, width))


def check_conv2d_macs(conv2d_macs: Callable) -> None:
    """Question: ``conv2d_macs(in_channels, out_channels, kernel_size, height, width, stride, padding)``
    = C_out x H_out x W_out x C_in x k x k, with H_out = (H + 2p - k) // s + 1 (the same for W)."""
    for c_in, c_out, k, height, width, stride, padding, what in LAYERS:
        check_equal(conv2d_macs(c_in, c_out, k, height, width, stride=stride, padding=padding),
                    _counted(c_in, c_out, k, height, width, stride, padding), name=f"multiply-adds of {what}:")
    answers = [conv2d_macs(c_in, c_out, k, height, width, stride=stride, padding=padding)
               for c_in, c_out, k, height, width, stride, padding in MORE_LAYERS]
    right = sum(type(got) is int and got == _counted(*layer) for got, layer in zip(answers, MORE_LAYERS))
    check_equal(f"{right} of {len(MORE_LAYERS)}", f"{len(MORE_LAYERS)} of {len(MORE_LAYERS)}",
                name="other layers (odd sizes, unequal sides, padding 2, stride 3) right, as an int:")
