"""Checks of lesson 00 (tensors, broadcasting, counting): ``normalize`` and ``count_pixels``.

Each check prints one line per aspect. Inputs are fixed and small, and go beyond the lesson's
example: other channel counts and dtypes, large values, a batch of masks, another ``num_classes``,
so that an answer that only fits the example (three channels, 21 classes) is caught.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms.v2 import functional as TF

from course_utils.checks.verdicts import check_close, check_equal, check_shape


def _images(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, scale: float = 1.0) -> torch.Tensor:
    """Fixed, device-free test images: seeded normal values times ``scale``."""
    return (torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * scale).to(dtype)


def check_normalize(normalize: Callable) -> None:
    """Question: ``normalize(images, mean, std)`` = per-channel ``(x - mean[c]) / std[c]`` by broadcasting.

    Compared with torchvision's ``normalize`` on 3 channels (the lesson's example), on 1 and 4
    channels with large values, and in float64; the input must come back unchanged (no in-place
    edit of the caller's images) and the result keeps the input's dtype.
    """
    images = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5) / 120
    mean, std = (0.5, 0.25, 0.1), (0.5, 0.2, 2.0)
    original = images.clone()
    out = normalize(images, mean, std)
    check_shape(out, (2, 3, 4, 5))
    check_close(out, TF.normalize(original, list(mean), list(std)), name="normalized values")
    check_equal(bool(torch.equal(images, original)), True, name="input images left unchanged:")
    cases = [((3, 1, 5, 4), (3.0,), (0.5,), torch.float32, 1000.0),  # one channel (greyscale), large values
             ((2, 4, 3, 6), (0.1, 0.2, 0.3, 0.4), (1.0, 2.0, 4.0, 8.0), torch.float32, 100.0),  # four channels
             ((2, 3, 2, 2), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.float64, 1.0)]
    results = []
    for shape, m, s, dtype, scale in cases:
        x = _images(shape, dtype, scale)
        got = normalize(x, m, s)
        expected = TF.normalize(x, list(m), list(s))
        results.append(isinstance(got, torch.Tensor) and got.dtype == dtype and got.shape == expected.shape
                       and torch.allclose(got.double(), expected.double(), rtol=1e-5, atol=1e-5))
    check_equal(f"{sum(results)} of {len(results)}", f"{len(cases)} of {len(cases)}",
                name="other cases (1 and 4 channels, large values, float64) right, dtype kept:")


def check_count_pixels(count_pixels: Callable) -> None:
    """Question: ``count_pixels(mask, num_classes)``: pixels per class 0..num_classes-1, 255 ignored.

    Checked on the lesson's 3x4 mask, on a batch of masks with another ``num_classes`` whose last
    class is absent (the result still has ``num_classes`` entries), and on a mask that is all
    void; counts must be int64 (a count is an integer) and the mask must come back unchanged.
    """
    mask = torch.tensor([[0, 0, 255, 15],
                         [0, 15, 255, 15],
                         [255, 255, 1, 1]])
    original = mask.clone()
    counts = count_pixels(mask, num_classes=21)
    check_shape(counts, (21,))
    check_equal(counts[[0, 1, 15]].tolist(), [3, 2, 3], name="pixels of classes 0, 1, 15")
    check_equal(int(counts.sum()), 8, name="pixels counted (255 ignored)")
    check_equal(str(counts.dtype), "torch.int64", name="dtype of the counts")
    check_equal(bool(torch.equal(mask, original)), True, name="mask left unchanged:")
    batch = torch.randint(0, 5, (2, 6, 7), generator=torch.Generator().manual_seed(0))  # classes 0..4 of 6
    batch[:, ::3, ::2] = 255
    expected = torch.bincount(batch[batch != 255], minlength=6)
    got = count_pixels(batch, num_classes=6)
    check_equal(got.tolist() if isinstance(got, torch.Tensor) else got, expected.tolist(),
                name="counts of a batch of (2, 6, 7) masks, num_classes=6 (class 5 absent)")
    void = torch.full((4, 4), 255)
    got = count_pixels(void, num_classes=3)
    check_equal(got.tolist() if isinstance(got, torch.Tensor) else got, [0, 0, 0],
                name="counts of an all-void mask, num_classes=3")
