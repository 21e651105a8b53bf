"""The GPU recipe for CIFAR-10 of lessons 01 and 02, timed end to end: epoch time, projection, accuracy.

    python -m benchmarks.bench_cifar_recipe [--models vgg16,resnet50] [--data synthetic|real]
        [--epochs 30] [--timed-epochs 3] [--batch-size 128] [--json results/benchmarks/bench_cifar_recipe.json]

What runs is the lessons' ``full`` profile, the same calls as their training cells:

- data: the whole training set kept on the GPU as uint8; each batch of 128 is gathered, pad-4
  cropped, flipped and normalised there (``DeviceLoader``, what ``cifar.loaders(profile,
  device=cuda)`` returns); the 10,000 test images likewise, without augmentation;
- model: ``vgg.vgg16()`` (lesson 01) or ``resnet.resnet50(num_classes=10, stem="cifar")`` (02);
- SGD with Nesterov momentum 0.9 and weight decay 5e-4, ``OneCycleLR`` to ``max_lr`` 0.1 (at
  batch 128; scaled by the square root of the batch size otherwise) stepped per batch,
  ``CrossEntropyLoss(label_smoothing=0.1)``;
- ``engine.fit``: bf16 autocast (fp16 with a GradScaler where bf16 is only emulated), a
  channels_last model, the test set evaluated after every epoch.

``--data real`` (Colab, or any machine where CIFAR-10 downloads): trains all ``--epochs`` and
reports the test accuracy (goal >= 93 %) and the wall time from loading the data to the last
epoch's evaluation (goal <= 15 minutes on one H100; download CIFAR-10 first, with
``cifar.download()``, or the download is timed too).
``--data synthetic`` (the default; nothing to download): random uint8 images of the real size,
50,000 train and 10,000 test. Accuracy means nothing there, so only ``--timed-epochs`` epochs run;
the first pays for cuDNN's kernel choice and the allocator's warm-up, and the time of ``--epochs``
is projected as ``first + (epochs - 1) x median(the others)``, an honest estimate of the real run
(the work per epoch does not depend on the pixels).

On a CPU it runs too (fp32, no autocast): that is how the test suite smoke-tests it, at a tiny
size. It is not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from course_utils import engine, measure, runtime
from course_utils.data import cifar
from course_utils.data.device_loader import DeviceLoader
from course_utils.models import resnet, vgg

from benchmarks.bench_train_step import machine_line
from benchmarks.report import choose, write_json

MODELS: dict[str, Callable[[int], nn.Module]] = {
    "vgg16": lambda div: vgg.vgg16(width_div=div),  # lesson 01
    "resnet50": lambda div: resnet.resnet50(num_classes=10, stem="cifar", width_div=div),  # lesson 02
}
GOAL_ACCURACY = 0.93  # the course's aim for VGG16-BN and ResNet-50 (benchmarks/README.md)
GOAL_MINUTES = 15.0  # per model, on one H100
# The lessons' full-profile settings (tests/test_benchmarks.py checks that the lessons still say so).
EPOCHS, BATCH_SIZE, MAX_LR, MOMENTUM, WEIGHT_DECAY, LABEL_SMOOTHING = 30, 128, 0.1, 0.9, 5e-4, 0.1


def recipe(model: nn.Module, batch_size: int, total_steps: int):
    """(optimizer, scheduler, criterion) exactly as the training cells of lessons 01 and 02 build them."""
    max_lr = MAX_LR * (batch_size / BATCH_SIZE) ** 0.5  # 0.1 at batch 128
    optimizer = torch.optim.SGD(model.parameters(), lr=max_lr, momentum=MOMENTUM, nesterov=True,
                                weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps)
    return optimizer, scheduler, nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)


def synthetic_loaders(device: torch.device, batch_size: int, train_size: int, test_size: int,
                      seed: int = 0) -> tuple[DeviceLoader, DeviceLoader]:
    """Random uint8 images in torchvision's CIFAR10.data layout (N, 32, 32, 3), held on ``device``."""
    g = torch.Generator().manual_seed(seed)

    def part(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)
        return images, torch.randint(0, 10, (n,), generator=g)

    common = dict(batch_size=batch_size, device=device, mean=cifar.MEAN, std=cifar.STD, seed=seed)
    return DeviceLoader(*part(train_size), train=True, **common), DeviceLoader(*part(test_size), train=False, **common)


def projected_seconds(epoch_seconds: list[float], epochs: int) -> float:
    """The first epoch as measured, every later one as the median of the later measured ones."""
    first, rest = epoch_seconds[0], epoch_seconds[1:] or epoch_seconds
    return first + (epochs - 1) * statistics.median(rest)


