"""Accuracy and IoU, counted with one confusion matrix; the one rule for which targets count.

Design of torchvision's ``references/segmentation/utils.py::ConfusionMatrix``: keep only pixels
whose target is scored (``scored``), count every (truth, prediction) pair with ONE
``torch.bincount`` of ``n * target + pred``, and derive accuracy and IoU from the diagonal at the
end. Count first, divide once: averaging per-batch accuracies is wrong as soon as one batch is
shorter than the others.

Counts stay on the device of the predictions, so evaluating on a GPU copies nothing to the CPU
until ``compute()``. Classification uses the same code: labels of shape ``(N,)`` are just
"images of one pixel".
"""

from __future__ import annotations

import torch

from course_utils.constants import IGNORE_INDEX  # 255: VOC's void border, never scored

__all__ = ["IGNORE_INDEX", "scored", "unknown_targets", "confusion_matrix", "per_class_accuracy",
           "iou_per_class", "mean_iou", "global_accuracy", "ConfusionMatrix", "pixel_accuracy", "accuracy"]


def scored(targets: torch.Tensor, num_classes: int | None, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """THE rule of the course for which targets count (bool, same shape), used by every metric and the engine.

    A target counts when it is a class, ``0..num_classes-1``, and is not ``ignore_index`` (255
    for VOC's void border; a loss's own ``ignore_index``, e.g. ``nn.CrossEntropyLoss``'s -100,
    when the engine scores with that loss). ``num_classes=None`` (unknown) takes every value >= 0
    as a class.

    Any other value (neither a class nor ``ignore_index``) is a data error, not a pixel to skip:
    VOC masks hold 0..20 and 255 only and are validated when read, the engine checks every batch's
    labels, and ``confusion_matrix`` / ``pixel_accuracy`` raise on them (see ``unknown_targets``).
    Computing the mask never waits for the GPU.
    """
    keep = targets >= 0
    if num_classes is not None:
        keep &= targets < num_classes
    if ignore_index >= 0 and (num_classes is None or ignore_index < num_classes):
        keep &= targets != ignore_index  # only where ignore_index could pass for a class
    return keep


def unknown_targets(targets: torch.Tensor, num_classes: int | None, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Targets that are neither scored nor ``ignore_index`` (bool mask): data errors, by ``scored``'s rule."""
    return ~scored(targets, num_classes, ignore_index) & (targets != ignore_index)


def _unknown_targets_error(targets: torch.Tensor, num_classes: int | None, ignore_index: int,
                           where: str) -> ValueError:
    values = targets[unknown_targets(targets, num_classes, ignore_index)].unique()[:5].tolist()
    classes = f"0..{num_classes - 1}" if num_classes is not None else "0 or more"
    return ValueError(f"{where}: targets hold {values}, which are neither classes ({classes}) nor "
                      f"ignore_index={ignore_index}: the labels are wrong (VOC masks hold 0..20 and 255), "
                      f"or pass the ignore_index your loss uses.")


def _check_pair(preds: torch.Tensor, targets: torch.Tensor, where: str) -> None:
    """Raise with directions when preds/targets cannot be compared element by element."""
    if preds.is_floating_point():
        raise TypeError(f"{where}: preds must hold class indices, got {preds.dtype}; "
                        f"pass logits.argmax(1), or use metrics.accuracy(logits, targets).")
    if targets.is_floating_point():
        raise TypeError(f"{where}: targets must hold class indices (int64), got {targets.dtype}.")
    if preds.shape != targets.shape:
        hint = " (preds look like logits: pass logits.argmax(1))" if preds.dim() == targets.dim() + 1 else ""
        raise ValueError(f"{where}: preds {tuple(preds.shape)} and targets {tuple(targets.shape)} "
                         f"must have the same shape{hint}.")


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Count (truth, prediction) pairs: ``cm[t, p]`` = pixels of class t predicted as p.

    Args:
        preds: class indices, any shape, e.g. ``(N,)`` labels or ``(N, H, W)`` masks.
        targets: same shape; ``ignore_index`` (default 255) pixels are not counted. Any other value
            outside ``0..num_classes-1`` is a data error: ``ValueError`` (see ``scored``).
        num_classes: n.
        ignore_index: the target value never counted.

    Returns:
        LongTensor ``(n, n)`` on the device of ``preds``: rows are the truth, columns the prediction.
    """
    _check_pair(preds, targets, "confusion_matrix()")
    n = num_classes
    ignored = (targets == ignore_index).sum()  # on the caller's dtype (uint8 masks: 8x less to read)
    preds = preds.reshape(-1).long()  # long: n * target overflows uint8 masks
    targets = targets.reshape(-1).long().to(preds.device)
    index = (targets * n).add_(preds)  # (t, p) -> one bin per pair; one new tensor, not two
    # Pixels not scored go to one extra bin that is dropped: cheaper than compacting with a mask.
    index.masked_fill_(~scored(targets, n, ignore_index), n * n)
    counts = torch.bincount(index, minlength=n * n + 1)  # the one pass over all pixels
    if preds.numel() > 0:  # every prediction must be a class, ignored pixels too
        low, high = torch.aminmax(preds)
        # One sync (bincount syncs anyway). Dropped pixels that are not ignore_index are data errors.
        low, high, dropped, ignored = torch.stack([low, high, counts[n * n], ignored.to(low.device)]).tolist()
        if low < 0 or high >= n:
            raise ValueError(f"confusion_matrix(): preds hold values in {low}..{high}, "
                             f"outside 0..{n - 1}; does the model output num_classes={n} channels?")
        if dropped != ignored:
            raise _unknown_targets_error(targets, n, ignore_index, "confusion_matrix()")
    return counts[: n * n].reshape(n, n)


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Recall of each class: correct pixels / pixels of that class. NaN where the class is absent."""
    cm = cm.double()  # counts are exact; divide in float64 so large counts lose nothing
    return cm.diag() / cm.sum(1)  # 0 / 0 = NaN for a class absent from the truth


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """Intersection over union per class: TP / (truth + predicted - TP).

    NaN for a class absent from both truth and prediction (nothing to score), 0 for a class that
    is predicted but never true (pure false positives).
    """
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(1) + cm.sum(0) - tp
    return tp / union  # 0 / 0 = NaN where union is empty


def mean_iou(cm: torch.Tensor) -> float:
    """mIoU: the mean IoU over classes that appear in truth or prediction (NaNs skipped)."""
    return float(iou_per_class(cm).nanmean())


def global_accuracy(cm: torch.Tensor) -> float:
    """Correct / counted over all classes (= pixel accuracy for masks)."""
    cm = cm.double()
    return float(cm.diag().sum() / cm.sum())


class ConfusionMatrix:
    """Accumulate a confusion matrix over batches, then derive every metric from it once.

    >>> cm = ConfusionMatrix(21)
    >>> for images, masks in loader:
    ...     cm.update(model(images).argmax(1), masks)  # (N, H, W) each
    >>> cm.compute()["miou"]
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        if num_classes < 1:
            raise ValueError(f"ConfusionMatrix(num_classes={num_classes}): need at least one class.")
        self.num_classes = num_classes
        self.ignore_index = ignore_index  # targets never counted (see ``scored``)
        self.matrix: torch.Tensor | None = None  # LongTensor (n, n), on the device of the preds

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch of class indices (any shape; ``ignore_index`` targets are not counted)."""
        counts = confusion_matrix(preds, targets, self.num_classes, self.ignore_index)
        self.matrix = counts if self.matrix is None else self.matrix + counts.to(self.matrix.device)

    def reset(self) -> None:
        self.matrix = None

    def compute(self) -> dict:
        """``accuracy``, ``per_class_accuracy``, ``iou``, ``miou`` and ``confusion``, all on the CPU."""
        n = self.num_classes
        cm = torch.zeros(n, n, dtype=torch.long) if self.matrix is None else self.matrix.cpu()
        return {
            "accuracy": global_accuracy(cm),  # NaN before any update
            "per_class_accuracy": per_class_accuracy(cm),  # (n,)
            "iou": iou_per_class(cm),  # (n,)
            "miou": mean_iou(cm),
            "confusion": cm,  # (n, n), rows = truth
        }


def pixel_accuracy(preds: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                   num_classes: int | None = None) -> float:
    """Correct / counted pixels; the counted ones are ``scored(targets, num_classes, ignore_index)``.

    A target that is neither a class nor ``ignore_index`` raises ``ValueError`` (a data error);
    without ``num_classes`` every value >= 0 counts as a class. NaN when no pixel counts.
    """
    _check_pair(preds, targets, "pixel_accuracy()")
    valid = targets != ignore_index  # = scored(...) once no target is a data error (checked below)
    correct = ((preds == targets) & valid).sum()
    low, high = torch.aminmax(targets) if targets.numel() else (correct, correct)
    low, high, counted, correct = torch.stack([low, high, valid.sum(), correct]).tolist()  # one sync
    if low < 0 or (num_classes is not None and high >= num_classes):  # outside the classes: only
        if bool(unknown_targets(targets, num_classes, ignore_index).any()):  # ignore_index may be
            raise _unknown_targets_error(targets, num_classes, ignore_index, "pixel_accuracy()")
    return correct / counted if counted else float("nan")


def accuracy(logits_or_preds: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> float:
    """Top-1 accuracy from logits ``(N, C, ...)`` or class indices ``(N, ...)``.

    Targets equal to ``ignore_index`` (255) are never counted, the same rule for labels and masks
    (``scored``); with logits, C is the number of classes.
    """
    preds, num_classes = logits_or_preds, None
    if preds.is_floating_point() and preds.dim() == targets.dim() + 1:
        preds, num_classes = preds.argmax(1), preds.shape[1]  # no softmax needed, argmax is the same
    return pixel_accuracy(preds, targets, ignore_index=ignore_index, num_classes=num_classes)
