"""CIFAR-10 kept on the GPU: batches are cut, augmented and normalised there.

On a GPU a 32x32 image trains in microseconds, so a DataLoader that decodes, crops and copies
images one by one on the CPU leaves the GPU waiting. The whole CIFAR-10 training set is only
150 MB as uint8, so it fits on the device: each batch is gathered, randomly cropped (pad 4) and
flipped there in a few vectorised operations, then normalised in float. The augmentation is
the same as ``cifar.train_transform()`` (zero padding, then a random 32x32 crop; a horizontal
flip with probability 0.5).

``DeviceLoader`` is a drop-in for a ``DataLoader`` in ``engine.fit``: it yields
``(images, labels)`` already on the device, ``images (N, 3, 32, 32)`` float32, normalised
(channels_last on CUDA). It also runs on the CPU (that is how it is tested).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F


class DeviceLoader:
    """Batches of a uint8 image set that lives on ``device``, augmented there when ``train``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, device: torch.device | str,
                 mean: Sequence[float], std: Sequence[float], train: bool, padding: int = 4, seed: int = 0):
        """
        Args:
            images: uint8 ``(N, 32, 32, 3)`` (torchvision's ``CIFAR10.data`` layout) or ``(N, 3, H, W)``.
            labels: ``(N,)`` class indices.
            train: shuffle, drop the last partial batch, random crop + flip; else keep order, no augmentation.
        """
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"DeviceLoader expects uint8 images (N, H, W, 3) or (N, 3, H, W), "
                             f"got {images.dtype} {tuple(images.shape)}.")
        if images.shape[-1] == 3 and images.shape[1] != 3:
            images = images.permute(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
        self.device = torch.device(device)
        self.images = images.contiguous().to(self.device)  # uint8: 150 MB for CIFAR-10's 50,000
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(self.device)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels.")
        self.batch_size, self.train, self.padding = batch_size, train, padding
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.rank, self.world = 0, 1  # under torchrun: which shard of the images this process takes (see shard)
        if train and len(self.images) < batch_size:
            raise ValueError(f"{len(self.images)} training images, fewer than one batch of {batch_size}.")

    def __repr__(self) -> str:
        """What the batches go through (``checkpoint.training_plan`` records it as the data's transforms).

        Not the batch size: the plan records the effective batch itself, and a process's share of
        it changes when the same run moves between 1 and N processes (torchrun)."""
        augment = f"random crop (zero padding {self.padding}) + horizontal flip, " if self.train else ""
        mean, std = (tuple(round(x, 4) for x in t.flatten().tolist()) for t in (self.mean, self.std))
        return f"DeviceLoader({len(self.images)} images: {augment}normalize {mean} {std})"

    def shard(self, rank: int, world: int) -> "DeviceLoader":
        """A copy that yields only every ``world``-th image of each epoch's order, from ``rank`` on.

        ``distributed.shard`` calls it under torchrun. Every rank draws the same order (same seed),
        so the shards are disjoint; a training shard is cut to the same length on every rank.
        """
        part = copy.copy(self)
        part.rank, part.world = rank, world
        return part

    def _size(self) -> int:
        """Images this process sees per epoch: all of them, or its shard's."""
        n = len(self.images)
        if self.world == 1:
            return n
        return n // self.world if self.train else len(range(self.rank, n, self.world))

    def __len__(self) -> int:
        n = self._size()
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.images)
        order = (torch.randperm(n, device=self.device, generator=self.generator) if self.train
                 else torch.arange(n, device=self.device))
        if self.world > 1:  # under torchrun: this rank's shard of the same order
            order = order[self.rank::self.world][:self._size()]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            images = self.images[index]  # (B, 3, H, W) uint8, on the device
            if self.train:
                images = self.augment(images)
            yield self.normalize(images), self.labels[index]

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """Random crop after zero padding, then random horizontal flip, for the whole batch at once."""
        b, c, h, w = images.shape
        p = self.padding
        padded = F.pad(images, (p, p, p, p))  # (B, 3, H + 2p, W + 2p), zeros as RandomCrop(padding=4)
        dy = torch.randint(0, 2 * p + 1, (b,), device=self.device, generator=self.generator)
        dx = torch.randint(0, 2 * p + 1, (b,), device=self.device, generator=self.generator)
        rows = (dy[:, None] + torch.arange(h, device=self.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=self.device))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(b, device=self.device)[:, None, None, None]
        channel = torch.arange(c, device=self.device)[None, :, None, None]
        crops = padded[batch, channel, rows, cols]  # one gather: (B, 3, H, W)
        flip = torch.rand(b, device=self.device, generator=self.generator) < 0.5
        return torch.where(flip[:, None, None, None], crops.flip(-1), crops)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() / 255 - self.mean) / self.std  # (B, 3, H, W) float32
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x
