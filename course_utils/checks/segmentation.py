"""Checks of lesson 03 (VOC data and scores): a VOC mask file, ``pixel_accuracy``, ``confusion_matrix``,
``iou_from_confusion`` and ``SingleConv``.

Each check prints one line per aspect. Beyond the lesson's example, they try what one example
cannot show: another ``ignore_index`` (0, so a hard-coded 255 or a filter on the predictions
shows), another ``num_classes`` with mask values outside ``0..num_classes-1`` (negative ones
too), 1-D labels, the result's dtype, counts above 2**31, and whether the inputs come back
unchanged. Expected values come from ``course_utils.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from course_utils import metrics
from course_utils.checks.verdicts import (CountTorchCalls, check_close, check_equal, check_param_count, check_same_as,
                                          check_same_training, check_shape, labelled)
from course_utils.models import baseline


def _random_batch(seed: int, num_classes: int = 21, shape: tuple[int, ...] = (4, 16, 16), void: int = 255,
                  right: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """(preds, masks) int64: masks 0..num_classes-1 with 30 % ``void``; preds right on about ``right`` of the pixels."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.randint(0, num_classes, shape, generator=generator)
    masks[torch.rand(shape, generator=generator) < 0.3] = void
    noise = torch.randint(0, num_classes, shape, generator=generator)
    preds = torch.where(torch.rand(shape, generator=generator) < right, masks, noise).clamp(0, num_classes - 1)
    return preds, masks


def _number(value: object) -> torch.Tensor:
    """A float or a one-element tensor as a float64 tensor, for ``check_close``; anything else as it is."""
    try:
        return torch.tensor(float(value), dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return value  # check_close prints "FAIL got values of type ..."


def check_voc_mask_file(mask_path: str | Path) -> None:
    """Fact check (ungraded): a VOC mask is a palette PNG whose values are class indices 0..20 or 255.

    Never raises (Run All goes on): a missing or unreadable file is one FAIL line.
    """
    try:
        with Image.open(mask_path) as png:
            mode, values = png.mode, set(np.unique(np.asarray(png)).tolist())
    except Exception as error:  # noqa: BLE001 - any reading problem is reported, not raised
        print(f"FAIL got an unreadable mask ({type(error).__name__}) expected a palette PNG", flush=True)
        return
    check_equal(mode, "P", name="PIL mode of a VOC mask")
    check_equal(values <= set(range(21)) | {255}, True, name="stored values are class indices 0..20 or 255")


def check_pixel_accuracy(pixel_accuracy: Callable) -> None:
    """Question: ``pixel_accuracy(preds, masks, ignore_index=255)`` = correct / labelled pixels over the batch."""
    masks = torch.tensor([[[0, 0, 255], [1, 1, 255]],  # image 1: 4 labelled pixels, 3 right
                          [[2, 255, 255], [255, 255, 255]]])  # image 2: 1 labelled pixel, wrong
    preds = torch.tensor([[[0, 1, 0], [1, 1, 1]],
                          [[0, 0, 0], [0, 0, 0]]])
    check_close(_number(pixel_accuracy(preds, masks)), torch.tensor(3 / 5),
                name="accuracy of the hand-made batch (3 of 5 labelled pixels right, not per image)")

    preds, masks = _random_batch(0)
    before = preds.clone(), masks.clone()
    check_close(_number(pixel_accuracy(preds, masks)), torch.tensor(metrics.pixel_accuracy(preds, masks)),
                name="pixel accuracy vs course_utils.metrics")
    check_equal(bool(torch.equal(preds, before[0]) and torch.equal(masks, before[1])), True,
                name="preds and masks left unchanged")

    # ignore_index=0: a hard-coded 255, or skipping pixels by the prediction instead of the mask, shows
    preds, masks = _random_batch(1, num_classes=5, void=0, right=0.5)
    check_close(_number(pixel_accuracy(preds, masks, ignore_index=0)),
                torch.tensor(metrics.pixel_accuracy(preds, masks, ignore_index=0)),
                name="pixel accuracy with ignore_index=0")


def check_confusion_matrix(confusion_matrix: Callable) -> None:
    """Question: ``confusion_matrix(preds, masks, num_classes)`` with exactly one ``torch.bincount``."""
    masks = torch.tensor([[0, 0, 1, 255],
                          [2, 2, 1, 255]])
    preds = torch.tensor([[0, 1, 1, 2],
                          [2, 0, 1, 0]])
    cm = confusion_matrix(preds, masks, num_classes=4)  # class 3 appears nowhere: its row and column are 0
    check_shape(cm, (4, 4))
    check_equal(cm.tolist(), [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]],
                name="hand-made confusion matrix (rows = truth)")
    check_equal(str(cm.dtype), "torch.int64", name="dtype (exact counts)")

    preds, masks = _random_batch(0)
    before = preds.clone(), masks.clone()
    with CountTorchCalls() as calls:  # counts torch.bincount(x) and x.bincount() alike
        cm = confusion_matrix(preds, masks, num_classes=21)
    check_equal(calls["bincount"], 1, name="calls to bincount")
    check_close(cm, metrics.confusion_matrix(preds, masks, 21), name="counts vs course_utils.metrics")
    check_equal(int(cm.sum()), int((masks != 255).sum()), name="pixels counted (255 dropped)")
    check_equal(bool(torch.equal(preds, before[0]) and torch.equal(masks, before[1])), True,
                name="preds and masks left unchanged")

    # 1-D labels, 7 classes, and mask values that are not classes: 7..9 and -1 (dropped like 255)
    generator = torch.Generator().manual_seed(2)
    masks = torch.randint(-1, 10, (300,), generator=generator)
    preds = torch.randint(0, 7, (300,), generator=generator)
    classes = (masks >= 0) & (masks < 7)  # the pixels to count (metrics refuses values that are not classes)
    with labelled("num_classes=7, 1-D labels, mask values -1 and 7..9 dropped"):
        check_close(confusion_matrix(preds, masks, num_classes=7),
                    metrics.confusion_matrix(preds[classes], masks[classes], 7), name="counts vs course_utils.metrics")


