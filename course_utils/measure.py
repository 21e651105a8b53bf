"""Measure models: parameters, multiply-adds, step time and peak memory. (Taught in 07.)

Counted, never guessed: multiply-adds come from ``torch.utils.flop_counter.FlopCounterMode``
(which counts FLOPs, two per multiply-add), times from real steps after a warm-up, with the
device synchronised before each clock read.
"""

from __future__ import annotations

import gc
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from course_utils.engine import amp_dtype

__all__ = ["count_params", "count_macs", "time_step", "loader_speed", "peak_memory_mib", "StepTiming", "synchronize"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once); ``trainable_only``: requires_grad ones."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on a zero input of ``input_shape`` (N, C, H, W)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(*input_shape, device=device))
    model.train(was_training)
    return counter.get_total_flops() // 2


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a clock read measures the work and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class StepTiming:
    """Seconds per step (median of the timed steps) and images per second."""

    seconds: float
    images_per_second: float


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def time_step(model: nn.Module, input_shape: Sequence[int], device: torch.device | str, *,
              train: bool = True, num_classes: int | None = None, steps: int = 5, warmup: int = 2,
              target_shape: Sequence[int] | None = None, amp: bool = False,
              make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None) -> StepTiming:
    """Time a forward pass (``train=False``) or a full training step on random data.

    A training step is forward, cross-entropy loss, backward and an SGD step. Targets are
    ``(N,)`` class indices, or ``target_shape`` (e.g. ``(N, H, W)`` for segmentation).
    The model is left in the train/eval mode it came in with, but on ``device`` and, for
    ``train=True``, with the weights of the timed steps: time a fresh model (or
    ``copy.deepcopy(model)``) when a trained one must stay as it is.
    """
    device = torch.device(device)
    model = model.to(device)
    modes = [module.training for module in model.modules()]  # restored at the end
    images = torch.randn(*input_shape, device=device)
    if num_classes is None and not train:
        num_classes = 1  # forward only: the targets are not used
    elif num_classes is None:  # ask the model; in eval, so BatchNorm's running statistics stay
        model.eval()
        with torch.no_grad():
            num_classes = model(images[:1]).shape[1]
    targets = torch.randint(0, num_classes, tuple(target_shape or input_shape[:1]), device=device)
    optimizer = (make_optimizer or (lambda m: torch.optim.SGD(m.parameters(), lr=1e-3)))(model) if train else None
    criterion = nn.CrossEntropyLoss()
    dtype = amp_dtype(device, amp)  # bf16 where the GPU has it, fp16 otherwise, None on the CPU
    autocast = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def one_step() -> None:
        if train:
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = criterion(model(images), targets)
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad(), autocast:
                model(images)

    model.train(train)
    times = []
    for step in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        one_step()
        synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    for module, training in zip(model.modules(), modes):
        module.training = training  # the mode the model came in with, module by module
    seconds = _median(times)
    return StepTiming(seconds, input_shape[0] / seconds)


def loader_speed(loader: Iterable, batches: int = 2) -> float:
    """Images per second that ``loader`` delivers (reading, decoding, augmenting, collating).

    The first batch also starts the worker processes, so it is not timed; the next ``batches`` are.
    A loader of a single batch: that batch is timed, start-up included.
    """
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    loaded = sum(len(images) for images, _ in itertools.islice(iterator, batches))
    del iterator  # its workers stop here
    if loaded == 0:
        start = time.perf_counter()
        loaded = len(next(iter(loader))[0])
    return loaded / (time.perf_counter() - start)


def peak_memory_mib(device: torch.device | str) -> float:
    """Peak memory so far: CUDA's max allocated bytes, or the process's peak RSS on the CPU.

    NaN where the system cannot tell (Windows has no ``resource`` module); it prints as "nan".
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource  # Unix only: imported here so that importing measure works on Windows
    except ImportError:
        return math.nan
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def reset_peak_memory(device: torch.device | str) -> None:
    """Start a new CUDA peak (the CPU's peak RSS cannot be reset: compare before and after instead)."""
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
