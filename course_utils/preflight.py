"""Preflight: is this machine ready for the course? (Taught in 00_setup.)

``preflight.run(profile)`` checks the platform, package versions against the tested range,
the device, the data folder (``COURSE_DATA``: a writable folder), memory and disk, the
DataLoader worker choice, the datasets (with checksums) and a duplicate OpenMP runtime. It
prints one line per check, ``ok`` or ``PROBLEM`` followed by the fix, and returns the problems
so a script can act on them.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from course_utils import runtime

DIST_NAME = "course-utils"
TESTED_RANGES = {"torch": ">=2.11,<2.15", "torchvision": ">=0.26,<0.30"}  # as in pyproject.toml
MIN_RAM_GIB = 4
MIN_DISK_GIB = {"full": 4.0, "quick": 4.0, "ci": 0.2}  # VOC's tar is 2 GB and unpacks to ~2 GB


@dataclass
class Finding:
    """One preflight line: what was checked, whether it is fine, and how to fix it if not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        line = f"{'ok     ' if self.ok else 'PROBLEM'} {self.name}: {self.detail}"
        return line if self.ok or not self.fix else f"{line}\n        fix: {self.fix}"


def tested_ranges() -> dict[str, str]:
    """The torch/torchvision ranges from the installed package metadata (pyproject.toml)."""
    try:
        requirements = [Requirement(r) for r in importlib.metadata.requires(DIST_NAME) or []]
    except importlib.metadata.PackageNotFoundError:
        return dict(TESTED_RANGES)
    found = {r.name: str(r.specifier) for r in requirements if r.name in TESTED_RANGES and not r.marker}
    return {**TESTED_RANGES, **found}


def check_python() -> Finding:
    ok = sys.version_info >= (3, 10)
    return Finding("python", ok, f"{platform.python_version()} on {platform.system()} {platform.machine()}",
                   "install Python 3.10 or newer (conda env create -f environment.yml)")


def check_versions() -> list[Finding]:
    import torchvision

    findings = []
    for name, module in (("torch", torch), ("torchvision", torchvision)):
        version = Version(module.__version__.split("+")[0])
        spec = tested_ranges()[name]
        findings.append(Finding(name, version in SpecifierSet(spec), f"{module.__version__} (tested: {spec})",
                                "pip install -c constraints.txt torch torchvision (the tested pair)"))
    try:  # a torchvision built for another torch fails on its compiled operators
        torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
        findings.append(Finding("torch/torchvision pair", True, "compiled operators load"))
    except Exception as error:  # noqa: BLE001 - any failure here means a mismatched pair
        findings.append(Finding("torch/torchvision pair", False, f"{type(error).__name__}: {error}",
                                "reinstall both together: pip install -c constraints.txt torch torchvision"))
    return findings


def check_device(profile: runtime.Profile) -> Finding:
    device = runtime.pick_device()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        return Finding("device", True, f"CUDA {props.name}, {props.total_memory / 2**30:.0f} GiB")
    hint = runtime.gpu_hint(profile)
    detail = "Apple MPS" if device.type == "mps" else "CPU only (no CUDA GPU visible)"
    return Finding("device", not hint, detail, hint)


def _ram_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # Windows has no sysconf
        return None


def check_data_folder(path: Path | None = None) -> Finding:
    """The data folder (``COURSE_DATA``) must be a folder you can write to: downloads and the ci
    profile's synthetic sets go there."""
    try:
        path = path if path is not None else runtime.data_root(check=False)
        runtime.check_data_folder(path)
    except runtime.FolderError as error:  # a file, read-only, or a Windows path on Linux/macOS
        return Finding("data folder", False, error.what, error.fix)
    if path.exists() and not runtime.writable(path):
        return Finding("data folder", True, f"{path} (read-only: the datasets in it can be read, but nothing "
                                            f"can be downloaded or generated there)")
    return Finding("data folder", True, f"{path} (writable)")


def check_memory_and_disk(profile: runtime.Profile, root: Path | None = None) -> list[Finding]:
    ram = _ram_gib()
    findings = [Finding("memory", ram is None or ram >= MIN_RAM_GIB,
                        "unknown on this OS" if ram is None else f"{ram:.1f} GiB RAM",
                        "close other programs, or use COURSE_PROFILE=ci / smaller batch sizes")]
    root = root if root is not None else runtime.data_root(check=False)
    existing = next((p for p in (root, *root.parents) if p.exists()), Path.cwd())
    free = shutil.disk_usage(existing).free / 2**30
    need = MIN_DISK_GIB.get(profile.name, 4.0)
    findings.append(Finding("disk", free >= need, f"{free:.1f} GiB free at {existing} (need ~{need:g} GiB)",
                            "free some space or point COURSE_DATA at a bigger disk"))
    return findings