def bench_model(name: str, device: torch.device, *, data: str, epochs: int, timed_epochs: int,
                batch_size: int, width_div: int, train_size: int, test_size: int) -> dict:
    profile = runtime.get_profile("full", verbose=False,
                                  full={"epochs": epochs, "batch_size": batch_size, "progress": False})
    wall_start = time.perf_counter()  # real data: the goal's clock includes putting the data on the GPU
    if data == "real":
        train_loader, test_loader = cifar.loaders(profile, device=device)  # downloads on first use
        run_epochs = epochs
    else:
        train_loader, test_loader = synthetic_loaders(device, batch_size, train_size, test_size)
        run_epochs = min(timed_epochs, epochs)
    runtime.seed_everything(0)
    model = MODELS[name](width_div)
    optimizer, scheduler, criterion = recipe(model, batch_size, total_steps=epochs * len(train_loader))
    measure.reset_peak_memory(device)
    print(f"{name}: {run_epochs} of {epochs} epochs, {data} data, batch {batch_size}, "
          f"autocast {engine.amp_dtype(device, profile.amp)}", flush=True)
    history = engine.fit(model, train_loader, test_loader, epochs=run_epochs, optimizer=optimizer,
                         criterion=criterion, device=device, num_classes=10, scheduler=scheduler, profile=profile)
    wall_seconds = time.perf_counter() - wall_start
    # The test pass alone, once more, to split an epoch's time into training and evaluation.
    measure.synchronize(device)
    start = time.perf_counter()
    result = engine.evaluate(model, test_loader, device, num_classes=10, progress=False, amp=profile.amp)
    measure.synchronize(device)
    eval_seconds = time.perf_counter() - start
    epoch_seconds = history["epoch_time"]
    steady = statistics.median(epoch_seconds[1:] or epoch_seconds)
    train_images = len(train_loader) * batch_size
    total = wall_seconds if data == "real" else projected_seconds(epoch_seconds, epochs)
    accuracy = result["accuracy"] if data == "real" else None
    minutes_met = total / 60 <= GOAL_MINUTES
    return dict(
        model=name, data=data, device=device.type, width_div=width_div, batch_size=batch_size,
        train_images=train_images, test_images=len(test_loader.images) if data != "real" else None,
        epochs=epochs, epochs_run=run_epochs, epoch_seconds=epoch_seconds, first_epoch_s=epoch_seconds[0],
        steady_epoch_s=steady, eval_s=eval_seconds,
        train_img_s=train_images / max(steady - eval_seconds, 1e-9),
        total_minutes=total / 60, total_is_projection=data != "real", goal_minutes=GOAL_MINUTES,
        minutes_met=minutes_met, accuracy=accuracy, goal_accuracy=GOAL_ACCURACY,
        accuracy_met=None if accuracy is None else accuracy >= GOAL_ACCURACY,
        peak_mib=measure.peak_memory_mib(device), amp=str(engine.amp_dtype(device, profile.amp)))


def device_line(device: torch.device) -> str:
    return f"GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else f"CPU, {machine_line()}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--data", choices=("synthetic", "real"), default="synthetic")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="the planned run (the lessons': 30)")
    parser.add_argument("--timed-epochs", type=int, default=3, help="synthetic data: epochs actually run")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    parser.add_argument("--width-div", type=int, default=1, help="divide model widths (smoke tests only)")
    parser.add_argument("--train-size", type=int, default=50_000, help="synthetic training images")
    parser.add_argument("--test-size", type=int, default=10_000, help="synthetic test images")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="let cuDNN time its kernels for these fixed shapes (not what the lessons do: "
                             "this measures whether they should)")
    parser.add_argument("--json", type=Path, default=Path("results/benchmarks/bench_cifar_recipe.json"))
    args = parser.parse_args(argv)

    names = choose(parser, args.models, MODELS)
    if args.timed_epochs < 1 or args.epochs < 1:
        parser.error("--epochs and --timed-epochs must be at least 1")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    print(f"torch {torch.__version__} | {device_line(device)}", flush=True)
    results = []
    for name in names:
        results.append(bench_model(name, device, data=args.data, epochs=args.epochs, timed_epochs=args.timed_epochs,
                                   batch_size=args.batch_size, width_div=args.width_div,
                                   train_size=args.train_size, test_size=args.test_size))
    print()
    print(f"{'model':9} {'data':9} {'batch':>5} {'epochs run':>10} {'first s':>8} {'epoch s':>8} {'test s':>7} "
          f"{'train img/s':>11} {'minutes':>12} {'goal':>6} {'accuracy':>9} {'peak MiB':>9}")
    for r in results:
        minutes = f"{r['total_minutes']:.1f}{' (proj.)' if r['total_is_projection'] else ''}"
        accuracy = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.1%}"
        verdict = "" if r["minutes_met"] and r["accuracy_met"] in (None, True) else "  (goal not met)"
        print(f"{r['model']:9} {r['data']:9} {r['batch_size']:>5} {r['epochs_run']:>4} of {r['epochs']:<3} "
              f"{r['first_epoch_s']:8.2f} {r['steady_epoch_s']:8.2f} {r['eval_s']:7.2f} {r['train_img_s']:11.0f} "
              f"{minutes:>12} {'<=' + format(GOAL_MINUTES, '.0f'):>6} {accuracy:>9} {r['peak_mib']:9.0f}{verdict}")
    report = {"benchmark": "bench_cifar_recipe", "torch": torch.__version__, "device": device_line(device),
              "cudnn_benchmark": args.cudnn_benchmark, "results": results}
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
