"""Training throughput: ``engine.train_one_epoch`` vs the textbook loop, on every course model.

    python -m benchmarks.bench_train_step [--models vgg16,resnet50,unet,resnet_unet] [--steps N]
        [--repeats 6] [--devices cpu,cuda] [--threads T] [--json results/benchmarks/bench_train_step.json]

Workload: each model at the ``quick`` profile's image sizes (CIFAR 32x32, VOC 64x64), an
in-memory DataLoader of ``steps`` random batches, SGD with momentum 0.9. Both loops train the
SAME model object on the same batches with a fresh optimizer of the same settings, always from
the same starting weights and the same dropout seed; they run interleaved (A B, B A, A B, ...: a
load that drifts during the run hits both alike) and the median images/second of each is
reported, with the ratio of the best epochs (less sensitive to load spikes). Before anything is
timed, one epoch of each must give the same loss, accuracy and weights: a fast wrong loop is
worth nothing.

Goals (benchmarks/README.md): on the CPU the engine costs at most 10 % over the bare loop (ratio >= 0.91;
no loop can be 1.5x faster than a bare forward/backward). On a GPU the engine, with AMP,
channels_last and non_blocking copies, is >= 1.5x the textbook fp32 loop. Timings on a shared
machine swing 2-3x: the torch thread count and the load average are printed with the table.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import engine, measure
from course_utils.models import resnet, resnet_unet, unet, vgg

from benchmarks.report import choose, write_json


@dataclass(frozen=True)
class Case:
    """One model and its workload; CPU batches are small so ResNet-50 (~4-11 img/s) stays quick."""

    build: Callable[[int], nn.Module]  # width_div -> model
    num_classes: int  # 10 (CIFAR labels) or 21 (VOC masks)
    image_size: int  # the quick profile's size: 32 for CIFAR, 64 for VOC
    cpu_batch: int
    cpu_steps: int
    gpu_batch: int
    gpu_steps: int = 20

    @property
    def segmentation(self) -> bool:
        return self.num_classes == 21


CASES = {
    "vgg16": Case(lambda div: vgg.vgg16(width_div=div), 10, 32, cpu_batch=16, cpu_steps=4, gpu_batch=128),
    "resnet50": Case(lambda div: resnet.resnet50(width_div=div), 10, 32, cpu_batch=8, cpu_steps=2, gpu_batch=128),
    "unet": Case(lambda div: unet.UNet(base_width=64 // div), 21, 64, cpu_batch=4, cpu_steps=2, gpu_batch=32),
    "resnet_unet": Case(lambda div: resnet_unet.ResNetUNet(width_div=div), 21, 64, cpu_batch=8, cpu_steps=2,
                        gpu_batch=32),
}
CPU_GOAL, GPU_GOAL = 0.91, 1.5  # engine img/s over textbook img/s


def make_loader(case: Case, steps: int, batch_size: int, image_size: int, pin: bool) -> DataLoader:
    """``steps`` batches of normalised-looking random images with labels or masks, held in memory."""
    g = torch.Generator().manual_seed(0)
    n = steps * batch_size
    images = torch.randn(n, 3, image_size, image_size, generator=g)  # (n, 3, S, S)
    target_shape = (n, image_size, image_size) if case.segmentation else (n,)
    # no 255 in the masks: the textbook loop divides its correct count by every pixel
    targets = torch.randint(0, case.num_classes, target_shape, generator=g)
    return DataLoader(TensorDataset(images, targets), batch_size=batch_size, shuffle=False, pin_memory=pin)


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def textbook_epoch(model, loader, criterion, optimizer, device) -> dict:
    """The loop a typical course writes: fp32, blocking copies, two host syncs per batch."""
    model.train()
    total, correct, seen, batches = 0.0, 0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out, y)
        loss.backward()
        optimizer.step()
        total += loss.item()
        correct += (out.argmax(1) == y).sum().item()
        seen += y.numel()
        batches += 1
    return {"loss": total / batches, "accuracy": correct / seen}


def engine_epoch(model, loader, criterion, optimizer, device, amp: bool) -> dict:
    return engine.train_one_epoch(model, loader, criterion, optimizer, device, amp=amp, progress=False)


def set_memory_format(model: nn.Module, channels_last: bool) -> None:
    """In place: the optimizer keeps pointing at the same parameters."""
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def check_same_training(model, start, loader, criterion, device) -> None:
    """One fp32 epoch of each loop from the same weights: same loss, accuracy and weights."""
    results, states = [], []
    for epoch in (textbook_epoch, lambda *a: engine_epoch(*a, amp=False)):
        model.load_state_dict(start)
        torch.manual_seed(1)  # the same dropout masks in both
        results.append(epoch(model, loader, criterion, make_optimizer(model), device))
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    (base, ours), (base_w, ours_w) = results, states
    assert abs(base["loss"] - ours["loss"]) <= 1e-5 * max(1.0, abs(base["loss"])), (base, ours)
    # on a GPU, cuDNN's nondeterministic kernels may flip a near-tie argmax
    assert abs(base["accuracy"] - ours["accuracy"]) <= (1e-9 if device.type == "cpu" else 1e-2), (base, ours)
    for key in base_w:
        a, b = base_w[key], ours_w[key]
        same = torch.equal(a, b) if not a.is_floating_point() else torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        assert same, f"weights differ after one epoch: {key}"


def bench_case(name: str, case: Case, device: torch.device, *, steps: int | None, batch_size: int | None,
               repeats: int, width_div: int, image_size: int | None) -> dict:
    gpu = device.type == "cuda"
    steps = steps or (case.gpu_steps if gpu else case.cpu_steps)
    batch_size = batch_size or (case.gpu_batch if gpu else case.cpu_batch)
    image_size = image_size or case.image_size
    torch.manual_seed(0)
    model = case.build(width_div).to(device)
    loader = make_loader(case, steps, batch_size, image_size, pin=gpu)
    criterion = engine.loss_for_segmentation() if case.segmentation else nn.CrossEntropyLoss()
    start = copy.deepcopy(model.state_dict())
    check_same_training(model, start, loader, criterion, device)  # also warms both loops up

    arms = {"textbook": lambda opt: textbook_epoch(model, loader, criterion, opt, device),
            "engine": lambda opt: engine_epoch(model, loader, criterion, opt, device, amp=gpu)}
    seconds = {arm: [] for arm in arms}
    for repeat in range(repeats):
        order = list(arms) if repeat % 2 == 0 else list(arms)[::-1]  # A B, B A, ...: drifts hit both alike
        for arm in order:
            epoch = arms[arm]
            model.load_state_dict(start)
            set_memory_format(model, channels_last=gpu and arm == "engine")
            optimizer = make_optimizer(model)
            torch.manual_seed(1)
            measure.synchronize(device)
            begin = time.perf_counter()
            epoch(optimizer)
            measure.synchronize(device)
            seconds[arm].append(time.perf_counter() - begin)
    images = steps * batch_size
    base = images / statistics.median(seconds["textbook"])
    ours = images / statistics.median(seconds["engine"])
    # the best epochs too: load only ever adds time, so min/min is less noisy on a shared machine
    best_ratio = min(seconds["textbook"]) / min(seconds["engine"])
    goal = GPU_GOAL if gpu else CPU_GOAL
    return dict(device=device.type, model=name, width_div=width_div, batch_size=batch_size, steps=steps,
                image_size=image_size, textbook_img_s=base, engine_img_s=ours, ratio=ours / base,
                best_ratio=best_ratio, goal=goal, met=ours / base >= goal, seconds=seconds,
                engine_setup="AMP + channels_last + non_blocking" if gpu else "fp32, same as textbook")


def machine_line() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, load average (1/5/15 min) {load}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--steps", type=int, default=None, help="batches per epoch (default: per model)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per model and device")
    parser.add_argument("--repeats", type=int, default=6, help="timed epochs per loop (median reported)")
    parser.add_argument("--devices", default=None, help="comma-separated; default: cpu, plus cuda when present")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--width-div", type=int, default=1, help="divide model widths (smoke tests only)")
    parser.add_argument("--image-size", type=int, default=None, help="override the quick sizes (smoke tests)")
    parser.add_argument("--json", type=Path, default=Path("results/benchmarks/bench_train_step.json"))
    args = parser.parse_args(argv)

    names = choose(parser, args.models, CASES)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.threads:
        torch.set_num_threads(args.threads)

    before = machine_line()
    print(f"torch {torch.__version__} | {before}")
    print(f"{'device':6} {'model':12} {'batch x steps':>13} {'size':>5} {'textbook img/s':>15} "
          f"{'engine img/s':>13} {'ratio':>6} {'best':>5} {'goal':>6}")
    results = []
    for device in devices:
        for name in names:
            row = bench_case(name, CASES[name], torch.device(device), steps=args.steps, batch_size=args.batch_size,
                             repeats=args.repeats, width_div=args.width_div, image_size=args.image_size)
            results.append(row)
            print(f"{row['device']:6} {name:12} {row['batch_size']:>6} x {row['steps']:<4} {row['image_size']:>5} "
                  f"{row['textbook_img_s']:15.1f} {row['engine_img_s']:13.1f} {row['ratio']:6.2f} "
                  f"{row['best_ratio']:5.2f} "
                  f"{'>=' + format(row['goal'], '.2f'):>6}{'' if row['met'] else '  (goal not met)'}", flush=True)
    after = machine_line()
    print(f"after: {after}")
    report = {"benchmark": "bench_train_step", "torch": torch.__version__, "machine_before": before,
              "machine_after": after, "threads": torch.get_num_threads(), "repeats": args.repeats,
              "results": results}
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
