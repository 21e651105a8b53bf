"""Where the course runs: device, seeds, folders and the run profile.

Every lesson starts with ``profile = runtime.get_profile()``. The profile decides how much
data and training a lesson uses, so the same notebook runs

- ``full``  on a GPU (Colab): real datasets, real epochs;
- ``quick`` on a laptop CPU: real datasets, subsets and a few minutes of training;
- ``ci``    anywhere: tiny synthetic datasets in the real on-disk formats, seconds.

The profile is picked automatically (CUDA -> ``full``, otherwise ``quick``) and the
``COURSE_PROFILE`` environment variable overrides it. Importing this module changes nothing;
``get_profile`` prints one banner so a notebook always says what it is running.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

PROFILE_ENV = "COURSE_PROFILE"
DATA_ENV = "COURSE_DATA"
CHECKPOINT_ENV = "COURSE_CHECKPOINTS"
RESULTS_ENV = "COURSE_RESULTS"
PROFILE_NAMES = ("full", "quick", "ci")


@dataclass(frozen=True)
class Profile:
    """How much data and compute a lesson uses. Lessons adjust it with ``get_profile(quick={...})``."""

    name: str  # "full" | "quick" | "ci"
    data: str  # "real" datasets under data_root(), or "synthetic" stand-ins
    epochs: int = 1  # passes over the (sub)set of training data
    batch_size: int = 32  # images per training step
    train_subset: int | None = None  # use only this many training images (None = all)
    eval_subset: int | None = None  # evaluate on only this many images (None = all)
    image_size: int = 32  # side of the square training crop (segmentation lessons)
    width_div: int = 1  # training cells divide model widths by this (ci: small models)
    num_workers: int = 0  # DataLoader worker processes
    amp: bool = False  # mixed precision (used on CUDA only)
    progress: bool = True  # tqdm progress bars

    @property
    def synthetic(self) -> bool:
        return self.data == "synthetic"


def default_num_workers(profile_name: str) -> int:
    """0 on Windows/macOS (spawned workers cannot pickle notebook classes) and in ci, else a few."""
    if profile_name == "ci" or sys.platform in ("win32", "darwin"):
        return 0
    cores = os.cpu_count() or 1
    return min(4 if profile_name == "full" else 2, max(cores - 1, 0))


def default_profile(name: str) -> Profile:
    """The built-in settings of one profile, before a lesson's own adjustments."""
    workers = default_num_workers(name)
    if name == "full":
        return Profile("full", "real", epochs=30, batch_size=128, image_size=256,
                       num_workers=workers, amp=True)
    if name == "quick":
        return Profile("quick", "real", epochs=1, batch_size=32, train_subset=1024,
                       eval_subset=512, image_size=64, num_workers=workers)
    if name == "ci":
        return Profile("ci", "synthetic", epochs=2, batch_size=16, image_size=32,
                       width_div=8, num_workers=0, progress=False)
    raise ValueError(
        f"Unknown run profile {name!r}: choose one of {', '.join(PROFILE_NAMES)} "
        f"(set it with the {PROFILE_ENV} environment variable, e.g. {PROFILE_ENV}=quick)."
    )


