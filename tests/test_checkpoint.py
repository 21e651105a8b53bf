"""Checkpoints: round trip, atomic writes, clear errors."""

import pytest
import torch
from torch import nn

from course_utils import checkpoint, runtime


def make_state(seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()  # fills the momentum buffers
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10)
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": None, "epoch": 1, "epochs": 2,
            "history": {"epoch": [1], "train_loss": [0.5]}, "profile": "ci", "finished": False,
            "rng": {"torch": torch.get_rng_state()}}


def test_round_trip(tmp_path):
    state = make_state()
    path = checkpoint.save(tmp_path / "sub" / "run.pt", **state)  # creates the folder
    assert path == tmp_path / "sub" / "run.pt"
    loaded = checkpoint.load(path)
    assert set(loaded) == set(state)
    for key in state["model"]:
        assert torch.equal(loaded["model"][key], state["model"][key])
    momentum = loaded["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, state["optimizer"]["state"][0]["momentum_buffer"])
    assert loaded["scheduler"] == state["scheduler"]
    assert loaded["history"] == state["history"]
    assert (loaded["epoch"], loaded["profile"], loaded["finished"]) == (1, "ci", False)
    assert list(tmp_path.glob("sub/*")) == [path]  # no .tmp left behind


def test_atomic_save_keeps_old_checkpoint_on_interrupt(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    checkpoint.save(path, **make_state(seed=0))
    old = checkpoint.load(path)

    real_save = torch.save

    def interrupted_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(0)
        f.truncate(100)  # only the first bytes reached the disk
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, **make_state(seed=1))
    monkeypatch.undo()

    again = checkpoint.load(path)
    for key in old["model"]:
        assert torch.equal(again["model"][key], old["model"][key])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]  # no half file anywhere


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        checkpoint.load(tmp_path / "nothing.pt")


def test_truncated_file_error_names_the_file(tmp_path):
    path = tmp_path / "run.pt"
    checkpoint.save(path, **make_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match=r"run\.pt.*corrupt or incomplete"):
        checkpoint.load(path)


def test_training_plan_is_plain_and_survives_a_weights_only_load(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10)
    loader = torch.utils.data.DataLoader(list(range(20)), batch_size=4, drop_last=True)
    plan = checkpoint.training_plan(model, loader, optimizer, nn.CrossEntropyLoss(label_smoothing=0.1),
                                    epochs=3, profile=runtime.default_profile("ci"), scheduler=scheduler)
    assert plan["model"] == "Sequential with 26 parameters" and plan["profile"] == "ci"
    assert plan["data"] == {"image_size": 32, "train_subset": None, "width_div": 8, "amp": False}
    assert (plan["batch_size"], plan["batches_per_epoch"], plan["scheduler"]) == (4, 5, "OneCycleLR")
    assert plan["criterion"] == {"type": "CrossEntropyLoss", "ignore_index": -100, "label_smoothing": 0.1,
                                 "reduction": "mean", "weight": None}
    assert plan["train_size"] == 20
    group = plan["param_groups"][0]
    assert group["base_lr"] == pytest.approx(0.1 / 25) and group["max_lr"] == 0.1  # OneCycle's start and peak
    assert group["nesterov"] is True and group["weight_decay"] == 5e-4 and group["parameters"] == 26
    assert "lr" not in group and "momentum" not in group  # moved by the schedule: not part of the plan
    checkpoint.save(tmp_path / "p.pt", plan=plan)
    assert checkpoint.load(tmp_path / "p.pt")["plan"] == plan


def test_plan_differences_name_each_change():
    a = {"epochs": 2, "criterion": {"label_smoothing": 0.0}, "param_groups": [{"base_lr": 0.1, "fused": None}]}
    b = {"epochs": 3, "criterion": {"label_smoothing": 0.0}, "param_groups": [{"base_lr": 0.05}]}
    assert checkpoint.plan_differences(a, b) == ["epochs: 2 -> 3", "param_groups[0].base_lr: 0.1 -> 0.05"]
    assert checkpoint.plan_differences(a, a) == []
    # a key only one side has (an option added by another torch version) is no difference
    assert checkpoint.plan_differences({"epochs": 2}, {"epochs": 2, "new_option": 1}) == []


def test_plan_tells_datasets_of_the_same_batch_count_and_loss_weights_apart():
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def plan(n, criterion):
        loader = torch.utils.data.DataLoader(list(range(n)), batch_size=4, drop_last=True)
        return checkpoint.training_plan(model, loader, optimizer, criterion, epochs=1)

    plain = plan(20, nn.CrossEntropyLoss())
    weighted = plan(22, nn.CrossEntropyLoss(weight=torch.tensor([0.1, 2.0])))  # 5 batches of 4 as well
    assert plain["batches_per_epoch"] == weighted["batches_per_epoch"] == 5
    assert weighted["criterion"]["weight"] == [0.1, 2.0]  # rounded: float32's 0.1 reads 0.1
    assert checkpoint.plan_differences(plain, weighted) == ["criterion.weight: None -> [0.1, 2.0]",
                                                            "train_size: 20 -> 22"]


