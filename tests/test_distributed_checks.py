"""Lesson 08's check cells: plausible wrong answers are rejected, right ones written another way pass.

Same method as tests/test_check_cells.py (whose ``run_checks`` runs the lesson's setup, solution
and check cells with a mistake applied to the solution text).
"""

from __future__ import annotations

import pytest

from test_check_cells import run_checks

LESSON = "08_ddp.ipynb"
Q3_BODY = ("totals = torch.stack([local_sum, local_count])  # one all-reduce for both numbers\n"
           "    all_reduce_sum(totals)\n    return (totals[0] / totals[1]).item()")

# (question, the mistake: {solution text: wrong text})
MISTAKES = {
    "Q1 no padding": ("1", {"order += order[:total - num_items]": "pass"}),
    "Q1 set_epoch ignored (seed only)": ("1", {"manual_seed(seed + epoch)": "manual_seed(seed)"}),
    "Q1 contiguous chunks instead of every N-th": ("1", {
        "return order[rank:total:world_size]":
        "return order[rank * (total // world_size):(rank + 1) * (total // world_size)]"}),
    "Q1 permutation from the global generator": ("1", {"torch.randperm(num_items, generator=g)": "torch.randperm(num_items)"}),
    "Q2 learning rate not scaled": ("2", {"return effective, base_lr * effective / base_batch": "return effective, base_lr"}),
    "Q2 square-root rule": ("2", {"return effective, base_lr * effective / base_batch":
                                  "return effective, base_lr * (effective / base_batch) ** 0.5"}),
    "Q2 scaled by the process count only": ("2", {"return effective, base_lr * effective / base_batch":
                                                  "return effective, base_lr * world_size"}),
    "Q3 mean of the ranks' means": ("3", {Q3_BODY: "mean = local_sum / local_count\n    all_reduce_sum(mean)\n"
                                                   "    return (mean / 2).item()"}),
    "Q3 only the sum all-reduced": ("3", {Q3_BODY: "all_reduce_sum(local_sum)\n    return (local_sum / local_count).item()"}),
    "Q3 no all-reduce (this rank's mean)": ("3", {Q3_BODY: "return (local_sum / local_count).item()"}),
}

ALTERNATIVES = {
    "Q1 torch's own DistributedSampler": ("1", {
        "    if shuffle:\n        g = torch.Generator()":
        "    sampler = DistributedSampler(range(num_items), world_size, rank, shuffle=shuffle, seed=seed)\n"
        "    sampler.set_epoch(epoch)\n    return list(sampler)\n    if shuffle:\n        g = torch.Generator()"}),
    "Q2 another order of operations": ("2", {"return effective, base_lr * effective / base_batch":
                                             "return effective, base_lr / base_batch * batch_per_process * world_size"}),
    "Q3 two all-reduces on copies": ("3", {Q3_BODY: "s, c = local_sum.clone(), local_count.clone()\n"
                                                    "    all_reduce_sum(s)\n    all_reduce_sum(c)\n    return float(s / c)"}),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_lesson_08_checks_reject_a_mistake(name):
    question, mistake = MISTAKES[name]
    printed, stored = run_checks(LESSON, question, mistake)
    assert "PASS" in stored and "FAIL" not in stored
    assert printed != stored, f"{name}: the check cells did not notice"


@pytest.mark.parametrize("name", ALTERNATIVES)
def test_lesson_08_checks_accept_a_right_answer_written_another_way(name):
    question, rewrite = ALTERNATIVES[name]
    printed, stored = run_checks(LESSON, question, rewrite)
    assert printed == stored


@pytest.mark.parametrize("question", ["1", "2", "3"])
def test_lesson_08_solution_gives_the_stored_answers(question):
    printed, stored = run_checks(LESSON, question)
    assert printed == stored
