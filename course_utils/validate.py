"""The engine's input checks: fail early, saying what was expected and how to fix it.

Without them a wrong batch fails deep inside torch ("Input type (unsigned char) and bias type
(float) should be the same", "Target 255 is out of bounds") or, on CUDA, as a device-side assert
that kills the kernel. ``engine`` calls each check once per batch. The label check reads values:
on labels still on the CPU (a DataLoader's, read before the copy to the device) that is free, so
every batch is checked; labels already on the GPU (a ``DeviceLoader``'s) would make the CPU wait
for the GPU, so only the first batch of each pass is checked there.
"""

from __future__ import annotations

import torch
from torch import nn

from course_utils.metrics import IGNORE_INDEX, unknown_targets


def model_on_device(model: nn.Module, device: torch.device) -> None:
    """Fail early when the model and the batches would sit on different devices."""
    param = next(model.parameters(), None)
    if param is not None and param.device.type != device.type:
        raise RuntimeError(f"The model is on {param.device.type} but batches go to {device.type}: "
                           f"call model.to(device) first (engine.fit does it for you).")


def float_images(images: torch.Tensor) -> None:
    """Fail early on integer images (a conv would fail deep inside with "Input type ... and bias type")."""
    if not images.is_floating_point():
        raise ValueError(f"Images must be floating point, got {images.dtype} {tuple(images.shape)}: "
                         f"were ToDtype and normalisation forgotten? Add e.g. v2.ToDtype(torch.float32, "
                         f"scale=True) and v2.Normalize(mean, std) to the dataset's transform.")


def outputs_fit_targets(logits: torch.Tensor, targets: torch.Tensor, num_classes: int | None) -> None:
    """Fail early with both shapes instead of a deep error inside the loss."""
    problem = None
    if targets.is_floating_point():
        problem = f"targets must be int64 class indices, got {targets.dtype}"
    elif targets.dtype != torch.int64:
        problem = (f"targets must be int64 (torch.long) class indices, got {targets.dtype}: "
                   f"convert them, e.g. ToDtype({{tv_tensors.Mask: torch.int64, ...}}) or targets.long()")
    elif logits.dim() != targets.dim() + 1 or logits.shape[0] != targets.shape[0] \
            or logits.shape[2:] != targets.shape[1:]:
        problem = "expected logits (N, C) with labels (N,), or logits (N, C, H, W) with masks (N, H, W)"
    elif num_classes is not None and logits.shape[1] != num_classes:
        problem = f"the model outputs {logits.shape[1]} classes, num_classes is {num_classes}"
    if problem:
        raise ValueError(f"Model output {tuple(logits.shape)} does not fit targets "
                         f"{tuple(targets.shape)}: {problem}.")


def known_labels(targets: torch.Tensor, num_classes: int, ignore_index: int, where: str = "") -> None:
    """Fail early on labels outside ``[0, num_classes)`` that the loss does not ignore.

    The rule is ``metrics.scored``'s (such labels are data errors). On CUDA such a label is a
    device-side assert that kills the kernel. ``where`` (e.g. "training batch 8") goes into the
    message, so the bad sample can be found.
    """
    bad = unknown_targets(targets, num_classes, ignore_index)
    if not bad.any():
        return
    values = targets[bad].unique()[:5].tolist()
    if IGNORE_INDEX in values:
        fix = (f"{IGNORE_INDEX} marks VOC's void border (object outlines), which the loss must skip: "
               f"use criterion=engine.loss_for_segmentation() (or nn.CrossEntropyLoss(ignore_index=255))")
    else:
        fix = (f"the model outputs {num_classes} classes: give its last layer as many outputs as the "
               f"dataset has classes, or check the labels")
    where = f" in {where}" if where else ""
    raise ValueError(f"Targets hold {values}{where}, expected class indices 0..{num_classes - 1} "
                     f"(or {ignore_index}, which is ignored): {fix}.")


def ignored_label(criterion: nn.Module | None) -> int:
    """The label the loss skips (nn.CrossEntropyLoss: ``ignore_index``); without one, metrics' 255."""
    return getattr(criterion, "ignore_index", IGNORE_INDEX)


def labels_to_check(targets: torch.Tensor, batch_index: int) -> torch.Tensor | None:
    """The labels whose values the engine checks, taken BEFORE the copy to the device.

    Every batch whose labels are still on the CPU (reading them costs no GPU sync); labels that
    already live on the GPU only on the first batch (reading them waits for the GPU).
    """
    return targets if targets.device.type == "cpu" or batch_index == 0 else None


def targets_fit(logits: torch.Tensor, targets: torch.Tensor, num_classes: int | None,
                criterion: nn.Module | None, labels: torch.Tensor | None = None, where: str = "") -> None:
    """The engine's check after the forward pass: shapes and dtype on every batch; with ``labels``
    (from ``labels_to_check``) also the label values the loss will see, naming ``where`` they are."""
    outputs_fit_targets(logits, targets, num_classes)
    if labels is not None:
        known_labels(labels, logits.shape[1], ignored_label(criterion), where)
