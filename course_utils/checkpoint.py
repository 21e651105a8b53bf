"""Save and load training checkpoints, atomically; one trainer per checkpoint at a time.

A checkpoint is one dict of state dicts and plain values, torchvision-references style::

    {"model": ..., "optimizer": ..., "scheduler": ..., "scaler": ..., "epoch": 3, "epochs": 10,
     "history": {...}, "profile": "quick", "finished": False, "rng": {...}, "plan": {...}}

``plan`` (``training_plan``) records what the run was trained with (the model's structure, the
data's transforms, optimizer, schedule, loss, epochs...), so ``engine.fit_or_load`` can tell a
checkpoint of this very recipe from one of an earlier, different recipe.

``save`` writes with ``files.write_atomically``: a temporary file with a unique name
(``name.pt.<random>.tmp``) next to the target, then ``os.replace``-d into place. A kernel
interrupted mid-save (Ctrl-C, a Colab disconnect, a full disk) therefore leaves the previous checkpoint untouched instead of a
half-written file that would fail to load on the next run; and two processes saving the same name
never write into each other's file.

``locked`` keeps a second trainer of the same checkpoint (two notebooks, two browser tabs) out
while the first one runs: it is told who holds the checkpoint instead of overwriting it. The lock is
the operating system's (``fcntl.flock``; ``msvcrt.locking`` on Windows), so a killed kernel never
leaves a lock that blocks the next run.
"""

from __future__ import annotations

import errno
import json
import os
import pickletools
import re
import socket
import sys
import time
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from course_utils import distributed, files
from course_utils.runtime import CHECKPOINT_ENV


def _os_error_in(error: BaseException) -> OSError | None:
    """The OSError behind ``error``: torch reports a failed write as a RuntimeError from its zip writer
    ("inline_container.cc ... unexpected pos"), with the real cause (e.g. disk full) in its context."""
    while error is not None:
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


def _save_failed(path: Path, error: OSError) -> OSError:
    """A readable error for a checkpoint that could not be written: where, why, and what to do."""
    kept = (f"The previous checkpoint {path.name} is intact (the new one went to a temporary file, "
            f"now removed)" if path.is_file() else "No checkpoint was written (nothing half-written is left)")
    move = (f"copy {path.name} into it to resume from there" if path.is_file()
            else "then re-run the cell that builds the model, optimizer and scheduler")
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        fix = (f"Free some space there and re-run the training cell (it resumes from the last saved epoch, "
               f"if any), or keep checkpoints on another disk: set the environment variable {CHECKPOINT_ENV} "
               f"to a folder with room (os.environ[\"{CHECKPOINT_ENV}\"] = \"/path\" in the first cell, or "
               f"runtime.keep_checkpoints_on_drive() in Colab), {move}, and run the training cell")
    else:
        fix = (f"Check that you can write to that folder, or set the environment variable {CHECKPOINT_ENV} to "
               f"a folder you can write to, {move}, and run the training cell")
    message = (f"Could not save the checkpoint {path.name} in {path.parent}: {error.strerror or error}. "
               f"{kept}. {fix}.")
    return OSError(error.errno, message)


