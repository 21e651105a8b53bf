"""One tensor in, one tensor out: lets the one-input checks test modules with two inputs or several outputs.

``check_same_training`` feeds a module one seeded input and compares one output. U-Net's ``Up``
takes ``(x, skip)`` and ``encoder_features`` returns five maps; wrapped in ``OneInOneOut`` they
take one flat input ``(N, total)`` (split and reshaped into the real inputs, so each part gets its
own gradient) and return their outputs flattened and concatenated ``(N, ...)``. The wrapper's
parameters are the wrapped module's, in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn


class OneInOneOut(nn.Module):
    """``call(module, *inputs)`` behind one flat input and one flat output.

    ``shapes``: the real inputs' shapes, e.g. ``[(2, 8, 4, 4), (2, 4, 8, 9)]`` for ``Up(x, skip)``;
    use ``flat_shape(shapes)`` as the ``input_shape`` of the check.
    """

    def __init__(self, module: nn.Module, shapes: Sequence[Sequence[int]],
                 call: Callable | None = None) -> None:
        super().__init__()
        self.module = module
        self.shapes = [tuple(shape) for shape in shapes]
        self.call = call or (lambda module, *inputs: module(*inputs))

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        sizes = [math.prod(shape[1:]) for shape in self.shapes]
        inputs = [part.reshape(shape) for part, shape in zip(flat.split(sizes, dim=1), self.shapes)]
        result = self.call(self.module, *inputs)
        outputs = list(result) if isinstance(result, (list, tuple)) else [result]
        return torch.cat([out.flatten(1) for out in outputs], dim=1)


def flat_shape(shapes: Sequence[Sequence[int]]) -> tuple[int, int]:
    """``(N, total)``: the flat input shape of ``OneInOneOut`` for these input shapes."""
    return shapes[0][0], sum(math.prod(shape[1:]) for shape in shapes)