def check_iou(iou_from_confusion: Callable) -> None:
    """Question: ``iou_from_confusion(cm)`` -> (IoU per class, NaN where absent; mIoU = nanmean)."""
    cm = torch.tensor([[5, 1, 1, 0],  # class 2: predicted once, never true -> IoU 0
                       [2, 3, 0, 0],  # class 3: never true, never predicted -> NaN
                       [0, 0, 0, 0],
                       [0, 0, 0, 0]])
    before = cm.clone()
    iou, miou = iou_from_confusion(cm)
    iou = torch.as_tensor(iou)
    check_shape(iou, (4,))
    check_equal(torch.isnan(iou).tolist(), [False, False, False, True],
                name="NaN only for the class absent from truth and prediction")
    check_close(iou.nan_to_num(-1.0), torch.tensor([5 / 9, 3 / 6, 0.0, -1.0]), name="IoU per class")
    check_close(_number(miou), torch.tensor((5 / 9 + 3 / 6 + 0.0) / 3), name="mIoU (NaN skipped)")
    check_equal(torch.equal(cm, before), True, name="confusion matrix left unchanged")

    generator = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 15, (2, 16, 16), generator=generator)  # classes 15..20 never true ...
    preds = torch.randint(0, 18, (2, 16, 16), generator=generator)  # ... 18..20 never predicted either
    cm = metrics.confusion_matrix(preds, masks, 21)
    iou, miou = iou_from_confusion(cm)
    check_close(torch.as_tensor(iou).nan_to_num(-1.0), metrics.iou_per_class(cm).nan_to_num(-1.0),
                name="IoU per class vs course_utils.metrics")
    check_close(_number(miou), torch.tensor(metrics.mean_iou(cm)), name="mIoU vs course_utils.metrics")

    big = cm * 3_000_000_000  # counts above 2**31 (a whole dataset at full size)
    iou, miou = iou_from_confusion(big)
    check_close(torch.as_tensor(iou).nan_to_num(-1.0), metrics.iou_per_class(big).nan_to_num(-1.0),
                name="IoU per class of counts above 2**31")


def check_single_conv(SingleConv: type[nn.Module]) -> None:
    """Question: ``SingleConv(in_channels=3, num_classes=21)``: one 3x3 conv, padding 1, with bias, as ``self.conv``."""
    model = SingleConv()
    check_param_count(model, 588)
    check_equal(type(getattr(model, "conv", None)).__name__, "Conv2d", name="type of self.conv")
    with torch.no_grad():
        check_shape(model(torch.zeros(2, 3, 41, 56)), (2, 21, 41, 56))
    check_same_as(model, baseline.SingleConvSegmenter(), input_shape=(2, 3, 32, 32))
    check_same_training(SingleConv(), baseline.SingleConvSegmenter(), input_shape=(2, 3, 9, 11))
    with labelled("in_channels=1, num_classes=7"):
        check_same_as(SingleConv(in_channels=1, num_classes=7), baseline.SingleConvSegmenter(1, 7),
                      input_shape=(2, 1, 9, 11))