def check_workers(profile: runtime.Profile) -> Finding:
    reason = ("spawned workers cannot pickle classes defined in notebook cells"
              if sys.platform in ("win32", "darwin") else "fork-based workers are safe here")
    return Finding("num_workers", True, f"{profile.num_workers} DataLoader workers ({reason})")


def check_cifar10(root: Path) -> Finding:
    from course_utils.data import cifar

    folder = root / cifar.FOLDER
    if not folder.is_dir():
        return Finding("CIFAR-10", False, f"not found under {root}",
                       "lessons 01-02 download it (170 MB) on first use, or run cifar.download()")
    local = cifar.is_local_copy(root)  # e.g. a sample of real images with its own checksums.md5
    against = "its own checksums.md5 (a local copy)" if local else "torchvision's md5s"
    bad = cifar.damaged_files(root)
    if bad:
        fix = ("restore the files from where this copy came from" if local
               else f"delete {folder} and download again (cifar.download())")
        return Finding("CIFAR-10", False, f"{len(bad)} files missing or corrupt in {folder} (checked against "
                                          f"{against}): {', '.join(bad)}", fix)
    return Finding("CIFAR-10", True, f"all files match {against} ({folder})")


VOC_SPLIT_SIZES = {"train": 1464, "val": 1449}


def check_voc2012(root: Path) -> Finding:
    base = root / "VOCdevkit" / "VOC2012"
    splits = base / "ImageSets" / "Segmentation"
    if not splits.is_dir():
        return Finding("VOC 2012", False, f"not found under {root}",
                       "lessons 03-05 in quick/full need it (2 GB): run voc.download() in lesson 03")
    counts = {}
    for split, size in VOC_SPLIT_SIZES.items():
        ids = (splits / f"{split}.txt").read_text().split() if (splits / f"{split}.txt").is_file() else []
        counts[split] = (len(ids), size)
    masks = base / "SegmentationClass"
    missing = [split for split, (n, size) in counts.items() if n != size]
    n_masks = len(list(masks.glob("*.png"))) if masks.is_dir() else 0
    detail = ", ".join(f"{split} {n}/{size}" for split, (n, size) in counts.items()) + f", {n_masks} masks"
    if missing or n_masks < sum(VOC_SPLIT_SIZES.values()):
        return Finding("VOC 2012", False, f"incomplete at {base}: {detail}",
                       f"delete {root / 'VOCdevkit'} and run voc.download() again")
    return Finding("VOC 2012", True, f"{detail} ({base})")


def check_openmp(maps: Path = Path("/proc/self/maps")) -> Finding:
    """Two OpenMP runtimes in one process (e.g. conda's MKL next to pip's torch) crash or slow down."""
    if not maps.exists():
        return Finding("OpenMP", True, "not checked on this OS")
    # wheels bundle renamed copies (libgomp-a34b3233.so.1): count runtime families, not files
    families = set(re.findall(r"/(libiomp5|libgomp|libomp)[-.][^/\s]*$", maps.read_text(), flags=re.M))
    return Finding("OpenMP", len(families) <= 1, f"runtimes loaded: {', '.join(sorted(families)) or 'none'}",
                   "install torch and numpy from one source (all pip, or all conda); "
                   "do not paper over it with KMP_DUPLICATE_LIB_OK")


def run(profile: runtime.Profile, data_root: Path | None = None) -> list[Finding]:
    """Run every check, print one line each, and return the problems."""
    folder = check_data_folder(data_root)
    try:
        root = data_root or runtime.data_root(check=False)
    except runtime.FolderError:  # a Windows path on Linux/macOS: `folder` reports it
        root = None
    datasets = [check_cifar10(root), check_voc2012(root)] if root is not None else []
    findings = [check_python(), *check_versions(), check_device(profile), folder,
                *check_memory_and_disk(profile, root or Path.home()), check_workers(profile), *datasets,
                check_openmp()]
    for finding in findings:
        print(finding)
    problems = [f for f in findings if not f.ok and not (profile.synthetic and f in datasets)]
    if profile.synthetic:
        print(f"Profile {profile.name} uses synthetic stand-ins: missing real datasets are fine here.")
    print(f"{len(problems)} problem(s) found." if problems else "All checks passed.")
    return problems
