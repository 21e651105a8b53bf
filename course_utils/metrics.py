"""Accuracy and IoU, counted with one confusion matrix.

Design of torchvision's ``references/segmentation/utils.py::ConfusionMatrix``: keep only pixels
whose target is a real class (``0 <= target < n``, which drops the 255 "ignore" border for free),
count every (truth, prediction) pair with ONE ``torch.bincount`` of ``n * target + pred``, and
derive accuracy and IoU from the diagonal at the end. Count first, divide once: averaging
per-batch accuracies is wrong as soon as one batch is shorter than the others.

Counts stay on the device of the predictions, so evaluating on a GPU copies nothing to the CPU
until ``compute()``. Classification uses the same code: labels of shape ``(N,)`` are just
"images of one pixel".
"""

from __future__ import annotations

import torch

IGNORE_INDEX = 255  # VOC marks object borders and "difficult" pixels with 255: never scored


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


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Count (truth, prediction) pairs: ``cm[t, p]`` = pixels of class t predicted as p.

    Args:
        preds: class indices, any shape, e.g. ``(N,)`` labels or ``(N, H, W)`` masks.
        targets: same shape; values outside ``0..num_classes-1`` (e.g. 255) are ignored.
        num_classes: n.

    Returns:
        LongTensor ``(n, n)`` on the device of ``preds``: rows are the truth, columns the prediction.
    """
    _check_pair(preds, targets, "confusion_matrix()")
    n = num_classes
    preds = preds.reshape(-1).long()  # long: n * target overflows uint8 masks
    targets = targets.reshape(-1).long().to(preds.device)
    if preds.numel() > 0:
        low, high = torch.aminmax(preds)  # every prediction must be a class, ignored pixels too
        if bool((low < 0) | (high >= n)):  # one sync; bincount syncs anyway
            raise ValueError(f"confusion_matrix(): preds hold values in {int(low)}..{int(high)}, "
                             f"outside 0..{n - 1}; does the model output num_classes={n} channels?")
    index = n * targets + preds  # (t, p) -> one bin per pair
    # Ignored pixels (255) go to one extra bin that is dropped: cheaper than compacting with a mask.
    index.masked_fill_((targets < 0) | (targets >= n), n * n)
    counts = torch.bincount(index, minlength=n * n + 1)[: n * n]  # the one pass over all pixels
    return counts.reshape(n, n)


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

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ValueError(f"ConfusionMatrix(num_classes={num_classes}): need at least one class.")
        self.num_classes = num_classes
        self.matrix: torch.Tensor | None = None  # LongTensor (n, n), on the device of the preds

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch of class indices (any shape; targets outside 0..n-1 are ignored)."""
        counts = confusion_matrix(preds, targets, self.num_classes)
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


def pixel_accuracy(preds: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> float:
    """Correct / counted pixels, skipping pixels whose target is ``ignore_index``."""
    _check_pair(preds, targets, "pixel_accuracy()")
    valid = targets != ignore_index
    correct = ((preds == targets) & valid).sum()
    return float(correct.double() / valid.sum())  # NaN when every pixel is ignored


def accuracy(logits_or_preds: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy from logits ``(N, C, ...)`` or class indices ``(N, ...)``.

    Targets equal to 255 are never counted (same rule for labels and masks).
    """
    preds = logits_or_preds
    if preds.is_floating_point() and preds.dim() == targets.dim() + 1:
        preds = preds.argmax(1)  # (N, C, ...) -> (N, ...); no softmax needed, argmax is the same
    return pixel_accuracy(preds, targets, ignore_index=IGNORE_INDEX)
