"""Segmentation metrics and mask colouring: course_utils vs the textbook code it replaces.

    python -m benchmarks.bench_metrics [--repeats 5] [--json results/benchmarks/bench_metrics.json]

Workload (goals: benchmarks/README.md): 16 masks of 256x256, 21 classes, VOC-like 255 borders. The baselines are
written here, as a typical course writes them: a per-pixel loop through a colour dict, a per-class
numpy loop for IoU (and a per-pixel Python loop, for scale), per-image numpy pixel accuracy.
Every pair is checked for identical results before it is timed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from course_utils import metrics, viz
from course_utils.data import voc

from benchmarks.report import write_json

NUM_CLASSES, N, SIZE = 21, 16, 256


def make_masks(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocky truth masks with 255 borders, and predictions that agree on ~70 % of pixels."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, NUM_CLASSES, (N, SIZE // 32, SIZE // 32), generator=g)
    truth = coarse.repeat_interleave(32, 1).repeat_interleave(32, 2)  # (N, 256, 256)
    edges = torch.zeros_like(truth, dtype=torch.bool)
    edges[:, :, 1:] |= truth[:, :, 1:] != truth[:, :, :-1]
    edges[:, 1:, :] |= truth[:, 1:, :] != truth[:, :-1, :]
    truth = truth.masked_fill(edges, 255)
    noise = torch.randint(0, NUM_CLASSES, truth.shape, generator=g)
    keep = torch.rand(truth.shape, generator=g) < 0.7
    preds = torch.where(keep & (truth != 255), truth, noise)
    return preds, truth


# ------------------------------------------------------------------ textbook baselines
COLOUR_DICT = {i: tuple(int(c) for c in voc.VOC_PALETTE[i]) for i in list(range(NUM_CLASSES)) + [255]}


def textbook_colorize(masks: np.ndarray) -> np.ndarray:
    out = np.zeros(masks.shape + (3,), dtype=np.uint8)
    for n in range(masks.shape[0]):
        for i in range(masks.shape[1]):
            for j in range(masks.shape[2]):
                out[n, i, j] = COLOUR_DICT[int(masks[n, i, j])]
    return out


def textbook_miou_numpy(preds: np.ndarray, truth: np.ndarray) -> float:
    ious = []
    for c in range(NUM_CLASSES):
        valid = truth != 255
        inter = np.logical_and(preds == c, truth == c)[valid].sum()
        union = np.logical_or(preds == c, truth == c)[valid].sum()
        if union > 0:
            ious.append(inter / union)
    return float(np.mean(ious))


def textbook_miou_loop(preds: np.ndarray, truth: np.ndarray) -> float:
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for n in range(truth.shape[0]):  # pixel by pixel, as the colouring loop above
        for i in range(truth.shape[1]):
            for j in range(truth.shape[2]):
                t = truth[n, i, j]
                if t != 255:
                    cm[t, preds[n, i, j]] += 1
    ious = []
    for c in range(NUM_CLASSES):
        inter = cm[c, c]
        union = cm[c, :].sum() + cm[:, c].sum() - inter
        if union > 0:
            ious.append(inter / union)
    return float(np.mean(ious))


def textbook_pixel_accuracy(preds: np.ndarray, truth: np.ndarray) -> float:
    correct = total = 0
    for p, t in zip(preds, truth):  # one image at a time
        valid = t != 255
        correct += int((p[valid] == t[valid]).sum())
        total += int(valid.sum())
    return correct / total


# ------------------------------------------------------------------ course_utils versions
def course_miou(preds: torch.Tensor, truth: torch.Tensor) -> float:
    return metrics.mean_iou(metrics.confusion_matrix(preds, truth, NUM_CLASSES))


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("results/benchmarks/bench_metrics.json"))
    args = parser.parse_args(argv)

    preds, truth = make_masks()
    p_np, t_np = preds.numpy(), truth.numpy()

    # Identical results first: a fast wrong answer is worth nothing.
    assert np.array_equal(viz.colorize_mask(truth).numpy(), textbook_colorize(t_np))
    assert abs(course_miou(preds, truth) - textbook_miou_numpy(p_np, t_np)) < 1e-12
    assert abs(course_miou(preds, truth) - textbook_miou_loop(p_np, t_np)) < 1e-12
    assert abs(metrics.pixel_accuracy(preds, truth) - textbook_pixel_accuracy(p_np, t_np)) < 1e-12

    slow = max(1, args.repeats // 5)  # the per-pixel loops take seconds: time them fewer times
    rows = [
        ("colour masks", "per-pixel loop, colour dict", lambda: textbook_colorize(t_np), slow,
         lambda: viz.colorize_mask(truth), 100),
        ("confusion + mIoU", "per-class numpy loop", lambda: textbook_miou_numpy(p_np, t_np), args.repeats,
         lambda: course_miou(preds, truth), 10),
        ("confusion + mIoU", "per-pixel Python loop", lambda: textbook_miou_loop(p_np, t_np), slow,
         lambda: course_miou(preds, truth), None),  # no goal: reported only
        ("pixel accuracy", "per-image numpy", lambda: textbook_pixel_accuracy(p_np, t_np), args.repeats,
         lambda: metrics.pixel_accuracy(preds, truth), 1),
    ]
    results = []
    print(f"{N} masks of {SIZE}x{SIZE}, {NUM_CLASSES} classes, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} (timings swing 2-3x on a busy machine)")
    print(f"{'task':18} {'baseline':30} {'baseline ms':>12} {'course ms':>10} {'ratio':>9} {'goal':>7}")
    for task, baseline, base_fn, base_repeats, ours_fn, goal in rows:
        base = best_time(base_fn, base_repeats)
        ours = best_time(ours_fn, args.repeats)
        ratio = base / ours
        met = None if goal is None else ratio >= goal
        results.append(dict(task=task, baseline=baseline, baseline_ms=base * 1e3, course_ms=ours * 1e3,
                            ratio=ratio, goal=goal, met=met))
        goal_text = "—" if goal is None else f"{goal}x"
        print(f"{task:18} {baseline:30} {base * 1e3:12.1f} {ours * 1e3:10.2f} {ratio:8.0f}x {goal_text:>7}"
              f"{'  (goal not met)' if met is False else ''}")
    report = {"benchmark": "bench_metrics", "torch": torch.__version__, "results": results}
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