def _make_folder(path: Path) -> None:
    """Create the checkpoint's folder; a file in the way, or a folder you cannot write to, says what to do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # e.g. COURSE_CHECKPOINTS names a file: "Not a directory"
        raise _save_failed(path, error) from None


def save(path: str | os.PathLike, **state: Any) -> Path:
    """Write ``state`` to ``path`` atomically (unique tmp file in the same folder + ``os.replace``).

    Creates the parent folders. Returns the path written. A failed write (e.g. a full disk)
    raises an ``OSError`` that names the folder and says the previous checkpoint is intact.
    """
    path = Path(path)
    _make_folder(path)
    try:
        files.write_atomically(path, lambda f: torch.save(state, f))
    except Exception as error:  # KeyboardInterrupt passes unchanged (write_atomically removed its file)
        cause = _os_error_in(error)  # e.g. a folder you cannot write to, a full disk
        if cause is None:
            raise
        raise _save_failed(path, cause) from None  # torch's zip-writer internals would only hide the cause
    return path


def remove_temporary_files(path: str | os.PathLike) -> list[Path]:
    """Delete ``name.pt.*.tmp`` files left next to ``path`` by a process killed mid-save; returns them.

    Call it only while holding ``locked(path)``: then no other trainer of this checkpoint is writing.
    """
    left = files.temporary_files(path)
    for p in left:
        p.unlink(missing_ok=True)
    return left


def _pickled_class(path: Path) -> str | None:
    """``"module.Class"`` when the file is a ``torch.save`` of one pickled object (e.g. a whole
    ``nn.Module``) rather than of a dict; read from the pickle's opcodes, without running any of it."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            data = archive.read(name)
        strings = []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("PROTO", "FRAME", "MEMOIZE", "BINPUT", "LONG_BINPUT"):
                continue
            if opcode.name == "GLOBAL":  # protocol 2, torch.save's default: "module Class"
                return arg.replace(" ", ".")
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(arg)
                continue
            if opcode.name == "STACK_GLOBAL" and len(strings) >= 2:  # protocol 4+
                return ".".join(strings[-2:])
            return None  # a dict, list, tensor...: not one pickled object
    except Exception:  # not a zip archive, or an unreadable pickle: no diagnosis
        return None
    return None


def _not_a_checkpoint(path: Path, class_name: str) -> RuntimeError:
    module, _, name = class_name.rpartition(".")
    cls = getattr(sys.modules.get(module), name, None)  # only if already imported: nothing is run
    is_model = isinstance(cls, type) and issubclass(cls, torch.nn.Module)
    what = (f"a whole model ({class_name}) saved with torch.save(model)" if is_model else
            f"a pickled {class_name} object (e.g. a whole model saved with torch.save(model))")
    return RuntimeError(
        f"{path} is not a course checkpoint but {what}; checkpoint.load expects the dict that "
        f"checkpoint.save (and engine.fit_or_load) writes. The file itself is fine. To use its weights, "
        f"ONLY if you trust where the file comes from (unpickling runs code): "
        f"weights = torch.load(path, weights_only=False).state_dict(), then model.load_state_dict(weights).")


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by ``save``; tensors land on ``map_location`` (default: CPU).

    Raises a ``FileNotFoundError`` or ``RuntimeError`` naming the file when it is missing or
    cannot be read (e.g. truncated by a copy that did not finish), and says so when the file is a
    whole model saved with ``torch.save(model)`` instead.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}. Train first (engine.fit_or_load writes it), "
                                f"or check the name and the profile folder (checkpoints/<profile>/).")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        class_name = _pickled_class(path)
        if class_name is not None:
            raise _not_a_checkpoint(path, class_name) from None
        raise RuntimeError(f"Checkpoint {path} could not be read: it is corrupt or incomplete "
                           f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
                           f"Delete it and train again.") from error
    if not isinstance(state, dict):
        raise RuntimeError(f"Checkpoint {path} holds a {type(state).__name__}, not the dict that "
                           f"checkpoint.save writes; delete it and train again.")
    return state


# ---------------------------------------------------------------------------------------------
# One trainer per checkpoint: an operating-system lock on ``name.pt.lock``, released by the system
# when the process ends, however it ends (Ctrl-C, a crash, a killed kernel).

LOCK_BYTE = 1 << 20  # Windows locks a byte range: one byte far past the holder's note, which stays readable


class CheckpointBusyError(RuntimeError):
    """Another process is training into the same checkpoint right now."""


def _try_lock(fd: int) -> bool | None:
    """Lock ``fd`` without waiting: True when locked, False when another process holds it, None when
    this filesystem has no locks (some network drives)."""
    try:
        if os.name == "nt":
            import msvcrt
            os.lseek(fd, LOCK_BYTE, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK):
            return False
        return None


