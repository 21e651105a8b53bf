"""Training on several processes (GPUs or machines) with ``torchrun`` and DistributedDataParallel.

``torchrun --nproc_per_node N script.py`` starts N copies of the same script and tells each one
who it is through environment variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``). Inside ``process_group()`` the copies form a group:

- each process (a *rank*) trains on its own shard of the data (``shard``);
- ``DistributedDataParallel`` (``wrap``) averages the gradients of all ranks after each
  ``backward()`` (an *all-reduce*), so every rank takes the same optimizer step and the weights
  stay identical: one step sees ``world_size() * batch_size`` images (the *effective* batch);
- sums (losses, confusion matrices) are added up over the ranks with ``all_reduce_sum``, so every
  rank reports the same metrics;
- only rank 0 (``is_main()``) prints and writes files; the others wait at a ``barrier()``.

Without a process group (a notebook, ``python script.py``) every function here answers for one
process (rank 0 of 1) and ``shard``/``wrap`` return what they were given: the course's
single-process code path does not change at all.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from course_utils import runtime

TIMEOUT_ENV = "COURSE_DDP_TIMEOUT"  # seconds a collective waits for a missing rank (default 600)


def is_distributed() -> bool:
    """True inside an initialised process group (e.g. a script started by torchrun)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number in the group, 0..world_size()-1 (0 without a group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes train together (1 without a group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0, the one process that prints and writes checkpoints and results."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (e.g. until rank 0 has written the checkpoint)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Add ``tensor`` up over all ranks, in place; every rank gets the total. Returns ``tensor``."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (any picklable value, e.g. a decision rank 0 took)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def launched_by_torchrun() -> bool:
    """True when torchrun (or Slurm via torchrun) started this process: it set RANK and WORLD_SIZE."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def local_network_works() -> bool:
    """True when this machine can open a TCP connection to itself (127.0.0.1), which torchrun's
    processes need to find each other. A sandbox without a network (a grader's) cannot."""
    try:
        with socket.create_server(("127.0.0.1", 0)) as server:
            with socket.create_connection(server.getsockname(), timeout=5):
                return True
    except OSError:
        return False


def device() -> torch.device:
    """This process's device. Under torchrun: ``cuda:LOCAL_RANK`` with GPUs (one GPU per process),
    else the CPU; in a single process: ``runtime.pick_device()`` (CUDA, MPS or CPU)."""
    if not is_distributed():
        return runtime.pick_device()
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


@contextmanager
def process_group(backend: str | None = None) -> Iterator[None]:
    """Join the group torchrun started for the ``with`` block, then leave it.

    ``backend``: ``"nccl"`` on GPUs (fast GPU-to-GPU all-reduce), ``"gloo"`` on CPUs (default:
    chosen by the device). Without torchrun's environment variables it does nothing, so the same
    script also runs as one plain process. A rank that waits longer than ``COURSE_DDP_TIMEOUT``
    seconds (default 600) for a missing one fails instead of hanging forever.
    """
    if not launched_by_torchrun() or is_distributed():
        yield
        return
    here = device()
    if here.type == "cuda":
        torch.cuda.set_device(here)  # before init: each process talks to its own GPU
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 600)))
    dist.init_process_group(backend or ("nccl" if here.type == "cuda" else "gloo"), timeout=timeout)
    try:
        yield
        # Every rank done with its collectives before any leaves: a rank that tears gloo down while
        # its peer still talks to it can abort the peer ("terminate called ...", seen in CI).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _lost_a_rank(error: BaseException) -> bool:
    """True for what a collective raises when another rank died mid-run (gloo: its connection closed
    or reset; nccl: a DistBackendError), as opposed to a bug in this rank's own code."""
    return isinstance(error, dist.DistError) or any(
        text in str(error) for text in ("Connection closed by peer", "Connection reset by peer", "Broken pipe"))


