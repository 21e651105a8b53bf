"""What every dataset of the course shares: fixed subsets, loaders, and the size line they print.

``cifar``, ``voc`` and ``folder`` build their datasets, then come here for the same seeded subset
(``profile.train_subset``) and the same loader settings (shuffle with a seeded generator,
``drop_last`` for training, pinned memory on CUDA).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from course_utils import runtime


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
    URLs without a timeout: a stalled host would hang the cell until it is interrupted)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
