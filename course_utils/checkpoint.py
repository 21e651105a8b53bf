"""Save and load training checkpoints, atomically.

A checkpoint is one dict of state dicts and plain values, torchvision-references style::

    {"model": ..., "optimizer": ..., "scheduler": ..., "scaler": ..., "epoch": 3, "epochs": 10,
     "history": {...}, "profile": "quick", "finished": False, "rng": {...}}

``save`` writes ``name.pt.tmp`` next to the target and then ``os.replace``-s it into place. A
kernel interrupted mid-save (Ctrl-C, a Colab disconnect, a full disk) therefore leaves the previous
checkpoint untouched instead of a half-written file that would fail to load on the next run.
"""

from __future__ import annotations

import os
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