@contextmanager
def explain_lost_rank(checkpoint_path) -> Iterator[None]:
    """Around a distributed run: when another rank dies (killed, out of memory, a node lost), stop
    with what happened and what to do, instead of the backend's socket error."""
    try:
        yield
    except RuntimeError as error:
        if not (is_distributed() and _lost_a_rank(error)):
            raise
        raise RuntimeError(
            f"Rank {rank()} of {world_size()}: another process of this run stopped (torchrun's summary names "
            f"it and its exit code: -9 is a kill, e.g. out of memory), so this one cannot go on. The checkpoint "
            f"{checkpoint_path} holds the last completed epoch: run the same command again to resume from it "
            f"(also on another number of processes with the same effective batch).") from error


def wrap(model: nn.Module, device: torch.device | str) -> nn.Module:
    """``model`` inside DistributedDataParallel when in a group (already wrapped: as is), else ``model``.

    DDP copies rank 0's weights to every rank at construction and all-reduces gradients during
    ``backward()``. The model must already be on ``device``.
    """
    if not is_distributed() or isinstance(model, nn.parallel.DistributedDataParallel):
        return model
    device = torch.device(device)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DDP wrapper (its ``state_dict`` has no ``module.`` prefix), else ``model``.

    Checkpoints store the unwrapped model, so one trained on N processes loads on 1, and back.
    """
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class EvalShardSampler(Sampler[int]):
    """Evaluation indices ``rank, rank + world, rank + 2 * world, ...``: every image on exactly one rank.

    ``DistributedSampler`` would pad the last shard with repeated images (so all ranks have the same
    number), which would count them twice in the metrics; evaluation needs no equal shards.
    """

    def __init__(self, dataset, rank: int, world: int) -> None:
        self.indices = range(rank, len(dataset), world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def is_sharded(loader) -> bool:
    """True for a loader that ``shard`` made (or one built with a DistributedSampler)."""
    sampler = getattr(loader, "sampler", None)
    return isinstance(sampler, (DistributedSampler, EvalShardSampler)) or getattr(loader, "world", 1) > 1


def shard(loader):
    """This rank's part of ``loader`` when in a group; without a group (or already sharded), ``loader``.

    A shuffling or ``drop_last`` DataLoader (training) gets a ``DistributedSampler``: each epoch
    one permutation, seeded alike on every rank (from the loader's generator), cut into equal
    disjoint shards; ``engine.fit`` calls ``sampler.set_epoch(epoch)`` so each epoch shuffles differently. Every rank
    then runs the same number of steps. Any other (evaluation) gets ``EvalShardSampler``.
    ``batch_size`` stays the batch of ONE rank: the effective batch is ``world_size()`` times larger.
    A ``DeviceLoader`` takes every ``world_size()``-th image of its own (seeded) order.
    Shard the loaders before building a scheduler, whose steps are counted with ``len(loader)``.
    """
    if not is_distributed() or is_sharded(loader):
        return loader
    if hasattr(loader, "shard"):  # DeviceLoader: the images live on the device already
        return loader.shard(rank(), world_size())
    if not isinstance(loader, DataLoader) or loader.batch_size is None:
        raise TypeError(f"distributed.shard() takes a DeviceLoader or a DataLoader built with batch_size= "
                        f"(not a batch_sampler), got {type(loader).__name__}: give it a DistributedSampler yourself.")
    shuffled = isinstance(loader.sampler, RandomSampler)
    if shuffled or loader.drop_last:  # training: equal shards, so every rank takes the same number of steps
        generator = loader.generator
        seed = generator.initial_seed() if generator is not None else 0
        sampler = DistributedSampler(loader.dataset, num_replicas=world_size(), rank=rank(), shuffle=shuffled,
                                     seed=seed, drop_last=loader.drop_last)
    else:
        sampler = EvalShardSampler(loader.dataset, rank(), world_size())
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      generator=loader.generator, worker_init_fn=loader.worker_init_fn,
                      persistent_workers=loader.persistent_workers,
                      prefetch_factor=loader.prefetch_factor if loader.num_workers > 0 else None)


def set_epoch(loader, epoch: int) -> None:
    """Tell a sharded loader's DistributedSampler which epoch starts (its shuffle depends on it)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)

