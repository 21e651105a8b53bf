"""Plots for the lessons: training curves, image grids, segmentation masks, confusion matrices.

Every plotting function returns its matplotlib ``Figure`` and closes it first, so scripts and
tests do not pile up open figures while Jupyter still displays the returned figure. End a cell
with the call itself (``viz.plot_history(history)``, no trailing ``;``) to see the plot.
Masks are coloured by a palette lookup, one indexing operation per batch, never a loop over pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from PIL import Image

from course_utils.constants import VOC_CLASSES, VOC_PALETTE
from course_utils.files import write_atomically

ArrayLike = torch.Tensor | np.ndarray
LOG_SCALE_SPAN = 10  # plot_history draws losses that span more than this factor on a log axis
_HISTORY_PANELS = (("loss", ("train_loss", "val_loss")),
                   ("accuracy", ("train_acc", "val_acc", "val_miou")))


def _tensor(x: ArrayLike | Sequence) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo ``Normalize(mean, std)`` for display: (N, C, H, W) or (C, H, W) -> same shape in [0, 1]."""
    images = _tensor(images).float()
    mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)  # (C, 1, 1) broadcasts over H, W
    std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (images * std + mean).clamp(0, 1)


def _hwc(image: torch.Tensor, mean=None, std=None) -> np.ndarray:
    """(C, H, W) tensor -> (H, W, C) numpy array in [0, 1] for imshow."""
    image = denormalize(image, mean, std) if mean is not None else _tensor(image).float().clamp(0, 1)
    return image.permute(1, 2, 0).squeeze(-1).numpy()  # (H, W, 3), or (H, W) for one channel


def plot_history(history: Mapping[str, Sequence[float]], metrics: Sequence[str] | None = None) -> Figure:
    """Plot per-epoch curves: losses on one axes, accuracies (and mIoU) on another.

    Args:
        history: the dict of lists returned by ``engine.fit``; any subset of its keys works.
        metrics: keys to plot (default: train/val loss, accuracy and mIoU, where present).
    """
    if metrics is not None:
        missing = [key for key in metrics if key not in history]
        if missing:
            raise ValueError(f"plot_history(): {missing} not in history; it has {sorted(history)}.")
    wanted = list(metrics) if metrics is not None else [k for _, keys in _HISTORY_PANELS for k in keys]
    present = [key for key in wanted if len(history.get(key, ())) > 0]
    panels = [(title, [k for k in keys if k in present]) for title, keys in _HISTORY_PANELS]
    panels = [(title, keys) for title, keys in panels if keys]
    grouped = {k for _, keys in panels for k in keys}
    panels += [(key, [key]) for key in present if key not in grouped]  # e.g. "lr" on its own axes
    if not panels:
        raise ValueError(f"plot_history(): nothing to plot; expected keys like train_loss, val_acc, "
                         f"got {sorted(history)}. Pass the history returned by engine.fit.")

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            values = [float(v) for v in history[key]]
            ax.plot(range(1, len(values) + 1), values, marker="o", label=key)
        ax.set(xlabel="epoch", title="accuracy / mIoU" if "val_miou" in keys else title)
        losses = [float(v) for key in keys if key.endswith("loss") for v in history[key]]
        if losses and min(losses) > 0 and max(losses) / min(losses) > LOG_SCALE_SPAN:
            ax.set_yscale("log")  # one huge early loss would otherwise flatten every other point
            ax.set_title(f"{title} (log scale)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def show_images(images: torch.Tensor, labels: Sequence[int], preds: Sequence[int] | None = None,
                classes: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, ncols: int = 8) -> Figure:
    """Show a grid of images titled with their labels; with ``preds``, mistakes are titled in red.

    Args:
        images: (N, C, H, W) float; pass ``mean``/``std`` to undo normalisation. Pass a slice
            (``images[:16]``): every image gets its own axes.
        labels, preds: (N,) class indices; ``classes`` turns them into names.
    """
    images = _tensor(images)
    labels = _tensor(labels).tolist()
    preds = _tensor(preds).tolist() if preds is not None else None
    if images.ndim != 4 or len(labels) != len(images):
        raise ValueError(f"show_images(): expected images (N, C, H, W) and N labels, "
                         f"got images {tuple(images.shape)} and {len(labels)} labels.")
    name = (lambda i: classes[i]) if classes is not None else str
    ncols = max(1, min(ncols, len(images)))
    nrows = math.ceil(len(images) / ncols)
    fig = plt.figure(figsize=(1.6 * ncols, 1.9 * nrows))
    for i, image in enumerate(images):  # one axes per image (not per pixel)
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(_hwc(image, mean, std), cmap="gray")
        ax.axis("off")
        if preds is None:
            ax.set_title(name(labels[i]), fontsize=8)
        else:
            wrong = preds[i] != labels[i]
            ax.set_title(f"{name(labels[i])}\npred: {name(preds[i])}", fontsize=8,
                         color="red" if wrong else "black")
    fig.tight_layout()
    plt.close(fig)
    return fig


