"""Save and load training checkpoints, atomically.

A checkpoint is one dict of state dicts and plain values, torchvision-references style::

    {"model": ..., "optimizer": ..., "scheduler": ..., "scaler": ..., "epoch": 3, "epochs": 10,
     "history": {...}, "profile": "quick", "finished": False, "rng": {...}, "plan": {...}}

``plan`` (``training_plan``) records what the run was trained with, so ``engine.fit_or_load``
can tell a checkpoint of this very recipe from one of an earlier, different recipe.

``save`` writes ``name.pt.tmp`` next to the target and then ``os.replace``-s it into place. A
kernel interrupted mid-save (Ctrl-C, a Colab disconnect, a full disk) therefore leaves the previous
checkpoint untouched instead of a half-written file that would fail to load on the next run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch


def save(path: str | os.PathLike, **state: Any) -> Path:
    """Write ``state`` to ``path`` atomically (tmp file in the same folder + ``os.replace``).

    Creates the parent folders. Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")  # same folder: os.replace is atomic only within a filesystem
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them "the" checkpoint
        os.replace(tmp, path)
    except BaseException:  # including KeyboardInterrupt: never leave a half file behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by ``save``; tensors land on ``map_location`` (default: CPU).

    Raises a ``FileNotFoundError`` or ``RuntimeError`` naming the file when it is missing or
    cannot be read (e.g. truncated by a copy that did not finish).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}. Train first (engine.fit_or_load writes it), "
                                f"or check the name and the profile folder (checkpoints/<profile>/).")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise RuntimeError(f"Checkpoint {path} could not be read: it is corrupt or incomplete "
                           f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
                           f"Delete it and train again.") from error
    if not isinstance(state, dict):
        raise RuntimeError(f"Checkpoint {path} holds a {type(state).__name__}, not the dict that "
                           f"checkpoint.save writes; delete it and train again.")
    return state


# ---------------------------------------------------------------------------------------------
# The plan of a run: what a checkpoint was trained with, so that a changed recipe is not answered
# by loading an old run. Plain values only: checkpoints load with ``weights_only=True``.

SCHEDULED_KEYS = ("lr", "momentum", "betas")  # a scheduler moves these while training
PROFILE_KEYS = ("image_size", "train_subset", "width_div", "amp")  # change what is trained on, or how


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def training_plan(model: torch.nn.Module, train_loader: Any, optimizer: torch.optim.Optimizer,
                  criterion: torch.nn.Module, *, epochs: int, profile: Any = None,
                  scheduler: Any = None) -> dict:
    """The settings that make a run what it is: model, optimizer, schedule, loss, data, epochs.

    The loss counts with its settings and buffers (e.g. ``CrossEntropyLoss(weight=...)``), the
    data with its batches and the training set's size (``len(train_loader.dataset)``).

    ``profile`` (a ``runtime.Profile``) adds its name and the settings that change the training
    data or arithmetic: ``image_size``, ``train_subset``, ``width_div`` and ``amp``.

    Taken BEFORE training, from freshly built objects, so the same lesson cell gives the same plan
    on every run. A scheduled learning rate (or momentum) counts by its starting value
    (``initial_lr``, set by every torch scheduler), not by where the schedule has moved it.
    """
    groups = []
    for group in optimizer.param_groups:
        cycled = "max_momentum" in group  # OneCycleLR / CyclicLR move momentum (or betas) too
        skip = SCHEDULED_KEYS if cycled else ("lr",)
        settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(group.items())
                    if k != "params" and k not in skip and _plain(v)}
        settings["base_lr"] = group.get("initial_lr", group["lr"])
        settings["parameters"] = sum(p.numel() for p in group["params"])
        groups.append(settings)
    loss = {k: v for k, v in sorted(vars(criterion).items()) if not k.startswith("_") and k != "training"
            and _plain(v)}
    for name, buffer in criterion._buffers.items():  # class weights; None too: adding them is a change
        loss[name] = None if buffer is None else [round(x, 6) for x in buffer.flatten().tolist()]
    dataset = getattr(train_loader, "dataset", None)
    data = {key: getattr(profile, key) for key in PROFILE_KEYS if profile is not None}
    return {
        "profile": getattr(profile, "name", None), "epochs": epochs, "data": data,
        "model": f"{type(model).__name__} with {sum(p.numel() for p in model.parameters()):,} parameters",
        "optimizer": type(optimizer).__name__, "param_groups": groups,
        "scheduler": type(scheduler).__name__ if scheduler is not None else None,
        "criterion": {"type": type(criterion).__name__, **loss},
        "batch_size": getattr(train_loader, "batch_size", None),
        "batches_per_epoch": len(train_loader) if hasattr(train_loader, "__len__") else None,
        "train_size": len(dataset) if hasattr(dataset, "__len__") else None,
    }


def plan_differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    """Readable differences between two plans, e.g. ``["param_groups[0].base_lr: 0.1 -> 0.05"]``.

    Only keys present in both count: another torch version may add an optimizer option (with
    its default), and a checkpoint from it is still the same plan.
    """
    out = []
    for key in sorted(set(saved) & set(wanted), key=str):
        a, b = saved[key], wanted[key]
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += plan_differences(a, b, name + ".")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) \
                and all(isinstance(x, dict) for x in a + b):
            for i, (x, y) in enumerate(zip(a, b)):
                out += plan_differences(x, y, f"{name}[{i}].")
        elif a != b:
            out.append(f"{name}: {a} -> {b}")
    return out


def set_aside(path: str | os.PathLike) -> Path:
    """Rename ``path`` to ``<stem>.replaced-<time>.pt`` so a new run never overwrites an old one."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{path.stem}.replaced-{stamp}{path.suffix}"), 1
    while target.exists():  # two set-asides within one second
        target, n = path.with_name(f"{path.stem}.replaced-{stamp}-{n}{path.suffix}"), n + 1
    os.replace(path, target)
    return target
