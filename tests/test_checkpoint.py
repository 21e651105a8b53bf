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