def pick_device() -> torch.device:
    """The fastest device present: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def auto_profile_name(device: torch.device | None = None) -> str:
    """``full`` on CUDA; ``quick`` on MPS or CPU."""
    device = device or pick_device()
    return "full" if device.type == "cuda" else "quick"


def get_profile(name: str | None = None, *, verbose: bool = True, **adjust: dict[str, Any]) -> Profile:
    """Choose the run profile, apply this lesson's adjustments, print the banner.

    Args:
        name: force a profile; otherwise ``$COURSE_PROFILE``, otherwise automatic.
        adjust: per-profile changes for this lesson, e.g. ``quick={"train_subset": 512}``.
    """
    chosen = name or os.environ.get(PROFILE_ENV, "").strip().lower() or auto_profile_name()
    profile = default_profile(chosen)
    fields = {f.name for f in dataclasses.fields(Profile)}
    for key, changes in adjust.items():  # check every profile's changes, not only the one running
        if key not in PROFILE_NAMES:
            raise ValueError(f"get_profile(): unknown profile {key!r} in adjustments; use {PROFILE_NAMES}.")
        unknown = sorted(set(changes or {}) - fields)
        if unknown:
            raise ValueError(f"get_profile(): {unknown} in {key}={{...}} are not Profile fields; known: {sorted(fields)}.")
    changes = adjust.get(profile.name) or {}
    profile = dataclasses.replace(profile, **changes)
    if verbose:
        print(banner(profile))
        for hint in (gpu_hint(profile), colab_files_hint()):
            if hint:
                print(hint)
    return profile


def colab_files_hint() -> str:
    """In Colab (the course pip-installed by a badge's install cell), unless ``COURSE_CHECKPOINTS``
    points elsewhere (Drive): the default folders are in ``/content``, which vanishes."""
    if not in_colab() or repo_root() is not None or os.environ.get(CHECKPOINT_ENV, "").strip():
        return ""
    return (f"Colab: files under {_course_home()} (Files pane, left) vanish when the runtime "
            "disconnects; run runtime.keep_checkpoints_on_drive() to keep checkpoints and results on Google Drive.")


def gpu_hint(profile: Profile) -> str:
    """Advice when a GPU would help and none is visible (e.g. a Colab CPU runtime)."""
    if pick_device().type != "cpu":
        return ""
    if in_colab():
        return ("No GPU: in Colab choose Runtime > Change runtime type > T4 GPU, then "
                "Runtime > Restart session, and run the notebook again.")
    if profile.name == "full":
        return "Profile 'full' on a CPU will take hours; set COURSE_PROFILE=quick for a laptop-sized run."
    return ""


def banner(profile: Profile) -> str:
    """One line: profile, device, data source and versions."""
    import torchvision

    device = pick_device()
    kind = "synthetic stand-ins (tiny, generated in the real formats)" if profile.synthetic else "real datasets"
    # A broken folder is not a reason to fail here: each part says what is wrong (preflight gives the fix).
    try:
        data = f"{kind} under {data_root(check=False)}"
    except FolderError as error:
        data = f"{kind}, but {error.what}"
    try:
        files = f"checkpoints: {checkpoint_dir(profile)} | results: {results_root() / '<lesson>' / profile.name}"
    except FolderError as error:
        files = f"checkpoints and results: {error.what}"
    return (f"Profile: {profile.name} | device: {device.type} | data: {data} | {files} | "
            f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"Python {platform.python_version()}")


def repo_root() -> Path | None:
    """The course checkout this package was imported from, or None when pip-installed."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() else None


class FolderError(OSError):
    """A course folder (``COURSE_DATA``, ...) that cannot work: ``what`` is wrong, ``fix`` says what to do."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}. {fix}")
        self.what, self.fix = what, fix


_WINDOWS_PATH = re.compile(r"^([A-Za-z]:([\\/]|$)|\\\\)")  # C:\..., C:/..., \\server\share


def _from_env(variable: str) -> Path | None:
    """A folder named by an environment variable; a relative one is taken from the repository root
    (kernels run in notebooks/, the shell that set it usually in the repo), never the working dir.

    A Windows path on Linux/macOS is refused: it would be relative there, and silently become a
    folder named ``C:\\Users\\...`` inside the course checkout.
    """
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    if sys.platform != "win32" and _WINDOWS_PATH.match(value):
        raise FolderError(
            f"{variable}={value} is a Windows path, but this system is not Windows",
            f"Set {variable} to a path of this system, e.g. ~/course_data (under WSL, C:\\Users\\you "
            f"is /mnt/c/Users/you), or unset it to use the default folder.")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (repo_root() or Path.home()) / path


COLAB_HOME = Path("/content/course_data")  # in Colab's Files pane; wiped when the runtime disconnects


def in_colab() -> bool:
    return "google.colab" in sys.modules


def _course_home() -> Path:
    """Where ``data/``, ``checkpoints/`` and ``results/`` go by default: the checkout; without one
    (pip-installed), ``/content/course_data`` in Colab (shown in its Files pane), else ``~/course_data``."""
    root = repo_root()
    if root is not None:
        return root
    return COLAB_HOME if in_colab() else Path.home() / "course_data"


def writable(folder: Path) -> bool:
    """Whether this process may create files in ``folder``."""
    return os.access(folder, os.W_OK | os.X_OK)


def check_data_folder(path: Path) -> None:
    """Raise ``FolderError`` when ``path`` cannot be the data folder: the course writes there
    (downloads, the ci profile's synthetic sets, lesson 06's exports), so it must be a folder,
    or creatable, that you can write to; or a read-only folder that already holds the datasets
    (e.g. a shared copy in a lab), which the lessons only read."""
    if os.environ.get(DATA_ENV, "").strip():
        where, other = f"{DATA_ENV} points at {path}", f"Set {DATA_ENV} to another folder"
    else:
        where, other = f"The data folder {path} (the default)", f"Set {DATA_ENV} to a folder"
    existing = next(p for p in (path, *path.parents) if os.path.exists(p))  # "/" always exists
    if not existing.is_dir():
        what = (f"{where}, which is a file, not a folder" if existing == path
                else f"{where}, but {existing} is a file, not a folder")
        raise FolderError(what, f"{other} (e.g. ~/course_data; it is created when missing), or move "
                                f"the file {existing} away.")
    if not writable(existing):
        if existing == path and any(path.iterdir()):
            return  # a read-only folder that already holds datasets (e.g. a lab's shared copy): reading works
        what = (f"{where}, a folder you cannot write to" if existing == path
                else f"{where}, which does not exist and cannot be created ({existing} is not writable)")
        raise FolderError(what, f"{other} that you can write to (e.g. ~/course_data), or make "
                                f"{existing} writable: datasets are downloaded and generated there.")


def data_root(check: bool = True) -> Path:
    """Where datasets live: ``$COURSE_DATA``, else ``data/`` in the checkout (without one:
    ``~/course_data/data``, in Colab ``/content/course_data/data``), never the working directory.

    ``check``: raise ``FolderError``, saying what to do, when that is a file or not writable
    (``preflight`` reports it instead, with ``check=False``).
    """
    path = _from_env(DATA_ENV) or _course_home() / "data"
    if check:
        check_data_folder(path)
    return path


def dataset_root(root: str | Path | None) -> Path:
    """The folder a dataset function works in: ``root`` with ``~`` expanded, else ``data_root()``.

    (torchvision expands ``~`` when it downloads but not when it looks for the files, so an
    unexpanded ``"~/data"`` would download into the home folder and then search ``./~/data``.)
    """
    return Path(root).expanduser() if root is not None else data_root()


def checkpoint_dir(profile: Profile) -> Path:
    """``checkpoints/<profile>/``: a ci checkpoint never satisfies a quick or full run.

    ``$COURSE_CHECKPOINTS`` moves the folder (in Colab: a Google Drive folder survives disconnects).
    """
    return (_from_env(CHECKPOINT_ENV) or _course_home() / "checkpoints") / profile.name


def results_root() -> Path:
    """The folder that holds every lesson's results: ``$COURSE_RESULTS``, else ``results/``."""
    return _from_env(RESULTS_ENV) or _course_home() / "results"


def results_dir(profile: Profile, lesson: str) -> Path:
    """``results/<lesson>/<profile>/``, created: files a lesson writes for you to keep (masks, CSVs).

    ``$COURSE_RESULTS`` moves the ``results`` folder; ``keep_checkpoints_on_drive`` points it at Drive.
    """
    path = results_root() / lesson / profile.name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # e.g. COURSE_RESULTS names a file, or a folder you cannot write to
        raise FolderError(f"Cannot create the results folder {path} ({error.strerror or error})",
                          f"Set {RESULTS_ENV} to a folder you can write to (e.g. ~/course_results), "
                          f"or unset it to use the default.") from None
    return path


DRIVE_MOUNT = Path("/content/drive")


def keep_checkpoints_on_drive(folder: str = "course/checkpoints") -> Path:
    """In Colab: mount Google Drive and save checkpoints there (``$COURSE_CHECKPOINTS``).

    Files under ``/content`` vanish when a Colab runtime disconnects; on Drive a finished run is
    loaded again by the next session and an interrupted one resumes. Returns the folder
    (``MyDrive/<folder>``; each profile gets its own subfolder). The lessons' results
    (``$COURSE_RESULTS``) go beside it, to ``MyDrive/course/results``. Elsewhere, set
    ``COURSE_CHECKPOINTS`` yourself.
    """
    if not in_colab():
        raise RuntimeError("keep_checkpoints_on_drive() works in Google Colab only; elsewhere set the "
                           f"{CHECKPOINT_ENV} environment variable to a folder (default: checkpoints/).")
    from google.colab import drive  # only importable in Colab

    drive.mount(str(DRIVE_MOUNT))  # asks for permission the first time
    path = DRIVE_MOUNT / "MyDrive" / folder
    path.mkdir(parents=True, exist_ok=True)
    os.environ[CHECKPOINT_ENV] = str(path)
    os.environ[RESULTS_ENV] = str(path.parent / "results")
    print(f"Checkpoints are saved to and loaded from Google Drive: {path}/<profile>/ "
          f"(results: {path.parent / 'results'}/)")
    return path


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices) so runs repeat.

    ``deterministic=True`` also asks torch for deterministic kernels; on CUDA only with
    ``warn_only=True``, because several backward ops used in the course have no deterministic
    CUDA kernel and would otherwise raise.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
        torch.backends.cudnn.benchmark = False