def colorize_mask(mask: ArrayLike, palette: ArrayLike | None = None) -> ArrayLike:
    """Colour class indices with a palette lookup: (H, W) or (N, H, W) -> uint8 (..., H, W, 3).

    Args:
        mask: class indices 0..255 (255 = ignore, drawn in the VOC void colour); a tensor or array.
        palette: (K, 3) uint8 colours (default: the VOC colour map).
    Returns:
        The same kind as ``mask`` (tensor or numpy array).
    """
    was_numpy = not isinstance(mask, torch.Tensor)
    indices = _tensor(mask).long()
    table = _palette_table(palette)
    if indices.numel() and (indices.min() < 0 or indices.max() > 255):
        raise ValueError(f"colorize_mask(): mask values must be 0..255, got {int(indices.min())}.."
                         f"{int(indices.max())}. Pass class indices (preds = logits.argmax(1)).")
    if palette is not None and len(palette) < 255:
        unknown = (indices >= len(palette)) & (indices != 255)
        if unknown.any():
            raise ValueError(f"colorize_mask(): mask holds classes beyond the palette's "
                             f"{len(palette)} colours; pass a longer palette.")
    colours = F.embedding(indices, table)  # (..., H, W, 3): one lookup per pixel, no loop
    return colours.numpy() if was_numpy else colours


def _palette_table(palette: ArrayLike | None) -> torch.Tensor:
    """A full (256, 3) uint8 table, 255 = the void colour unless the palette sets it."""
    if palette is None:
        return VOC_PALETTE
    colours = _tensor(palette).to(torch.uint8).reshape(-1, 3)[:256]
    table = torch.zeros(256, 3, dtype=torch.uint8)
    table[255] = VOC_PALETTE[255]  # VOC's void colour for the ignore border
    table[: len(colours)] = colours
    return table


def save_mask_png(mask: ArrayLike, path: str | os.PathLike, palette: ArrayLike | None = None) -> Path:
    """Write a (H, W) mask as a palette PNG (like VOC's SegmentationClass), atomically."""
    indices = _tensor(mask)
    if indices.ndim != 2 or indices.is_floating_point() or (
            indices.numel() and (indices.min() < 0 or indices.max() > 255)):
        raise ValueError(f"save_mask_png(): expected an integer (H, W) mask with values 0..255, "
                         f"got {indices.dtype} of shape {tuple(indices.shape)}.")
    image = Image.fromarray(indices.to(torch.uint8).numpy())  # mode "L", same indices
    image.putpalette(_palette_table(palette).flatten().tolist())  # makes it a palette ("P") image
    return write_atomically(path, lambda f: image.save(f, format="PNG"))  # never a half-written file


def overlay(image: torch.Tensor, mask: ArrayLike, alpha: float = 0.5, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None) -> np.ndarray:
    """Blend mask colours onto an image: (C, H, W) + (H, W) -> float (H, W, 3) in [0, 1].

    Background (0) and ignore (255) pixels keep the image, so objects stand out.
    """
    picture = _hwc(image, mean, std)
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=-1)  # grey -> RGB
    indices = _tensor(mask).long()
    if tuple(indices.shape) != picture.shape[:2]:
        raise ValueError(f"overlay(): mask {tuple(indices.shape)} must match the image's "
                         f"(H, W) {picture.shape[:2]}.")
    colours = colorize_mask(indices).float().numpy() / 255  # (H, W, 3)
    show = ((indices != 0) & (indices != 255)).numpy()[..., None]  # (H, W, 1)
    return np.where(show, (1 - alpha) * picture + alpha * colours, picture).astype(np.float32)


