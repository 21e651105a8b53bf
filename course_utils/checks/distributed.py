"""Checks of lesson 08 (several GPUs with DDP): which images each rank sees, the effective batch and
its learning rate, and metrics added up over the ranks.

They run in the notebook's one process: ``check_shard_indices`` compares with torch's own
``DistributedSampler``; ``check_global_mean`` runs the student's function on several simulated
ranks (threads) whose ``all_reduce_sum`` adds up what every rank passes in, as a process group does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch.utils.data import DistributedSampler

from course_utils.checks.verdicts import check_equal

# (num_items, world_size, shuffle, seed, epoch): even and uneven splits, 2 and 3 ranks, epochs 0 and 1
SHARD_CASES = [(8, 2, False, 0, 0), (10, 3, False, 0, 0), (10, 3, True, 0, 0), (10, 3, True, 0, 1),
               (11, 4, True, 7, 2)]


def _sampler_indices(num_items: int, world_size: int, rank: int, shuffle: bool, seed: int, epoch: int) -> list[int]:
    sampler = DistributedSampler(range(num_items), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def check_shard_indices(shard_indices: Callable) -> None:
    """``shard_indices(num_items, world_size, rank, shuffle, seed, epoch)`` against DistributedSampler."""
    for n, world, shuffle, seed, epoch in SHARD_CASES:
        got = [[int(i) for i in shard_indices(n, world, rank, shuffle, seed, epoch)] for rank in range(world)]
        expected = [_sampler_indices(n, world, rank, shuffle, seed, epoch) for rank in range(world)]
        name = f"{n} items on {world} ranks, shuffle={shuffle}, seed {seed}, epoch {epoch}"
        check_equal("same as DistributedSampler" if got == expected else got,
                    "same as DistributedSampler", name)
    a = shard_indices(10, 2, 0, True, 0, 0)
    b = shard_indices(10, 2, 0, True, 0, 1)
    check_equal("differs" if list(a) != list(b) else "same order", "differs", "another epoch, another order")


def check_effective_batch(effective_batch_and_lr: Callable) -> None:
    """``effective_batch_and_lr(batch_per_process, world_size, base_lr, base_batch)`` -> (batch, lr)."""
    cases = [(64, 1, 0.1, 64), (64, 2, 0.1, 64), (32, 8, 0.1, 128), (128, 4, 0.05, 256)]
    for batch, world, base_lr, base_batch in cases:
        got_batch, got_lr = effective_batch_and_lr(batch, world, base_lr, base_batch)
        expected_lr = base_lr * batch * world / base_batch
        name = f"{world} x {batch} images, {base_lr} at batch {base_batch}"
        lr_ok = abs(float(got_lr) - expected_lr) <= 1e-9 * expected_lr
        check_equal((int(got_batch), "scaled rate right" if lr_ok else f"lr {got_lr}"),
                    (batch * world, "scaled rate right"), name)


def _simulate(global_mean: Callable, sums: list[float], counts: list[int]) -> list[object]:
    """Run ``global_mean`` on ``len(sums)`` threads, each a rank, with an all_reduce_sum shared by them."""
    world = len(sums)
    barrier = threading.Barrier(world, timeout=10)
    lock = threading.Lock()
    box: dict[int, list[torch.Tensor]] = {}  # call number -> the tensors the ranks passed in
    results: list[object] = [None] * world
    counter = threading.local()  # each rank's own count of its calls
    errors: list[Exception] = []

    def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
        calls = getattr(counter, "calls", 0)
        counter.calls = calls + 1
        with lock:
            box.setdefault(calls, []).append(tensor.clone())
        barrier.wait()  # every rank has passed its tensor in
        total = torch.stack(box[calls]).sum(0)
        barrier.wait()  # every rank has read the total
        tensor.copy_(total)
        return tensor

    def rank(r: int) -> None:
        try:
            local_sum = torch.tensor(sums[r], dtype=torch.float64)
            local_count = torch.tensor(counts[r], dtype=torch.float64)
            results[r] = float(global_mean(local_sum, local_count, all_reduce_sum))
        except threading.BrokenBarrierError:
            results[r] = "ranks called all_reduce_sum a different number of times"
        except Exception as error:  # raised again below, in the notebook's thread (checks.question reports it)
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,), daemon=True) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    if errors:
        raise errors[0]
    return results


def check_global_mean(global_mean: Callable) -> None:
    """``global_mean(local_sum, local_count, all_reduce_sum)``: the mean over all ranks' images, on every rank."""
    for sums, counts in [([10.0, 20.0], [5, 5]), ([12.0, 3.0, 1.0], [6, 3, 1]), ([0.0, 9.0], [4, 2])]:
        results = _simulate(global_mean, sums, counts)
        expected = sum(sums) / sum(counts)
        name = f"{len(sums)} ranks with {counts} images"
        same = all(isinstance(x, float) for x in results) and len(set(results)) == 1
        if not same:
            check_equal(results, "the same mean on every rank", name)
        else:
            ok = abs(results[0] - expected) <= 1e-9 * max(1.0, abs(expected))
            check_equal("global mean right" if ok else f"{results[0]:.4f} (mean of the rank means?)",
                        "global mean right", name)