def _unlock(fd: int) -> None:
    if os.name == "nt":
        import msvcrt
        os.lseek(fd, LOCK_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    # elsewhere closing the file releases the flock


def _holder(fd: int) -> str:
    """Who holds the lock, from the note it wrote: "pid 123 on host, since 2026-12-02 10:31"."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        note = json.loads(os.read(fd, 4096).decode())
        return f"pid {note['pid']} on {note['host']}, since {note['since']}"
    except (OSError, ValueError, KeyError):  # the holder has not written its note yet
        return "another process"


@contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``path``'s lock (``name.pt.lock``) for the ``with`` block: one trainer per checkpoint.

    Raises ``CheckpointBusyError`` at once, naming the holder (pid, host, start time), when another
    process holds it. The lock dies with its process, so a killed kernel never blocks the next run.
    """
    path = Path(path)
    _make_folder(path)
    lock_path = path.with_name(path.name + ".lock")
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:  # a folder you cannot write to
            raise _save_failed(path, error) from None
        got = _try_lock(fd)
        if got is False:
            holder = _holder(fd)
            os.close(fd)
            raise CheckpointBusyError(
                f"Checkpoint {path} is being trained right now by another Python process ({holder}), e.g. the "
                f"same lesson open in a second notebook or tab. Two trainings of one checkpoint would overwrite "
                f"each other's files. Wait until the other one finishes and re-run this cell (it then loads "
                f"the finished run), or stop the other kernel, or give this run another name=.")
        if got is None:
            warnings.warn(f"The folder {path.parent} cannot lock files, so nothing stops a second notebook "
                          f"from training {path.name} at the same time: run one at a time.", stacklevel=3)
            os.close(fd)
            yield
            return
        try:  # the previous holder may have deleted the file between our open and our lock
            if os.path.samestat(os.fstat(fd), os.stat(lock_path)):
                break
        except FileNotFoundError:
            pass
        _unlock(fd)
        os.close(fd)
    try:
        note = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(note).encode())
        yield
    finally:
        if os.name != "nt":
            lock_path.unlink(missing_ok=True)  # while still locked: the next one to lock checks the file is current
        _unlock(fd)
        os.close(fd)
        if os.name == "nt":
            try:
                lock_path.unlink(missing_ok=True)  # Windows cannot delete an open file: after closing it
            except PermissionError:  # another process has just opened it: it deletes it later
                pass


# ---------------------------------------------------------------------------------------------
# The plan of a run: what a checkpoint was trained with, so that a changed recipe is not answered
# by loading an old run. Plain values only: checkpoints load with ``weights_only=True``.

