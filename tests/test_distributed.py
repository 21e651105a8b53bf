"""The engine under torchrun: 2 CPU processes (gloo) train like 1 process with the same global batch.

Two real ``torchrun --standalone --nproc_per_node 2`` runs of ``tests/ddp_worker.py`` (a small
CNN WITHOUT BatchNorm: per-rank batch statistics would differ from the whole batch's), compared
with the same recipe in this process. Every wait is bounded by a timeout, so a hang fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import checkpoint, distributed
from course_utils.data.device_loader import DeviceLoader

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT = 240  # seconds for one torchrun launch on 2 loaded cores (measured: 10-25 s)
# Weights after 3 epochs (24 steps): the 2-process run all-reduces (sums) its two half-batch
# gradients, the 1-process run sums the whole batch at once: the same arithmetic in another order,
# so float32 rounding differs slightly (measured 1.2e-7). 1e-5 is two orders of magnitude above
# that and far below a real difference (a step on another batch moves weights by ~1e-2).
WEIGHT_TOLERANCE = 1e-5


def _worker():
    spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torchrun(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, distributed.TIMEOUT_ENV: "60", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(WORKER), str(out), "--batch", "16", *args],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=Path(__file__).parents[1])


def _report(out: Path, rank: int) -> dict:
    return json.loads((out / f"rank{rank}.json").read_text())


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The recipe in this process: batch 32 (= 2 ranks x 16), 3 epochs."""
    out = tmp_path_factory.mktemp("one_process")
    _worker().run(out, batch=32)
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two_processes")
    done = _torchrun(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_two_processes_train_like_one_with_the_same_global_batch(one_process, two_processes):
    one = torch.load(one_process / "weights0.pt")
    two = torch.load(two_processes / "weights0.pt")
    assert _max_difference(one, two) <= WEIGHT_TOLERANCE
    torch.manual_seed(0)  # as run() seeds before building the model
    initial = _worker().small_cnn().state_dict()  # training moved the weights far more than the tolerance
    assert _max_difference(one, initial) > 100 * WEIGHT_TOLERANCE
    assert _max_difference(two, torch.load(two_processes / "weights1.pt")) == 0  # DDP: identical ranks


def test_every_rank_reports_the_same_metrics_as_one_process(one_process, two_processes):
    rank0, rank1, single = _report(two_processes, 0), _report(two_processes, 1), _report(one_process, 0)
    assert rank0["world_size"] == 2 and rank0["outcome"] == "trained"
    assert {k: v for k, v in rank0.items() if k != "rank"} == {k: v for k, v in rank1.items() if k != "rank"}
    # all 71 validation images counted once (the shards have 36 and 35), as in one process
    assert rank0["evaluate"]["confusion"] == single["evaluate"]["confusion"]
    assert sum(map(sum, rank0["evaluate"]["confusion"])) == 71
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert rank0["history"][key] == pytest.approx(single["history"][key], abs=1e-5), key


def test_rank_0_alone_writes_a_checkpoint_of_the_plain_model(two_processes, one_process):
    state = checkpoint.load(two_processes / "tiny.pt")
    assert not any(key.startswith("module.") for key in state["model"])  # no DDP prefix: loads anywhere
    assert state["finished"] and state["epoch"] == 3
    assert state["plan"]["batch_size"] == 32  # the effective batch: 2 ranks x 16, as one process with 32
    one = checkpoint.load(one_process / "tiny.pt")
    assert checkpoint.plan_differences(one["plan"], state["plan"]) == []
    assert sorted(p.name for p in two_processes.iterdir() if p.suffix == ".pt" and "weights" not in p.name) \
        == ["tiny.pt"]  # no second checkpoint, no temporary file left


def test_a_killed_rank_stops_the_run_with_a_message_and_the_checkpoint_resumes_on_one_process(tmp_path,
                                                                                            two_processes):
    steps_per_epoch = 256 // 32
    done = _torchrun(tmp_path, "--kill-rank", "1", "--kill-after-steps", str(2 * steps_per_epoch + 1))
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "another process of this run stopped" in output and "run the same command again" in output
    state = checkpoint.load(tmp_path / "tiny.pt")
    assert state["epoch"] == 2 and not state["finished"]  # epoch 3 never finished
    resumed = _worker().run(tmp_path, batch=32)  # 1 process, the same effective batch
    assert resumed["outcome"] == "resumed" and resumed["history"]["epoch"] == [1, 2, 3]
    finished = torch.load(tmp_path / "weights0.pt")
    assert _max_difference(finished, torch.load(two_processes / "weights0.pt")) <= WEIGHT_TOLERANCE


def test_without_a_process_group_everything_is_one_process():
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    distributed.barrier()  # returns at once
    t = torch.ones(3)
    assert distributed.all_reduce_sum(t) is t and t.tolist() == [1, 1, 1]
    loader = DataLoader(TensorDataset(torch.zeros(8, 1)), batch_size=2, shuffle=True)
    model = nn.Linear(1, 1)
    assert distributed.shard(loader) is loader and distributed.wrap(model, "cpu") is model
    assert distributed.unwrap(model) is model
    with distributed.process_group():  # no torchrun variables: nothing to join
        assert not distributed.is_distributed()


def test_device_loader_shards_are_disjoint_and_train_shards_equal():
    images = torch.randint(0, 255, (11, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(11)
    common = dict(batch_size=2, device="cpu", mean=(0, 0, 0), std=(1, 1, 1))
    whole = DeviceLoader(images, labels, train=False, **common)
    parts = [whole.shard(r, 2) for r in range(2)]
    seen = [torch.cat([y for _, y in part]).tolist() for part in parts]
    assert sorted(seen[0] + seen[1]) == list(range(11)) and len(seen[0]) == 6 and len(seen[1]) == 5
    assert (len(whole), len(parts[0]), len(parts[1])) == (6, 3, 3)
    train = [DeviceLoader(images, labels, train=True, seed=3, **common).shard(r, 2) for r in range(2)]
    got = [torch.cat([y for _, y in part]).tolist() for part in train]
    assert len(got[0]) == len(got[1]) == 4 and not set(got[0]) & set(got[1])  # same order, disjoint halves


def test_train_entry_one_process_checkpoint_loads_under_torchrun(tmp_path, monkeypatch):
    """``python -m course_utils.train`` on 1 process, then ``torchrun ... -m course_utils.train`` on 2
    with the same effective batch: the 2 ranks load the 1-process checkpoint (same plan) and report
    the same test accuracy; rank 0 alone writes the results JSON."""
    from course_utils import train
    env = {"COURSE_DATA": tmp_path / "data", "COURSE_CHECKPOINTS": tmp_path / "ck", "COURSE_RESULTS": tmp_path / "res"}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    one = train.main(["--model", "vgg16", "--profile", "ci", "--epochs", "1", "--results", str(tmp_path / "one.json")])
    assert one["outcome"] == "trained" and one["world_size"] == 1
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
         "course_utils.train", "--model", "vgg16", "--profile", "ci", "--epochs", "1",
         "--results", str(tmp_path / "two.json")],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=Path(__file__).parents[1],
        env={**os.environ, distributed.TIMEOUT_ENV: "60", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    two = json.loads((tmp_path / "two.json").read_text())
    assert (two["world_size"], two["backend"], two["outcome"]) == (2, "gloo", "loaded")
    assert (two["batch_size"], two["batch_per_process"]) == (one["batch_size"], one["batch_size"] // 2)
    assert two["test_accuracy"] == one["test_accuracy"] and two["test_images"] == one["test_images"]
    assert done.stdout.count("Loaded the finished checkpoint") == 1  # rank 0 alone prints
