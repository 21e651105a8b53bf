"""CIFAR-10: datasets, transforms and loaders for the classification lessons (VGG16, ResNet-50).

Real data is torchvision's ``CIFAR10``, unchanged, under ``runtime.data_root()``. The ``ci``
profile reads a small synthetic set in the same on-disk format with the same torchvision code
(``SyntheticCIFAR10``). Missing data raises with directions; it never falls back to synthetic.

Batches are ``images (N, 3, 32, 32)`` float32, normalised, and ``labels (N,)`` int64.
"""

from __future__ import annotations

import http.client
import tarfile
import urllib.error
from collections.abc import Iterable
from pathlib import Path

import torch
import torchvision
from torch.utils.data import Dataset, Subset
from torchvision.transforms import v2

from course_utils import runtime
from course_utils.constants import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from course_utils.data import synthetic
from course_utils.data.device_loader import DeviceLoader
from course_utils.data.loading import fetch, make_loaders, network_timeout, size_text, subset
from course_utils.files import md5sum

MEAN, STD = CIFAR10_MEAN, CIFAR10_STD  # per-channel statistics of the 50,000 training images
URL = torchvision.datasets.CIFAR10.url  # https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz
FOLDER = torchvision.datasets.CIFAR10.base_folder  # "cifar-10-batches-py"
ARCHIVE = torchvision.datasets.CIFAR10.filename  # "cifar-10-python.tar.gz", downloaded into the root
ARCHIVE_MD5 = torchvision.datasets.CIFAR10.tgz_md5


class LocalCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's ``CIFAR10`` reading files checked against their own ``checksums.md5``.

    For CIFAR-format folders that are not the official download: the synthetic set written by
    ``synthetic.write_cifar10``, or a sample of real images in the official layout (e.g. the
    course's 10,000-image sample). Only the expected md5s differ: ``train_list``, ``test_list``
    and ``meta`` take them from ``checksums.md5``, written with the files. They cannot be
    hard-coded, because pickle bytes change with the numpy version. Everything else, including
    torchvision's integrity check and ``_load_meta``, runs unchanged, so a damaged file is refused
    exactly as with the official data. An official download has no ``checksums.md5`` and is
    always checked against torchvision's own md5s.
    """

    def __init__(self, root: str | Path, train: bool = True, transform=None, target_transform=None):
        md5 = synthetic.read_checksums(Path(root) / self.base_folder)
        # Instance attributes shadow the class's official md5s; "missing" never matches.
        self.train_list = [[name, md5.get(name, "missing")] for name, _ in self.train_list]
        self.test_list = [[name, md5.get(name, "missing")] for name, _ in self.test_list]
        self.meta = {**self.meta, "md5": md5.get(self.meta["filename"], "missing")}
        super().__init__(root, train=train, transform=transform,
                         target_transform=target_transform, download=False)

    def download(self) -> None:
        raise RuntimeError(f"{Path(self.root) / self.base_folder} is a local CIFAR-10 copy with its own "
                           f"{synthetic.CIFAR_CHECKSUMS}, not a download: restore its files from where they came.")


class SyntheticCIFAR10(LocalCIFAR10):
    """The synthetic stand-in of the ``ci`` profile (``synthetic.write_cifar10``), read as above."""

    def download(self) -> None:
        raise RuntimeError("The synthetic CIFAR-10 is generated, not downloaded: "
                           "use synthetic.write_cifar10(root) or synthetic.ensure_cifar10().")


def is_local_copy(root: str | Path) -> bool:
    """True when ``root/cifar-10-batches-py`` has its own ``checksums.md5`` (not the official files)."""
    return (Path(root) / FOLDER / synthetic.CIFAR_CHECKSUMS).is_file()


def damaged_files(root: str | Path) -> list[str]:
    """The CIFAR-10 files under ``root`` that are missing or fail their md5, e.g. ``["data_batch_3 (md5 mismatch)"]``.

    Checked against ``checksums.md5`` for a local copy, against torchvision's md5s otherwise.
    """
    folder = Path(root) / FOLDER
    official = torchvision.datasets.CIFAR10
    expected = dict(official.train_list + official.test_list + [[official.meta["filename"], official.meta["md5"]]])
    if is_local_copy(root):
        local = synthetic.read_checksums(folder)
        expected = {name: local.get(name, "missing") for name in expected}
    problems = []
    for name, md5 in expected.items():
        if not (folder / name).is_file():
            problems.append(f"{name} (missing)")
        elif md5sum(folder / name) != md5:
            problems.append(f"{name} (md5 mismatch)")
    return problems


def train_transform() -> v2.Compose:
    """Standard CIFAR augmentation: pad-4 random crop and horizontal flip, then normalise."""
    return v2.Compose([
        v2.RandomCrop(32, padding=4),
        v2.RandomHorizontalFlip(),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),  # uint8 0..255 -> float 0..1
        v2.Normalize(MEAN, STD),
        v2.ToPureTensor(),
    ])


def eval_transform() -> v2.Compose:
    """No augmentation: to a normalised float tensor (3, 32, 32)."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(MEAN, STD), v2.ToPureTensor()])


def _how_to_get(root: Path) -> str:
    return (f"Download it once, with internet: `from course_utils.data import cifar; "
            f"cifar.download({str(root)!r})` (fetches {URL}, ~170 MB, md5-checked), "
            f"or set COURSE_PROFILE=ci to use the small synthetic stand-in.")


def open_real(root: Path, train: bool, transform, download: bool) -> torchvision.datasets.CIFAR10:
    """The real CIFAR-10 split under ``root``: torchvision's CIFAR10 (or a ``LocalCIFAR10`` copy),
    downloaded first if ``download``, with its errors turned into directions."""
    if is_local_copy(root):
        try:
            return LocalCIFAR10(root, train=train, transform=transform)
        except RuntimeError:
            raise FileNotFoundError(_damaged_message(root, "checked against its own checksums.md5")) from None
    try:
        with network_timeout():
            if download:
                _fetch_archive(root)  # with a deadline; torchvision then finds it verified and extracts it
            return torchvision.datasets.CIFAR10(root, train=train, transform=transform, download=download)
    except (urllib.error.URLError, OSError, RuntimeError, http.client.HTTPException, tarfile.TarError) as error:
        # URLError/OSError: no internet, host down or stalled (timeout), disk full; HTTPException: a
        # dropped connection; TarError: a damaged archive; RuntimeError: an md5 mismatch (of the
        # downloaded archive) or torchvision's "Dataset not found or corrupted".
        if (root / FOLDER).is_dir() and damaged_files(root):
            # The files are there but fail torchvision's md5s: say which before blaming the network.
            tried = f" (Downloading a fresh copy failed too: {error}.)" if download else ""
            raise FileNotFoundError(_damaged_message(root, "checked against torchvision's md5s") + tried) from None
        if download:
            message = f"Could not download CIFAR-10 into {root} ({error}). "
            raise RuntimeError(message + _how_to_get(root)) from None
        raise FileNotFoundError(f"CIFAR-10 not found under {root / FOLDER}. " + _how_to_get(root)) from None


def _fetch_archive(root: Path) -> None:
    """Put a verified ``cifar-10-python.tar.gz`` into ``root``, unless the extracted files are intact.

    Ours, not torchvision's download: that one has no deadline (a trickling host keeps it running
    for hours) and leaves a partial archive behind when it fails. ``fetch`` stops a too-slow host
    and removes what arrived. An archive put into ``root`` by hand is used when its md5 matches.
    """
    if not damaged_files(root):
        return
    archive = root / ARCHIVE
    if archive.is_file():
        if torchvision.datasets.utils.check_integrity(str(archive), ARCHIVE_MD5):
            return
        print(f"{archive} is incomplete or corrupt (its md5 is not {ARCHIVE_MD5}): fetching it again.")
        archive.unlink()
    fetch(URL, archive, md5=ARCHIVE_MD5)


def _damaged_message(root: Path, how: str) -> str:
    folder, archive = root / FOLDER, root / Path(URL).name
    also = f" and {archive.name}" if archive.exists() else ""
    return (f"The local CIFAR-10 files under {folder} are incomplete or corrupt ({how}): "
            f"{', '.join(damaged_files(root))}. To repair them, delete {folder}{also}, then run the cell "
            f"again with internet (cifar.download() fetches and checks a fresh copy, ~170 MB), or "
            f"copy the complete folder from a machine where it works.")


def download(root: str | Path | None = None) -> Path:
    """Download and verify the real CIFAR-10 into ``root`` (default ``runtime.data_root()``)."""
    root = runtime.dataset_root(root)
    open_real(root, train=True, transform=None, download=True)
    return root / FOLDER


def datasets(profile: runtime.Profile, root: str | Path | None = None,
             download: bool = True) -> tuple[Dataset, Dataset]:
    """(train, test) CIFAR-10 datasets for this profile, with transforms and subsets applied.

    ``profile.synthetic``: the synthetic set (root default ``synthetic.synthetic_root()``, written
    on first use there). Otherwise the real set under ``root`` (default ``runtime.data_root()``),
    downloaded when missing if ``download``.
    """
    if profile.synthetic:
        if root is None:
            root = synthetic.ensure_cifar10()
        root = Path(root)
        try:
            train = SyntheticCIFAR10(root, train=True, transform=train_transform())
            test = SyntheticCIFAR10(root, train=False, transform=eval_transform())
        except (RuntimeError, FileNotFoundError) as error:
            raise FileNotFoundError(
                f"No usable synthetic CIFAR-10 under {root / FOLDER} ({error}). Delete that folder; "
                f"synthetic.write_cifar10({str(root)!r}) writes it again.") from None
    else:
        root = runtime.dataset_root(root)
        train = open_real(root, train=True, transform=train_transform(), download=download)
        test = open_real(root, train=False, transform=eval_transform(), download=False)
    return subset(train, profile.train_subset), subset(test, profile.eval_subset)


def device_loaders(train: Dataset, test: Dataset, profile: runtime.Profile, device: torch.device | str,
                   seed: int = 0) -> tuple[DeviceLoader, DeviceLoader]:
    """(train_loader, test_loader) whose uint8 images live on ``device`` (see ``device_loader``)."""
    def raw(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        index = torch.as_tensor(dataset.indices if isinstance(dataset, Subset) else range(len(base)))
        return torch.from_numpy(base.data)[index], torch.as_tensor(base.targets)[index]

    common = dict(batch_size=profile.batch_size, device=device, mean=MEAN, std=STD, seed=seed)
    return DeviceLoader(*raw(train), train=True, **common), DeviceLoader(*raw(test), train=False, **common)


def loaders(profile: runtime.Profile, root: str | Path | None = None, download: bool = True,
            seed: int = 0, device: torch.device | str | None = None) -> tuple[Iterable, Iterable]:
    """(train_loader, test_loader) for this profile; prints one line saying which data is used.

    ``device``: pass a CUDA device to keep the images on the GPU and augment them there
    (``DeviceLoader``: the fast recipe for CIFAR on a GPU); otherwise CPU ``DataLoader`` workers.
    """
    train, test = datasets(profile, root=root, download=download)
    on_gpu = device is not None and torch.device(device).type == "cuda"
    if on_gpu:
        train_loader, test_loader = device_loaders(train, test, profile, device, seed=seed)
    else:
        train_loader, test_loader = make_loaders(train, test, profile, seed=seed)
    full = train.dataset if isinstance(train, Subset) else train
    kind = ("synthetic stand-in" if profile.synthetic else
            "real, a local copy checked against its own checksums.md5" if is_local_copy(full.root) else "real")
    where = ", kept and augmented on the GPU" if on_gpu else ""
    print(f"CIFAR-10 ({kind}): {size_text(train)} train / {size_text(test)} test images "
          f"from {Path(full.root) / FOLDER}{where}")
    return train_loader, test_loader
