"""A tiny training run for tests/test_distributed.py: ``torchrun --nproc_per_node 2 tests/ddp_worker.py OUT``.

Also runs as one plain process (``python tests/ddp_worker.py OUT --batch 32``). Each rank writes
``OUT/rank<R>.json`` (its history and evaluation) and ``OUT/weights<R>.pt``. The model has no
BatchNorm: each rank would normalise with its own half-batch's statistics, so N processes would
not equal one process with the whole batch (SyncBatchNorm would; this keeps the test small).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from course_utils import distributed, engine, runtime

NUM_CLASSES = 4


def datasets() -> tuple[TensorDataset, TensorDataset]:
    """256 training and 71 validation images of 8x8 px (71: the two evaluation shards differ in size)."""
    g = torch.Generator().manual_seed(0)
    train = TensorDataset(torch.randn(256, 3, 8, 8, generator=g), torch.randint(0, NUM_CLASSES, (256,), generator=g))
    val = TensorDataset(torch.randn(71, 3, 8, 8, generator=g), torch.randint(0, NUM_CLASSES, (71,), generator=g))
    return train, val


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, NUM_CLASSES))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--batch", type=int, default=16, help="images per step of ONE process")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--kill-rank", type=int, default=None, help="this rank kills itself (SIGKILL) ...")
    parser.add_argument("--kill-after-steps", type=int, default=0, help="... after this many optimizer steps")
    args = parser.parse_args()
    with distributed.process_group():
        run(args.out, args.batch, args.epochs, args.kill_rank, args.kill_after_steps)


def run(out: Path, batch: int, epochs: int = 3, kill_rank: int | None = None, kill_after_steps: int = 0) -> dict:
    """Train the small CNN with fit_or_load into ``out``; write and return this rank's report."""
    runtime.seed_everything(0)
    train, val = datasets()
    if distributed.is_distributed():  # distributed.shard gives it a DistributedSampler(seed=0)
        train_loader = DataLoader(train, batch_size=batch, shuffle=True, drop_last=True,
                                  generator=torch.Generator().manual_seed(0))
    else:  # the same permutation per epoch as the 2-process run, cut into whole global batches
        sampler = DistributedSampler(train, num_replicas=1, rank=0, shuffle=True, seed=0, drop_last=True)
        train_loader = DataLoader(train, batch_size=batch, sampler=sampler, drop_last=True)
    val_loader = DataLoader(val, batch_size=batch)
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if kill_rank == distributed.rank():
        steps = []

        def kill(*_) -> None:
            steps.append(1)
            if len(steps) == kill_after_steps:
                os.kill(os.getpid(), signal.SIGKILL)  # as an out-of-memory killer or a lost node would

        optimizer.register_step_post_hook(kill)
    profile = dataclasses.replace(runtime.default_profile("ci"), progress=False)
    criterion = nn.CrossEntropyLoss()
    history = engine.fit_or_load(model, train_loader, val_loader, name="tiny", profile=profile,
                                 optimizer=optimizer, criterion=criterion, num_classes=NUM_CLASSES,
                                 epochs=epochs, device="cpu", checkpoint_dir=out)
    result = engine.evaluate(model, val_loader, "cpu", NUM_CLASSES, criterion=criterion, progress=False)
    rank = distributed.rank()
    report = {"rank": rank, "world_size": distributed.world_size(), "outcome": history.outcome,
              "history": {k: v for k, v in history.items() if k != "epoch_time"},
              "evaluate": {"accuracy": result["accuracy"], "loss": result["loss"],
                           "confusion": result["confusion"].tolist()}}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
    torch.save(model.state_dict(), Path(out) / f"weights{rank}.pt")
    return report

if __name__ == "__main__":
    main()
