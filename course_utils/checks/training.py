"""Check of lesson 01's training-loop question: ``train_epoch`` against ``course_utils.engine``.

The student's loop and the engine's ``train_one_epoch`` each train the same small model (a conv,
BatchNorm, dropout and a linear layer) from the same weights, on the same batches, with the same
dropout masks, for two epochs with SGD + momentum and a learning rate scheduled per batch. Their
weights, BatchNorm statistics, scheduler steps and returned losses must agree. The model is put
in ``eval()`` before each epoch, so a loop that forgets ``model.train()`` trains with dropout off
and BatchNorm frozen, and shows. The last batch is smaller than the others, so a mean of batch
means differs from the mean loss per image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import engine
from course_utils.checks.verdicts import check_close, check_equal

EPOCHS, BATCH_SIZE, IMAGES = 2, 8, 35  # 35 images: batches of 8, 8, 8, 8 and 3


def _small_model() -> nn.Module:
    """(N, 3, 8, 8) -> (N, 10): conv, BatchNorm, ReLU, pool, dropout, linear."""
    return nn.Sequential(nn.Conv2d(3, 8, kernel_size=3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 4 * 4, 10))


def _train(train: Callable, seed: int = 0) -> dict:
    """Two epochs of ``train(model, loader, criterion, optimizer, scheduler, device)`` from fixed weights."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(IMAGES, 3, 8, 8, generator=generator)
    labels = torch.randint(0, 10, (IMAGES,), generator=generator)
    # shuffle=False and a generator of its own: iterating never touches the global random state
    loader = DataLoader(TensorDataset(images, labels), batch_size=BATCH_SIZE, shuffle=False,
                        generator=torch.Generator().manual_seed(seed))
    with torch.random.fork_rng(devices=[]):  # the notebook's random state is left as it was
        torch.manual_seed(seed)
        model = _small_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=EPOCHS * len(loader))
        criterion = nn.CrossEntropyLoss()
        torch.manual_seed(seed + 1)  # the same dropout masks for both loops
        losses = []
        for _ in range(EPOCHS):
            model.eval()  # the loop itself must switch to train()
            losses.append(train(model, loader, criterion, optimizer, scheduler, torch.device("cpu")))
    return {"losses": losses, "model": model, "scheduler": scheduler}


def _engine_epoch(model, loader, criterion, optimizer, scheduler, device) -> float:
    return engine.train_one_epoch(model, loader, criterion, optimizer, device, scheduler=scheduler,
                                  progress=False)["loss"]


def _as_float(value: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):  # None, a list, a tensor of several values
        return float("nan")


def check_train_epoch(train_epoch: Callable) -> None:
    """Question: ``train_epoch(model, loader, criterion, optimizer, scheduler, device)``: one epoch in
    train mode, for each batch forward, loss, zero_grad, backward, step and a scheduler step; returns
    the mean loss per image. Compared with ``engine.train_one_epoch`` over two epochs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "lr_scheduler.step() before optimizer.step()": nbval fails on it
        mine, engine_run = _train(train_epoch), _train(_engine_epoch)
    steps = EPOCHS * -(-IMAGES // BATCH_SIZE)
    check_equal(mine["scheduler"].last_epoch, steps,
                name=f"scheduler steps after {EPOCHS} epochs of {steps // EPOCHS} batches:")
    weights = [torch.cat([p.detach().flatten() for p in run["model"].parameters()]) for run in (mine, engine_run)]
    check_close(weights[0], weights[1], name=f"weights after {EPOCHS} epochs (as engine.train_one_epoch)",
                atol=1e-5)
    statistics = [torch.cat([b.flatten() for b in run["model"].buffers() if b.is_floating_point()])
                  for run in (mine, engine_run)]
    check_close(statistics[0], statistics[1], name="BatchNorm running statistics", atol=1e-5)
    check_close(torch.tensor([_as_float(loss) for loss in mine["losses"]]), torch.tensor(engine_run["losses"]),
                name=f"mean loss per image of epochs 1 and {EPOCHS} (returned)", atol=1e-5)