def test_set_aside_never_overwrites(tmp_path):
    first = []
    for seed in (0, 1):
        checkpoint.save(tmp_path / "run.pt", **make_state(seed))
        first.append(checkpoint.set_aside(tmp_path / "run.pt"))
    assert first[0] != first[1] and all(p.is_file() for p in first)
    assert not (tmp_path / "run.pt").exists()
    assert all(p.name.startswith("run.replaced-") and p.suffix == ".pt" for p in first)


# ---------------------------------------------------------------- faults a class of students will hit (issue 15)

def test_two_saves_of_one_name_at_once_never_collide(tmp_path, monkeypatch):
    """Two notebooks saving the same checkpoint: each writes its own temporary file. (With one shared
    ``run.pt.tmp`` the inner save renamed the outer one's file away: FileNotFoundError.)"""
    path, real_save, depth = tmp_path / "run.pt", torch.save, []

    def another_writer_in_the_middle(obj, f, *args, **kwargs):
        depth.append(1)
        if len(depth) == 1:  # while the first save is writing, a second process saves the same name
            checkpoint.save(path, **make_state(seed=1))
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", another_writer_in_the_middle)
    checkpoint.save(path, **make_state(seed=0))
    monkeypatch.undo()
    expected = make_state(seed=0)["model"]  # the last one to finish wins, whole
    assert all(torch.equal(checkpoint.load(path)["model"][k], v) for k, v in expected.items())
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]


class FullDisk:
    """A file whose disk fills up after ``room`` bytes."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        self.room -= len(data)
        if self.room < 0:
            raise OSError(28, "No space left on device")
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_names_the_folder_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    checkpoint.save(path, **make_state(seed=0))
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: real_save(obj, FullDisk(f, 1000), *a, **k))
    with pytest.raises(OSError) as error:
        checkpoint.save(path, **make_state(seed=1))
    monkeypatch.undo()
    message = str(error.value)
    assert error.value.errno == 28 and "No space left on device" in message
    assert str(tmp_path) in message and "run.pt is intact" in message and "COURSE_CHECKPOINTS" in message
    assert error.value.__suppress_context__  # no trace of torch's zip writer (inline_container.cc)
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]
    expected = make_state(seed=0)["model"]
    assert all(torch.equal(checkpoint.load(path)["model"][k], v) for k, v in expected.items())


def test_a_whole_model_saved_with_torch_save_is_named_not_called_corrupt(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(nn.Linear(3, 2), path)
    with pytest.raises(RuntimeError) as error:
        checkpoint.load(path)
    message = str(error.value)
    assert "a whole model (torch.nn.modules.linear.Linear) saved with torch.save(model)" in message
    assert "corrupt" not in message and "weights_only=False" in message and "trust" in message


HOLD_THE_LOCK = """
import sys, time
from course_utils import checkpoint
with checkpoint.locked(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_lock_dies_with_its_process(tmp_path):
    """A kernel killed while training leaves no lock that blocks the next run."""
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "run.pt"
    child = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(checkpoint.CheckpointBusyError, match=f"pid {child.pid} on"):
            with checkpoint.locked(path):
                pass
    finally:
        child.kill()  # SIGKILL: no clean-up runs in the child
        child.wait()
    assert (tmp_path / "run.pt.lock").exists()  # left behind, but no longer locked
    with checkpoint.locked(path):
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_folder_under_a_file_says_what_to_do(tmp_path, monkeypatch):
    """COURSE_CHECKPOINTS naming a file (e.g. a zip): the training cell says so, not a bare mkdir error."""
    archive = tmp_path / "checkpoints.zip"
    archive.write_bytes(b"PK")
    monkeypatch.setenv(runtime.CHECKPOINT_ENV, str(archive))
    path = runtime.checkpoint_dir(runtime.default_profile("ci")) / "run.pt"
    for attempt in (lambda: checkpoint.save(path, epoch=1), lambda: checkpoint.locked(path).__enter__()):
        with pytest.raises(OSError) as error:
            attempt()
        message = str(error.value)
        assert str(path.parent) in message and runtime.CHECKPOINT_ENV in message and "write to" in message


def test_a_checkpoint_folder_you_cannot_write_to_says_what_to_do(tmp_path, monkeypatch):
    """A read-only folder (faked: tests may run as root): save and the lock name it and the fix."""
    path = tmp_path / "run.pt"

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoint.files, "create_temporary", refused)
    with pytest.raises(OSError, match=f"Could not save the checkpoint run.pt in {tmp_path}.*COURSE_CHECKPOINTS"):
        checkpoint.save(path, epoch=1)
    monkeypatch.setattr(checkpoint.os, "open", refused)
    with pytest.raises(OSError, match="Could not save the checkpoint run.pt.*you can write to"):
        checkpoint.locked(path).__enter__()