SCHEDULED_KEYS = ("lr", "momentum", "betas")  # a scheduler moves these while training
PROFILE_KEYS = ("image_size", "train_subset", "width_div", "amp")  # change what is trained on, or how
RUN_KEYS = ("structure", "transforms")  # define the run: a checkpoint that lacks them may be another one


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _text(obj: Any) -> str:
    """``repr(obj)`` without memory addresses (``<function f at 0x7f...>``), so equal recipes read equal."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def data_transforms(loader: Any) -> str | None:
    """What the training data goes through, as text: the repr of the dataset's transforms.

    The loader's dataset is unwrapped (``Subset``...) down to the one holding ``transforms`` (a
    joint v2 pipeline, e.g. VOC's) or ``transform`` / ``target_transform``. A loader without a
    dataset that describes itself (``DeviceLoader``'s ``repr`` names its augmentation) gives its
    own repr. None when nothing transforms the data.
    """
    dataset = getattr(loader, "dataset", None)
    if dataset is None:
        describes_itself = type(loader).__repr__ is not object.__repr__ and not isinstance(loader, (list, tuple))
        return _text(loader) if describes_itself else None
    while dataset is not None:
        if getattr(dataset, "transforms", None) is not None:  # torchvision: wraps transform + target_transform
            return _text(dataset.transforms)
        found = {name: getattr(dataset, name, None) for name in ("transform", "target_transform")}
        if any(value is not None for value in found.values()):
            return "; ".join(f"{name}={_text(value)}" for name, value in found.items() if value is not None)
        dataset = getattr(dataset, "dataset", None)  # Subset, or another wrapper
    return None


def training_plan(model: torch.nn.Module, train_loader: Any, optimizer: torch.optim.Optimizer,
                  criterion: torch.nn.Module, *, epochs: int, profile: Any = None,
                  scheduler: Any = None) -> dict:
    """The settings that make a run what it is: model, data, optimizer, schedule, loss, epochs.

    The model counts by its structure, ``repr(model)``: every layer with its settings, so a
    changed dropout rate, activation, layer order or width is another run, even with the same
    parameter count. The data counts by its transforms (``data_transforms``: the augmentation),
    its batches and the training set's size (``len(train_loader.dataset)``); the loss with its
    settings and buffers (e.g. ``CrossEntropyLoss(weight=...)``).

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
    batch = getattr(train_loader, "batch_size", None)
    data = {key: getattr(profile, key) for key in PROFILE_KEYS if profile is not None}
    return {
        "profile": getattr(profile, "name", None), "epochs": epochs, "data": data,
        "model": f"{type(model).__name__} with {sum(p.numel() for p in model.parameters()):,} parameters",
        "structure": _text(model), "transforms": data_transforms(train_loader),
        "optimizer": type(optimizer).__name__, "param_groups": groups,
        "scheduler": type(scheduler).__name__ if scheduler is not None else None,
        "criterion": {"type": type(criterion).__name__, **loss},
        # under torchrun the effective batch (all ranks' images in one step), so N processes
        # with batch B and 1 process with batch N * B have the same plan and resume each other
        "batch_size": batch * distributed.world_size() if batch else batch,
        "batches_per_epoch": len(train_loader) if hasattr(train_loader, "__len__") else None,
        "train_size": len(dataset) if hasattr(dataset, "__len__") else None,
    }


def _first_difference(a: str, b: str) -> str:
    """Where two multi-line texts (model structures, transforms) first differ: one readable line."""
    old, new = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(old, new)):
        if x != y:
            return f"line {i + 1} {x.strip()!r} -> {y.strip()!r}"
    i = min(len(old), len(new))
    longer = new if len(new) > len(old) else old
    return f"{len(old)} -> {len(new)} lines, from line {i + 1} {longer[i].strip()!r}"


NOT_RECORDED = "not recorded (the checkpoint comes from an older version of the course)"


def plan_differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    """Readable differences between two plans, e.g. ``["param_groups[0].base_lr: 0.1 -> 0.05"]``.

    Only keys present in both count (another torch version may add an optimizer option, with its
    default, and a checkpoint from it is still the same plan), except ``RUN_KEYS``: a saved plan
    without the model's structure or the data's transforms cannot show it is the same run.
    Multi-line values (a model's structure) show their first differing line.
    """
    missing = [key for key in RUN_KEYS if not prefix and key in wanted and key not in saved]
    out = [f"{' and '.join(missing)}: {NOT_RECORDED}"] if missing else []
    for key in sorted(set(saved) & set(wanted), key=str):
        a, b = saved[key], wanted[key]
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += plan_differences(a, b, name + ".")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) \
                and all(isinstance(x, dict) for x in a + b):
            for i, (x, y) in enumerate(zip(a, b)):
                out += plan_differences(x, y, f"{name}[{i}].")
        elif isinstance(a, str) and isinstance(b, str) and a != b and ("\n" in a or "\n" in b):
            out.append(f"{name}: {_first_difference(a, b)}")
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