def show_segmentation(images: torch.Tensor, masks: ArrayLike, preds: ArrayLike | None = None,
                      classes: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                      std: Sequence[float] | None = None) -> Figure:
    """Show rows of image | true mask | predicted mask, with a legend of the classes present.

    Args:
        images: (N, 3, H, W) float (or one (3, H, W)); pass ``mean``/``std`` to undo normalisation.
        masks, preds: (N, H, W) class indices, 255 = ignore; preds = ``logits.argmax(1)``.
    """
    images, masks = _tensor(images), _tensor(masks).long()
    preds = None if preds is None else _tensor(preds).long()
    if images.ndim == 3:  # one image: make it a batch of one
        images, masks = images[None], masks[None]
        preds = None if preds is None else preds[None]
    if masks.ndim != 3 or len(masks) != len(images) or (preds is not None and preds.shape != masks.shape):
        raise ValueError(f"show_segmentation(): expected images (N, 3, H, W), masks and preds (N, H, W) "
                         f"class indices (preds = logits.argmax(1)), got {tuple(images.shape)}, "
                         f"{tuple(masks.shape)}" + ("." if preds is None else f", {tuple(preds.shape)}."))
    panels = [("image", None), ("truth", colorize_mask(masks))]
    if preds is not None:
        panels.append(("prediction", colorize_mask(preds)))
    fig, axes = plt.subplots(len(images), len(panels), squeeze=False,
                             figsize=(2.6 * len(panels) + 1.8, 2.6 * len(images)))
    for row, image in enumerate(images):
        for col, (title, coloured) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(_hwc(image, mean, std) if coloured is None else coloured[row].numpy())
            ax.axis("off")
            if row == 0:
                ax.set_title(title)

    present = torch.unique(masks if preds is None else torch.cat([masks.flatten(), preds.flatten()]))
    table = _palette_table(None)
    names = list(classes if classes is not None else VOC_CLASSES)
    handles = [Patch(color=(table[i].float() / 255).tolist(),
                     label="ignore" if i == 255 else (names[i] if i < len(names) else str(i)))
               for i in present.tolist()]  # one legend entry per class present (at most 22)
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.8 / fig.get_figwidth(), 1))
    plt.close(fig)
    return fig


def plot_confusion(cm: ArrayLike, classes: Sequence[str], normalize: bool = True) -> Figure:
    """Heatmap of a confusion matrix, rows = true class, columns = predicted class.

    Args:
        cm: (K, K) counts, e.g. ``metrics.ConfusionMatrix(...).matrix``.
        normalize: divide each row by its total, so the diagonal is per-class accuracy (recall).
    """
    counts = _tensor(cm).double().numpy()
    if counts.ndim != 2 or counts.shape != (len(classes), len(classes)):
        raise ValueError(f"plot_confusion(): expected a ({len(classes)}, {len(classes)}) matrix for "
                         f"{len(classes)} classes, got shape {counts.shape}.")
    totals = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0) if normalize else counts
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    heat = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, labels=classes, rotation=90)
    ax.set_yticks(ticks, labels=classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix" + (" (row-normalised)" * normalize))
    if len(classes) <= 12:  # numbers stay legible on CIFAR-10, not on VOC's 21 classes
        dark = 0.5 * (1 if normalize else values.max())  # white text on the darker half of the colours
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, f"{value:.2f}" if normalize else f"{int(value)}", ha="center", va="center",
                    fontsize=7, color="white" if value > dark else "black")
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_class_frequencies(counts: ArrayLike | Sequence[int], classes: Sequence[str]) -> Figure:
    """Horizontal bars of each class's share of the pixels (or images): (K,) counts."""
    counts = _tensor(counts).double().numpy()
    if counts.shape != (len(classes),):
        raise ValueError(f"plot_class_frequencies(): expected {len(classes)} counts, got shape {counts.shape}.")
    shares = counts / max(counts.sum(), 1)
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(classes) + 1))
    ax.barh(np.arange(len(classes)), shares)
    ax.set_yticks(np.arange(len(classes)), labels=classes)
    ax.invert_yaxis()  # first class on top, in dataset order
    ax.set(xlabel="share", title="class frequencies")
    fig.tight_layout()
    plt.close(fig)
    return fig


def bar_chart(values: Mapping[str, float], ylabel: str, title: str | None = None) -> Figure:
    """One bar per entry, value written on top, e.g. ``{"VGG16": 0.93, "ResNet-50": 0.95}``."""
    if not values:
        raise ValueError("bar_chart(): got no values; pass a dict like {'VGG16': 0.93}.")
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(values)), 3.5))
    bars = ax.bar(list(values), [float(v) for v in values.values()])
    ax.bar_label(bars, fmt="%.3g")
    ax.set(ylabel=ylabel, title=title)
    fig.tight_layout()
    plt.close(fig)
    return fig
