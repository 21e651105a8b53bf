"""What every dataset of the course shares: fixed subsets, loaders, the size line they print, and
downloads (``fetch``: checksum-verified, with a deadline, never leaving a partial file).

``cifar``, ``voc`` and ``folder`` build their datasets, then come here for the same seeded subset
(``profile.train_subset``) and the same loader settings (shuffle with a seeded generator,
``drop_last`` for training, pinned memory on CUDA).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from course_utils import files, progress, runtime


def subset(dataset: Dataset, size: int | None, seed: int = 0) -> Dataset:
    """A fixed random ``Subset`` of ``size`` items (the same every run), or the whole dataset."""
    if size is None or size >= len(dataset):
        return dataset
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size]
    return Subset(dataset, indices.sort().values.tolist())


def size_text(dataset: Dataset) -> str:
    """Item count for the summary line: '1,024 of 50,000' for a subset, '10,000' otherwise."""
    full = dataset.dataset if isinstance(dataset, Subset) else dataset
    return f"{len(dataset):,}" + (f" of {len(full):,}" if len(full) != len(dataset) else "")


def _too_small(train: Dataset, profile: runtime.Profile) -> str:
    """Why the training set cannot fill one batch, and the change that helps.

    Raising ``train_subset`` helps only when the profile's subset cut the set below one batch;
    when the whole set is smaller, only a smaller batch or more images can.
    """
    size, batch = len(train), profile.batch_size
    if size == 0:
        return ("The training set is empty (0 images): check that the dataset's list of images "
                "(annotation file or split list) names any.")
    cut_by_subset = isinstance(train, Subset) and profile.train_subset == size
    if cut_by_subset and len(train.dataset) >= batch:
        return (f"The training set has {size} images (train_subset={profile.train_subset} of "
                f"{len(train.dataset):,}), fewer than one batch of {batch}: raise train_subset "
                f"to at least {batch}, or lower batch_size.")
    return (f"The whole training set has only {size} images, fewer than one batch of {batch} "
            f"(training drops incomplete batches): lower batch_size to at most {size}, "
            f"or add images (or use a larger split of the dataset).")


def make_loaders(train: Dataset, test: Dataset, profile: runtime.Profile,
                 seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """(train_loader, test_loader): the training one shuffles (seeded) and drops the last batch.

    ``drop_last``: BatchNorm cannot train on a batch of one. Used by the CIFAR, VOC and folder loaders.
    """
    if len(train) < profile.batch_size:
        raise ValueError(_too_small(train, profile))
    # Workers start anew each epoch (no persistent_workers), seeded from the loader's generator:
    # the epoch's shuffle and augmentations then follow from that generator alone, which a
    # checkpoint saves, so a resumed run repeats an uninterrupted one.
    common = dict(batch_size=profile.batch_size, num_workers=profile.num_workers,
                  pin_memory=torch.cuda.is_available())
    train_loader = DataLoader(train, shuffle=True, drop_last=True,
                              generator=torch.Generator().manual_seed(seed), **common)
    return train_loader, DataLoader(test, shuffle=False, **common)


@contextlib.contextmanager
def network_timeout(seconds: float = 60.0) -> Iterator[None]:
    """Give up on a host that sends nothing for ``seconds`` (torchvision's downloads open their
    URLs without a timeout: a stalled host would hang the cell until it is interrupted). A host
    that trickles bytes defeats this; the course's own downloads use ``fetch``, which has a deadline."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


MIN_SPEED = 50_000  # bytes/s: a download that averages less (after GRACE_S) is given up
GRACE_S = 120.0  # seconds a download may take before its average speed counts
STALE_PART_S = 600.0  # a partial download untouched this long belongs to a process that died


def fetch(url: str, dest: str | Path, md5: str | None = None, sha1: str | None = None,
          min_speed: float = MIN_SPEED, grace_s: float = GRACE_S, silence_s: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` with a progress bar and check its md5 (or sha1); returns ``dest``.

    The bytes go to a ``.part`` file next to ``dest`` (``files.write_atomically``), renamed only
    once complete and verified: a failed, stopped or interrupted download leaves nothing for the next run to trip
    over. Deadline: a host that sends nothing for ``silence_s`` seconds is given up, and so is one
    that trickles (a socket timeout only notices silence): the download must average
    ``min_speed`` bytes/s once ``grace_s`` seconds have passed, i.e. it may run for at most
    ``grace_s + received / min_speed`` seconds (CIFAR-10's 170 MB: about an hour at the defaults).
    """
    if (md5 is None) == (sha1 is None):
        raise ValueError("Pass exactly one checksum: md5=... or sha1=...")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5(usedforsecurity=False) if md5 else hashlib.sha1(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "course-utils"})
    for stale in files.temporary_files(dest, ".part"):  # left by a kernel killed mid-download
        if time.time() - stale.stat().st_mtime > STALE_PART_S:  # a live download writes every second
            stale.unlink(missing_ok=True)

    def download(f) -> None:  # into files.write_atomically's temporary file; raising removes it
        start, received = time.monotonic(), 0
        with urllib.request.urlopen(request, timeout=silence_s) as response, \
                progress.bar(total=response.length, unit="B", unit_scale=True, desc=dest.name) as bar:
            while chunk := response.read1(1 << 20):  # read1: returns what has arrived, however little
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
                received += len(chunk)
                elapsed = time.monotonic() - start
                if elapsed > grace_s + received / min_speed:
                    raise TimeoutError(_too_slow(url, dest, received, elapsed, min_speed, grace_s))
        if digest.hexdigest() != (md5 or sha1):
            raise RuntimeError(f"{url} arrived with {digest.name} {digest.hexdigest()}, expected "
                               f"{md5 or sha1}: the download is incomplete or corrupt. Run it again.")

    files.write_atomically(dest, download, suffix=".part")
    return dest


def _too_slow(url: str, dest: Path, received: int, elapsed: float, min_speed: float, grace_s: float) -> str:
    """The message for a download given up at its deadline: what happened, and what to do."""
    host = urllib.parse.urlsplit(url).hostname
    return (f"{host} is too slow: {received:,} bytes in {elapsed:.0f} s, under the "
            f"{min_speed / 1000:g} kB/s that a download must average after {grace_s:g} s (its deadline), "
            f"so it was stopped and the partial file removed. Try again later, or download {url} by "
            f"hand (e.g. in a browser) into {dest.parent} and run the cell again: the file is "
            f"verified and used.")
