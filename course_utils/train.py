"""The lessons' CIFAR-10 recipes from the command line, on one process or many (torchrun, DDP).

    python -m course_utils.train --model vgg16 --profile ci
    torchrun --nproc_per_node 2 -m course_utils.train --model vgg16 --profile ci

The recipes are lessons 01 (VGG16) and 02 (ResNet-50): same profiles, optimizer, one-cycle
schedule and loss. ``--batch-size`` (default: the profile's) is the EFFECTIVE batch of one
optimizer step: each of the N processes takes ``batch / N`` images per step, so the same command
trains the same recipe (same learning rate) on 1 process or N, and a checkpoint of one resumes on
the other. Rank 0 prints, writes the checkpoint (``checkpoints/<profile>/<name>.pt``) and a JSON
of the results (``results/train/<profile>/<name>.json``, or ``--results``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import time
from pathlib import Path

import torch
from torch import nn

from course_utils import distributed, engine, files, runtime
from course_utils.data import cifar
from course_utils.models import resnet, vgg

# Lessons 01 and 02, cell for cell: profile adjustments, peak learning rate, label smoothing.
RECIPES = {
    "vgg16": {
        "profile": {"full": {"epochs": 30, "batch_size": 128},
                    "quick": {"epochs": 6, "train_subset": 8000, "eval_subset": 2000, "batch_size": 64, "width_div": 2},
                    "ci": {"epochs": 2}},
        "max_lr": lambda profile: 0.1 if profile.name == "full" else 0.05,
        "label_smoothing": lambda profile: 0.1 if profile.name == "full" else 0.0,
        "model": lambda profile: vgg.vgg16(width_div=profile.width_div),
    },
    "resnet50": {
        "profile": {"full": {"epochs": 30, "batch_size": 128},
                    "quick": {"train_subset": 8000, "eval_subset": 2000, "epochs": 8, "batch_size": 64, "width_div": 8},
                    "ci": {"train_subset": 256, "eval_subset": 128, "epochs": 2}},
        "max_lr": lambda profile: 0.1 * (profile.batch_size / 128) ** 0.5,
        "label_smoothing": lambda profile: 0.1,
        "model": lambda profile: resnet.resnet50(num_classes=10, stem="cifar", width_div=profile.width_div),
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m course_utils.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(RECIPES), required=True)
    parser.add_argument("--profile", choices=("ci", "quick", "full"), default=None,
                        help="default: COURSE_PROFILE, else full on a GPU and quick on a CPU")
    parser.add_argument("--epochs", type=int, default=None, help="default: the lesson's")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="effective batch of one step, all processes together (default: the lesson's)")
    parser.add_argument("--name", default=None, help="checkpoint name (default: train_<model>)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="default: checkpoints/<profile>/")
    parser.add_argument("--results", type=Path, default=None,
                        help="JSON file rank 0 writes (default: results/train/<profile>/<name>.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    """Train (or resume, or load) the recipe; returns the results on rank 0 (None on the others)."""
    args = parse_args(argv)
    with distributed.process_group():
        return run(args)


def run(args: argparse.Namespace) -> dict | None:
    recipe = RECIPES[args.model]
    world = distributed.world_size()
    quiet = contextlib.nullcontext() if distributed.is_main() else contextlib.redirect_stdout(io.StringIO())
    with quiet:  # one banner, one data line: rank 0's
        profile = runtime.get_profile(args.profile, **recipe["profile"])
    if args.epochs is not None:
        profile = dataclasses.replace(profile, epochs=args.epochs)
    batch = args.batch_size or profile.batch_size
    if batch % world:
        raise SystemExit(f"--batch-size {batch} cannot be split evenly over {world} processes: "
                         f"choose a multiple of {world}.")
    profile = dataclasses.replace(profile, batch_size=batch // world)  # the batch of ONE process
    device = distributed.device()
    runtime.seed_everything(0)  # the same on every rank: the same initial weights and shuffles

    if not distributed.is_main():
        distributed.barrier()  # rank 0 downloads the data (once) while the others wait
    with quiet:
        train_loader, test_loader = cifar.loaders(profile, device=device)
    if distributed.is_main():
        distributed.barrier()
    # this process's shards, before the scheduler counts its steps with len(train_loader)
    train_loader, test_loader = distributed.shard(train_loader), distributed.shard(test_loader)

    model = recipe["model"](profile)
    max_lr = recipe["max_lr"](dataclasses.replace(profile, batch_size=batch))  # the lesson's rate for this batch
    optimizer = torch.optim.SGD(model.parameters(), lr=max_lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr,
                                                    total_steps=profile.epochs * len(train_loader))
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"](profile))
    name = args.name or f"train_{args.model}"
    start = time.perf_counter()
    history = engine.fit_or_load(model, train_loader, test_loader, name=name, profile=profile,
                                 optimizer=optimizer, criterion=criterion, num_classes=10, device=device,
                                 scheduler=scheduler, checkpoint_dir=args.checkpoint_dir)
    seconds = time.perf_counter() - start
    result = engine.evaluate(model, test_loader, device, num_classes=10, progress=profile.progress,
                             amp=profile.amp)  # on every rank: each scores its shard, all get the total
    images = len(train_loader) * profile.batch_size * world * profile.epochs  # all ranks' training images
    report = {
        "model": args.model, "profile": profile.name, "world_size": world,
        "backend": torch.distributed.get_backend() if distributed.is_distributed() else None,
        "device": device.type, "batch_size": batch, "batch_per_process": profile.batch_size,
        "max_lr": max_lr, "epochs": profile.epochs, "outcome": history.outcome,
        "checkpoint": str(history.checkpoint), "test_accuracy": result["accuracy"],
        "test_images": int(result["confusion"].sum()),
        "history": dict(history),
        # a run trained from scratch: training images per second, its per-epoch evaluations included
        "seconds": seconds if history.outcome == "trained" else None,
        "images_per_second": images / seconds if history.outcome == "trained" else None,
    }
    if not distributed.is_main():
        return None
    path = args.results or runtime.results_dir(profile, "train") / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomically(path, lambda f: json.dump(report, f, indent=1), text=True)
    print(f"{args.model} on {world} process{'es' if world > 1 else ''} ({report['backend'] or device.type}): "
          f"test accuracy {result['accuracy']:.1%} on {report['test_images']:,} images; results in {path}",
          flush=True)
    return report


if __name__ == "__main__":
    main()
