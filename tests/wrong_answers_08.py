"""Lesson 08's check cells: plausible wrong answers and right ones written another way.

``test_check_cells`` runs these tables with its harness (the lesson's setup, solution and check
cells, with the text replacement applied to the solution): every mistake must print a FAIL line,
every alternative the stored answer.
"""

from __future__ import annotations

LESSON = "08_ddp.ipynb"
Q3_BODY = ("totals = torch.stack([local_sum, local_count])  # one all-reduce for both numbers\n"
           "    all_reduce_sum(totals)\n    return (totals[0] / totals[1]).item()")

# (lesson, question, the mistake: {solution text: wrong text})
MISTAKES = {
    "08 Q1 no padding": (LESSON, "1", {"order += order[:total - num_items]": "pass"}),
    "08 Q1 set_epoch ignored (seed only)": (LESSON, "1", {"manual_seed(seed + epoch)": "manual_seed(seed)"}),
    "08 Q1 contiguous chunks instead of every N-th": (LESSON, "1", {
        "return order[rank:total:world_size]":
        "return order[rank * (total // world_size):(rank + 1) * (total // world_size)]"}),
    "08 Q1 permutation from the global generator": (LESSON, "1", {"torch.randperm(num_items, generator=g)": "torch.randperm(num_items)"}),
    "08 Q2 learning rate not scaled": (LESSON, "2", {"return effective, base_lr * effective / base_batch": "return effective, base_lr"}),
    "08 Q2 square-root rule": (LESSON, "2", {
        "return effective, base_lr * effective / base_batch": "return effective, base_lr * (effective / base_batch) ** 0.5"}),
    "08 Q2 scaled by the process count only": (LESSON, "2", {
        "return effective, base_lr * effective / base_batch": "return effective, base_lr * world_size"}),
    "08 Q3 mean of the ranks' means": (LESSON, "3", {
        Q3_BODY: "mean = local_sum / local_count\n    all_reduce_sum(mean)\n    return (mean / 2).item()"}),
    "08 Q3 only the sum all-reduced": (LESSON, "3", {Q3_BODY: "all_reduce_sum(local_sum)\n    return (local_sum / local_count).item()"}),
    "08 Q3 no all-reduce (this rank's mean)": (LESSON, "3", {Q3_BODY: "return (local_sum / local_count).item()"}),
}

ALTERNATIVES = {
    "08 Q1 torch's own DistributedSampler": (LESSON, "1", {
        "    if shuffle:\n        g = torch.Generator()":
        "    sampler = DistributedSampler(range(num_items), world_size, rank, shuffle=shuffle, seed=seed)\n"
        "    sampler.set_epoch(epoch)\n    return list(sampler)\n    if shuffle:\n        g = torch.Generator()"}),
    "08 Q2 another order of operations": (LESSON, "2", {
        "return effective, base_lr * effective / base_batch":
        "return effective, base_lr / base_batch * batch_per_process * world_size"}),
    "08 Q3 two all-reduces on copies": (LESSON, "3", {Q3_BODY: "s, c = local_sum.clone(), local_count.clone()\n"
                                                    "    all_reduce_sum(s)\n    all_reduce_sum(c)\n    return float(s / c)"}),
}

