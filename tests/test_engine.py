"""The training engine on tiny models and TensorDatasets (CPU, seconds)."""

import dataclasses
import math
import os

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import checkpoint, engine, runtime
from course_utils.data.loading import make_loaders

CPU = torch.device("cpu")
CI = runtime.default_profile("ci")  # no amp, no progress bars, 2 epochs


def blobs(n=120, seed=0):
    """Three well separated 2-D clusters: a linearly separable classification set."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    points = centres[labels] + torch.randn(n, 2, generator=g)
    return TensorDataset(points, labels)


def classifier():
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))


def setup(seed=0, shuffle=True, epochs=2):
    """Model, loaders, optimizer and a per-step scheduler, all from one seed."""
    torch.manual_seed(seed)
    model = classifier()
    train_loader = DataLoader(blobs(), batch_size=16, shuffle=shuffle, drop_last=True)
    val_loader = DataLoader(blobs(60, seed=1), batch_size=25)  # last batch short on purpose
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1,
                                                    total_steps=epochs * len(train_loader))
    return model, train_loader, val_loader, optimizer, scheduler


def run(tmp_path, model, train_loader, val_loader, optimizer, scheduler, epochs=2, profile=CI):
    return engine.fit_or_load(model, train_loader, val_loader, name="tiny", profile=profile,
                              epochs=epochs, optimizer=optimizer, criterion=nn.CrossEntropyLoss(),
                              num_classes=3, device=CPU, scheduler=scheduler, checkpoint_dir=tmp_path)


def without_times(history):
    return {key: values for key, values in history.items() if key != "epoch_time"}


def test_tiny_model_learns_separable_data():
    model, train_loader, val_loader, optimizer, _ = setup()
    criterion = nn.CrossEntropyLoss()
    first = engine.evaluate(model, val_loader, CPU, 3, criterion=criterion, progress=False)
    stats = [engine.train_one_epoch(model, train_loader, criterion, optimizer, CPU, progress=False)
             for _ in range(4)]
    last = engine.evaluate(model, val_loader, CPU, 3, criterion=criterion, progress=False)
    assert stats[-1]["loss"] < stats[0]["loss"]
    assert stats[-1]["accuracy"] > 0.9
    assert last["loss"] < first["loss"] and last["accuracy"] > max(first["accuracy"], 0.95)
    assert set(last) >= {"loss", "accuracy", "per_class_accuracy", "confusion"}
    assert "miou" not in last  # classification
    assert int(last["confusion"].sum()) == 60  # every sample counted once, short batch included


def test_losses_are_means_over_samples_not_over_batches():
    model, *_ = setup(seed=0)
    model.eval()  # no dropout, so both passes see the same function
    data = blobs(40)
    loader = DataLoader(data, batch_size=16)  # batches of 16, 16 and 8
    criterion = nn.CrossEntropyLoss()
    with torch.no_grad():
        expected = criterion(model(data.tensors[0]), data.tensors[1]).item()
    result = engine.evaluate(model, loader, CPU, 3, criterion=criterion, progress=False)
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)
    model[2].p = 0.0  # train mode without randomness
    stats = engine.train_one_epoch(model, loader, criterion, frozen, CPU, progress=False)
    assert stats["loss"] == pytest.approx(expected, rel=1e-5)


def test_evaluate_leaves_model_in_eval_and_never_changes_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5),
                          nn.Conv2d(4, 3, 1))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}  # BN running stats included
    data = TensorDataset(torch.randn(6, 3, 8, 8), torch.randint(0, 3, (6, 8, 8)))
    engine.evaluate(model, DataLoader(data, batch_size=4), CPU, 3, progress=False)
    assert not any(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def one_hot_segmenter():
    """A 1x1 conv that predicts, for each pixel, the channel that is hot in the input."""
    model = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1) * 10)
    return model


def test_segmentation_evaluate_ignores_255():
    g = torch.Generator().manual_seed(0)
    preds = torch.randint(0, 3, (4, 6, 6), generator=g)
    images = nn.functional.one_hot(preds, 3).permute(0, 3, 1, 2).float()  # (4, 3, 6, 6)
    masks = preds.clone()
    wrong = torch.rand(masks.shape, generator=g) < 0.3
    masks[wrong] = 255  # the model is wrong exactly where the truth says "ignore"
    loader = DataLoader(TensorDataset(images, masks), batch_size=3)
    result = engine.evaluate(one_hot_segmenter(), loader, CPU, 3,
                             criterion=engine.loss_for_segmentation(), progress=False)
    assert result["accuracy"] == 1.0 and result["miou"] == 1.0
    assert result["iou"].shape == (3,)
    assert int(result["confusion"].sum()) == int((~wrong).sum())
    assert result["loss"] < 1e-3


def test_scheduler_steps_per_iteration():
    model, train_loader, *_ = setup(shuffle=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    engine.train_one_epoch(model, train_loader, nn.CrossEntropyLoss(), optimizer, CPU,
                           scheduler=scheduler, progress=False)
    steps = len(train_loader)  # 120 // 16 = 7 batches
    assert scheduler.last_epoch == steps
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5 ** steps)


class JitteredBlobs(torch.utils.data.Dataset):
    """``blobs`` with fresh random noise on every read: augmentation, drawn wherever the item is loaded."""

    def __init__(self, n=120, seed=0):
        self.points = blobs(n, seed)

    def __len__(self):
        return len(self.points)

    def __getitem__(self, i):
        point, label = self.points[i]
        return point + 0.5 * torch.randn(2), label


def course_setup(seed=0, num_workers=0, epochs=2):
    """Like ``setup``, with the lessons' loaders: their own seeded generator, workers, augmentation."""
    torch.manual_seed(seed)
    model = classifier()
    profile = dataclasses.replace(CI, num_workers=num_workers)
    train_loader, val_loader = make_loaders(JitteredBlobs(), blobs(60, seed=1), profile)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1,
                                                    total_steps=epochs * len(train_loader))
    return model, train_loader, val_loader, optimizer, scheduler


@pytest.mark.parametrize("loaders", ["plain", "course", "course, 2 workers"])
def test_resume_equals_uninterrupted(loaders, tmp_path, monkeypatch):
    """Interrupted in epoch 2 and re-run in a fresh kernel: the same history and weights.

    The course's loaders carry their own generator (rebuilt from its seed when the cell runs
    again) and draw augmentations in worker processes: both must continue, not restart."""
    if loaders == "plain":
        setup_run = setup
    else:
        workers = 2 if "workers" in loaders else 0
        setup_run = lambda seed: course_setup(seed, num_workers=workers)  # noqa: E731
    whole = run(tmp_path / "whole", *setup_run(seed=0))

    real = engine.train_one_epoch
    calls = []

    def dies_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the kernel stops during epoch 2
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "split", *setup_run(seed=0))
    monkeypatch.undo()
    partial = checkpoint.load(tmp_path / "split" / "tiny.pt")
    assert (partial["epoch"], partial["finished"]) == (1, False)

    torch.manual_seed(123)  # a fresh kernel: other random state, everything must come from the file
    model, *rest = setup_run(seed=7)
    resumed = run(tmp_path / "split", model, *rest)
    assert without_times(resumed) == without_times(whole)
    reference, *_ = setup_run(seed=0)
    reference.load_state_dict(checkpoint.load(tmp_path / "whole" / "tiny.pt")["model"])
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.equal(mine, theirs)


def test_finished_checkpoint_is_loaded_without_training(tmp_path, monkeypatch, capsys):
    trained, *rest = setup(seed=0)
    history = run(tmp_path, trained, *rest)

    def no_training(*args, **kwargs):
        raise AssertionError("train_one_epoch called although the checkpoint is finished")

    monkeypatch.setattr(engine, "train_one_epoch", no_training)
    model, *rest = setup(seed=5)
    capsys.readouterr()
    loaded = run(tmp_path, model, *rest)
    assert "Loaded the finished checkpoint" in capsys.readouterr().out
    assert loaded == history
    for mine, theirs in zip(model.parameters(), trained.parameters()):
        assert torch.equal(mine, theirs)


def test_checkpoint_of_another_plan_trains_from_scratch(tmp_path, capsys):
    run(tmp_path, *setup(seed=0), epochs=1)
    history = run(tmp_path, *setup(seed=0), epochs=2)
    out = capsys.readouterr().out
    assert "training from scratch" in out and "epochs: 1 -> 2" in out
    assert history["epoch"] == [1, 2]
    assert checkpoint.load(tmp_path / "tiny.pt")["epochs"] == 2
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("tiny.replaced-")]
    assert len(kept) == 1 and checkpoint.load(kept[0])["epochs"] == 1  # the old run is not lost
    assert kept[0].name in out


def _rerun_with(tmp_path, capsys, change):
    """Train once, then run the same cell with ``change(model, optimizer) -> (optimizer, criterion)``."""
    run(tmp_path, *setup(seed=0))
    capsys.readouterr()
    model, train_loader, val_loader, optimizer, _ = setup(seed=0)
    optimizer, criterion = change(model, optimizer)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optimizer.param_groups[0]["lr"] * 2,
                                                    total_steps=2 * len(train_loader))
    engine.fit_or_load(model, train_loader, val_loader, name="tiny", profile=CI, epochs=2, optimizer=optimizer,
                       criterion=criterion, num_classes=3, device=CPU, scheduler=scheduler, checkpoint_dir=tmp_path)
    return capsys.readouterr().out


@pytest.mark.parametrize("change, expected", [
    (lambda model, opt: (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4),
                         nn.CrossEntropyLoss()), "weight_decay: 0 -> 0.0005"),
    (lambda model, opt: (opt, nn.CrossEntropyLoss(label_smoothing=0.1)), "criterion.label_smoothing: 0.0 -> 0.1"),
    (lambda model, opt: (torch.optim.Adam(model.parameters(), lr=0.05), nn.CrossEntropyLoss()),
     "optimizer: SGD -> Adam"),
])
def test_a_changed_recipe_is_not_answered_by_the_old_checkpoint(tmp_path, capsys, change, expected):
    out = _rerun_with(tmp_path, capsys, change)
    assert "comes from another plan" in out and expected in out
    assert "Loaded the finished" not in out


def test_a_changed_peak_learning_rate_trains_again(tmp_path, capsys):
    run(tmp_path, *setup(seed=0))
    model, train_loader, val_loader, optimizer, _ = setup(seed=0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=2 * len(train_loader))
    capsys.readouterr()
    run(tmp_path, model, train_loader, val_loader, optimizer, scheduler)
    out = capsys.readouterr().out
    assert "comes from another plan" in out and "max_lr: 0.1 -> 0.2" in out


def test_a_changed_profile_setting_trains_again(tmp_path, capsys):
    run(tmp_path, *setup(seed=0))
    capsys.readouterr()
    run(tmp_path, *setup(seed=0), profile=dataclasses.replace(CI, image_size=64))
    assert "data.image_size: 32 -> 64" in capsys.readouterr().out


def test_rerunning_the_cell_after_training_still_loads(tmp_path, capsys, monkeypatch):
    """The same optimizer and scheduler, already stepped by the fit, are still the same plan."""
    model, train_loader, val_loader, optimizer, scheduler = setup(seed=0)
    run(tmp_path, model, train_loader, val_loader, optimizer, scheduler)
    assert optimizer.param_groups[0]["lr"] != optimizer.param_groups[0]["initial_lr"]  # the schedule moved
    monkeypatch.setattr(engine, "train_one_epoch", lambda *a, **k: pytest.fail("trained again"))
    capsys.readouterr()
    run(tmp_path, model, train_loader, val_loader, optimizer, scheduler)
    assert "Loaded the finished checkpoint" in capsys.readouterr().out


def _without_new_plan_keys(state):
    del state["plan"]["train_size"], state["plan"]["criterion"]["weight"]  # an older plan lacks both


def test_a_checkpoint_written_by_an_older_course_still_loads(tmp_path, capsys, monkeypatch):
    """Plan keys added later (train_size, the loss's weight) are no difference: the run still loads."""
    history = run(tmp_path, *setup(seed=0))
    state = checkpoint.load(tmp_path / "tiny.pt")
    _without_new_plan_keys(state)
    checkpoint.save(tmp_path / "tiny.pt", **state)
    monkeypatch.setattr(engine, "train_one_epoch", lambda *a, **k: pytest.fail("trained again"))
    capsys.readouterr()
    assert run(tmp_path, *setup(seed=3)) == history
    assert "Loaded the finished checkpoint" in capsys.readouterr().out


@pytest.mark.parametrize("older", ["no plan", "no structure"])
def test_a_checkpoint_that_does_not_record_the_model_and_data_is_another_experiment(older, tmp_path, capsys):
    """Issue 18.3: without the model's structure and the data's transforms an old run cannot show it
    answers this experiment: it is set aside (kept) and the run trains, saying why."""
    run(tmp_path, *setup(seed=0))
    state = checkpoint.load(tmp_path / "tiny.pt")
    if older == "no plan":
        del state["plan"]  # written before plans were recorded
    else:
        del state["plan"]["structure"], state["plan"]["transforms"]
    checkpoint.save(tmp_path / "tiny.pt", **state)
    capsys.readouterr()
    history = run(tmp_path, *setup(seed=3))
    out = capsys.readouterr().out
    assert history.outcome == "trained" and history.replaced is not None and history.replaced.is_file()
    assert "structure and transforms: not recorded (the checkpoint comes from an older version" in out
    assert "training from scratch" in out and "Loaded the finished" not in out


def test_another_dataset_of_the_same_batch_count_trains_again(tmp_path, capsys):
    run(tmp_path, *setup(seed=0))
    model, train_loader, val_loader, optimizer, scheduler = setup(seed=0)
    other = DataLoader(blobs(125), batch_size=16, shuffle=True, drop_last=True)  # 7 batches, like blobs(120)
    assert len(other) == len(train_loader)
    capsys.readouterr()
    run(tmp_path, model, other, val_loader, optimizer, scheduler)
    assert "train_size: 120 -> 125" in capsys.readouterr().out




def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    real_save, saves = torch.save, []

    def dies_in_second_save(obj, f, *args, **kwargs):
        saves.append(1)
        real_save(obj, f, *args, **kwargs)
        if len(saves) == 2:
            f.truncate(50)
            raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_in_second_save)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, *setup(seed=0))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt"]
    state = checkpoint.load(tmp_path / "tiny.pt")
    assert state["epoch"] == 1 and not state["finished"] and state["profile"] == "ci"


def test_history_is_a_plain_dict_of_lists(tmp_path, capsys):
    history = run(tmp_path, *setup(seed=0))
    assert set(history) == set(engine.HISTORY_KEYS)
    assert all(isinstance(v, list) and len(v) == 2 for v in history.values())
    assert history["epoch"] == [1, 2]
    assert all(isinstance(x, float) for key in history if key != "epoch" for x in history[key])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" |")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]


def test_progress_false_prints_no_tqdm_output(tmp_path, capsys):
    run(tmp_path / "quiet", *setup(seed=0))
    assert capsys.readouterr().err == ""
    run(tmp_path / "bars", *setup(seed=0), profile=dataclasses.replace(CI, progress=True))
    assert "epoch 1 train" in capsys.readouterr().err  # the positive control: bars do go to stderr


def test_train_more_continues_the_history(tmp_path, capsys):
    model, train_loader, val_loader, optimizer, scheduler = setup(seed=0)
    history = run(tmp_path, model, train_loader, val_loader, optimizer, scheduler)
    more = engine.train_more(model, train_loader, val_loader, history=history, optimizer=optimizer,
                             criterion=nn.CrossEntropyLoss(), device=CPU, num_classes=3, lr=0.01,
                             profile=CI)
    assert more["epoch"] == [1, 2, 3] and more["lr"][-1] == 0.01
    assert history["epoch"] == [1, 2]  # the caller's history is not modified
    assert checkpoint.load(tmp_path / "tiny.pt")["epoch"] == 2  # the fit checkpoint is kept


def test_train_more_keeps_discriminative_learning_rates(capsys):
    model, train_loader, val_loader, *_ = setup(seed=0)
    optimizer = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[3].parameters()}], lr=0.1)
    common = dict(history=engine.new_history(), optimizer=optimizer, criterion=nn.CrossEntropyLoss(), device=CPU,
                  num_classes=3, profile=CI)
    engine.train_more(model, train_loader, val_loader, lr=[1e-4, 1e-3], **common)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, 1e-3]
    engine.train_more(model, train_loader, val_loader, lr=0.01, **common)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.01]
    with pytest.raises(ValueError, match="3 rates for the optimizer's 2 parameter groups"):
        engine.train_more(model, train_loader, val_loader, lr=[1, 2, 3], **common)


def test_segmentation_fit_records_miou(capsys):
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 3, (8, 6, 6), generator=g)
    images = nn.functional.one_hot(masks, 3).permute(0, 3, 1, 2).float()
    loader = DataLoader(TensorDataset(images, masks), batch_size=4)
    model = nn.Conv2d(3, 3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    history = engine.fit(model, loader, loader, epochs=2, optimizer=optimizer,
                         criterion=engine.loss_for_segmentation(), device=CPU, num_classes=3, profile=CI)
    assert len(history["val_miou"]) == 2
    assert "miou" in capsys.readouterr().out


def test_wrong_shaped_batch_fails_with_both_shapes():
    data = TensorDataset(torch.randn(2, 3, 8, 8), torch.zeros(2, 6, 6, dtype=torch.long))
    model = nn.Conv2d(3, 3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8\).*\(2, 6, 6\)"):
        engine.train_one_epoch(model, DataLoader(data, batch_size=2), engine.loss_for_segmentation(),
                               optimizer, CPU, progress=False)
    with pytest.raises(ValueError, match="outputs 3 classes, num_classes is 21"):
        engine.evaluate(model, DataLoader(TensorDataset(torch.randn(2, 3, 8, 8),
                                                        torch.zeros(2, 8, 8, dtype=torch.long))),
                        CPU, 21, progress=False)


def test_model_on_another_device_is_a_clear_error():
    model = nn.Linear(2, 3, device="meta")
    with pytest.raises(RuntimeError, match="model.to"):
        engine.evaluate(model, DataLoader(blobs(6)), CPU, 3, progress=False)


def test_predict_returns_preds_and_targets():
    preds_in = torch.randint(0, 3, (5, 4, 4))
    images = nn.functional.one_hot(preds_in, 3).permute(0, 3, 1, 2).float()
    loader = DataLoader(TensorDataset(images, preds_in), batch_size=2)
    preds, targets = engine.predict(one_hot_segmenter(), loader, CPU)
    assert preds.shape == (5, 4, 4) and torch.equal(preds, preds_in) and torch.equal(targets, preds_in)


def test_amp_is_off_on_cpu():
    assert engine.amp_dtype(CPU, amp=True) is None
    assert engine.make_scaler(CPU, amp=True) is None


def _train_and_evaluate(images, targets, num_classes=3):
    """Run ``train_one_epoch`` and ``evaluate`` on one batch; return the two errors' messages."""
    model = nn.Conv2d(3, num_classes, 1) if images.dim() == 4 else nn.Linear(images.shape[1], num_classes)
    loader = DataLoader(TensorDataset(images, targets), batch_size=len(images))
    criterion = nn.CrossEntropyLoss()  # ignore_index -100, as in a lesson that forgot the 255 border
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    messages = []
    for call in (lambda: engine.train_one_epoch(model, loader, criterion, optimizer, CPU, progress=False),
                 lambda: engine.evaluate(model, loader, CPU, num_classes, criterion=criterion, progress=False)):
        with pytest.raises(ValueError) as error:
            call()
        messages.append(str(error.value))
    return messages


def test_uint8_images_are_a_clear_error():
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    for message in _train_and_evaluate(images, torch.zeros(2, 4, 4, dtype=torch.long)):
        assert "must be floating point, got torch.uint8" in message and "ToDtype" in message


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8])
def test_targets_that_are_not_int64_are_a_clear_error(dtype):
    masks = torch.zeros(2, 4, 4, dtype=dtype)
    for message in _train_and_evaluate(torch.randn(2, 3, 4, 4), masks):
        assert f"must be int64 (torch.long) class indices, got {dtype}" in message


def test_voc_void_255_without_ignore_index_points_to_loss_for_segmentation():
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    masks[:, 0] = 255  # VOC's border, and a plain nn.CrossEntropyLoss() (ignore_index=-100)
    for message in _train_and_evaluate(torch.randn(2, 3, 4, 4), masks, num_classes=21):
        assert "Targets hold [255]" in message and "void border" in message
        assert "engine.loss_for_segmentation()" in message


def test_a_label_beyond_the_models_classes_is_a_clear_error():
    labels = torch.tensor([0, 7])
    for message in _train_and_evaluate(torch.randn(2, 2), labels, num_classes=3):
        assert "Targets hold [7]" in message and "model outputs 3 classes" in message


def test_ignored_labels_pass_the_label_check():
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    masks[:, 0] = 255
    images, model = torch.randn(2, 3, 4, 4), nn.Conv2d(3, 3, 1)
    loader = DataLoader(TensorDataset(images, masks), batch_size=2)
    criterion, optimizer = engine.loss_for_segmentation(), torch.optim.SGD(model.parameters(), lr=0.1)
    engine.train_one_epoch(model, loader, criterion, optimizer, CPU, progress=False)
    engine.evaluate(model, loader, CPU, 3, criterion=criterion, progress=False)
    engine.evaluate(model, loader, CPU, 3, progress=False)  # no criterion: 255 is the metrics' ignore label
    masks = torch.where(masks == 255, -100, masks)  # nn.CrossEntropyLoss's own ignore_index
    loader = DataLoader(TensorDataset(images, masks), batch_size=2)
    engine.evaluate(model, loader, CPU, 3, criterion=nn.CrossEntropyLoss(), progress=False)


class Elsewhere(torch.Tensor):
    """Stands for a tensor on another device (a CUDA DeviceLoader's targets): ``.cpu()`` makes it plain."""

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor)


def test_predict_brings_targets_to_the_cpu():
    images = torch.randn(4, 2)
    labels = torch.tensor([0, 1, 2, 0]).as_subclass(Elsewhere)
    loader = [(images[:2], labels[:2]), (images[2:], labels[2:])]  # any iterable of batches
    _, targets = engine.predict(classifier(), loader, CPU)
    assert type(targets) is torch.Tensor and targets.device.type == "cpu"
    assert targets.tolist() == [0, 1, 2, 0]


# ---------------------------------------------------------------- faults a class of students will hit (issue 15)

def interrupt_after_steps(optimizer, steps):
    """Raise KeyboardInterrupt (a student pressing stop) right after the optimizer's ``steps``-th step."""
    count = []

    def hook(*_):
        count.append(1)
        if len(count) == steps:
            raise KeyboardInterrupt

    return optimizer.register_step_post_hook(hook)


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("rebuilt", ["nothing", "optimizer and scheduler"])
def test_rerun_after_an_interrupted_first_epoch_asks_for_the_cell_above(rebuilt, tmp_path, capsys):
    """Stopped in epoch 1, before any checkpoint: re-running only the fit cell reuses objects the
    partial epoch changed. Refused with the cell to run; nothing is written; fresh objects then give
    the uninterrupted result. (Lesson 02 builds the model a cell earlier than the optimizer.)"""
    whole = run(tmp_path / "whole", *setup(seed=0))
    model, train_loader, val_loader, optimizer, scheduler = setup(seed=0)
    hook = interrupt_after_steps(optimizer, 3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, model, train_loader, val_loader, optimizer, scheduler)
    hook.remove()
    assert "re-run the cell that builds them, then this one" in capsys.readouterr().out
    if rebuilt != "nothing":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=2 * len(train_loader))
    with pytest.raises(RuntimeError, match="Re-run the cell that builds the model, optimizer and scheduler"):
        run(tmp_path, model, train_loader, val_loader, optimizer, scheduler)
    assert list(tmp_path.glob("tiny.pt*")) == []  # no checkpoint that could not resume
    model, *rest = setup(seed=0)  # the cell above, run again
    assert without_times(run(tmp_path, model, *rest)) == without_times(whole)


def test_an_optimizer_without_state_is_still_known_as_used(tmp_path, capsys):
    """Plain SGD keeps no state and there is no scheduler: the engine remembers what it stepped."""
    model, train_loader, val_loader, _, _ = setup(seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    hook = interrupt_after_steps(optimizer, 2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, model, train_loader, val_loader, optimizer, None)
    hook.remove()
    assert not optimizer.state
    with pytest.raises(RuntimeError, match="the model's weights were changed"):
        run(tmp_path, model, train_loader, val_loader, optimizer, None)


def test_interrupted_after_a_saved_epoch_resumes_exactly_with_the_used_objects(tmp_path, capsys):
    """Stopped in epoch 3 after 2 saved epochs, then the same cell again with the same (stepped)
    objects: the checkpoint overwrites their state, so the result equals an uninterrupted run."""
    whole = run(tmp_path / "whole", *setup(seed=0, epochs=4), epochs=4)
    model, train_loader, val_loader, optimizer, scheduler = setup(seed=0, epochs=4)
    hook = interrupt_after_steps(optimizer, 2 * len(train_loader) + 3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, model, train_loader, val_loader, optimizer, scheduler, epochs=4)
    hook.remove()
    assert "run this cell again to resume" in capsys.readouterr().out
    assert checkpoint.load(tmp_path / "tiny.pt")["epoch"] == 2
    resumed = run(tmp_path, model, train_loader, val_loader, optimizer, scheduler, epochs=4)
    assert without_times(resumed) == without_times(whole)
    reference, *_ = setup(seed=0, epochs=4)
    reference.load_state_dict(checkpoint.load(tmp_path / "whole" / "tiny.pt")["model"])
    assert all(torch.equal(a, b) for a, b in zip(weights(model), weights(reference)))
    # a finished model may start another run (lesson 05 fine-tunes its warmed-up model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    engine.fit_or_load(model, train_loader, val_loader, name="stage2", profile=CI, epochs=1, optimizer=optimizer,
                       criterion=nn.CrossEntropyLoss(), num_classes=3, device=CPU, checkpoint_dir=tmp_path)


def test_a_checkpoint_of_a_run_started_on_a_stepped_scheduler_is_set_aside(tmp_path, capsys):
    """Older course versions saved such runs: OneCycleLR then failed with "Tried to step 15 times"
    on every resume, even from a fresh kernel. Now the run is set aside and trained again."""
    whole = run(tmp_path / "whole", *setup(seed=0))
    model, train_loader, val_loader, optimizer, scheduler = setup(seed=0)
    for _ in range(3):  # the 3 steps of an interrupted first epoch
        optimizer.step()
        scheduler.step()
    hook = interrupt_after_steps(optimizer, len(train_loader) + 1)
    with pytest.raises(KeyboardInterrupt):  # the old engine.fit_or_load trained on them
        engine.fit(model, train_loader, val_loader, epochs=2, optimizer=optimizer, criterion=nn.CrossEntropyLoss(),
                   device=CPU, num_classes=3, scheduler=scheduler, profile=CI, checkpoint_path=tmp_path / "tiny.pt",
                   plan=checkpoint.training_plan(model, train_loader, optimizer, nn.CrossEntropyLoss(), epochs=2,
                                                 profile=CI, scheduler=scheduler))
    hook.remove()
    assert checkpoint.load(tmp_path / "tiny.pt")["scheduler"]["last_epoch"] == 3 + len(train_loader)
    capsys.readouterr()
    history = run(tmp_path, *setup(seed=0))  # a fresh kernel
    assert "an interrupted run had already stepped" in capsys.readouterr().out
    assert without_times(history) == without_times(whole)


def test_a_diverging_run_stops_at_the_first_nan_epoch_and_saves_nothing(tmp_path, capsys):
    model, train_loader, val_loader, _, _ = setup(seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e4, momentum=0.9)
    with pytest.raises(FloatingPointError, match="lower learning rate") as error:
        engine.fit_or_load(model, train_loader, val_loader, name="tiny", profile=CI, epochs=4, optimizer=optimizer,
                           criterion=nn.CrossEntropyLoss(), num_classes=3, device=CPU, checkpoint_dir=tmp_path)
    assert "epoch 1" in str(error.value) and "Nothing was saved" in str(error.value)
    assert len(capsys.readouterr().out.splitlines()) == 1  # one epoch line, not four of "train loss nan"
    assert list(tmp_path.glob("tiny.pt*")) == []


def test_a_nan_epoch_never_overwrites_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real = engine.train_one_epoch

    def nan_in_epoch_2(*args, epoch, **kwargs):
        result = real(*args, epoch=epoch, **kwargs)
        return {**result, "loss": float("nan")} if epoch == 1 else result

    monkeypatch.setattr(engine, "train_one_epoch", nan_in_epoch_2)
    with pytest.raises(FloatingPointError, match="still holds the last good epoch"):
        run(tmp_path, *setup(seed=0))
    state = checkpoint.load(tmp_path / "tiny.pt")
    assert state["epoch"] == 1 and not state["finished"]


def test_a_finished_checkpoint_with_a_nan_loss_is_not_loaded(tmp_path, capsys):
    """An older course version saved diverged runs as finished, and the next run loaded them."""
    run(tmp_path, *setup(seed=0))
    state = checkpoint.load(tmp_path / "tiny.pt")
    state["history"]["train_loss"][-1] = float("nan")
    checkpoint.save(tmp_path / "tiny.pt", **state)
    capsys.readouterr()
    history = run(tmp_path, *setup(seed=0))
    assert "the run diverged" in capsys.readouterr().out and "Loaded" not in capsys.readouterr().out
    assert all(math.isfinite(x) for x in history["train_loss"])


def test_a_bad_label_in_a_later_batch_is_named_in_training_and_evaluation():
    points, labels = blobs(48).tensors
    labels = labels.clone()
    labels[37] = 7  # batch 3 of 16
    loader = DataLoader(TensorDataset(points, labels), batch_size=16)
    model, optimizer = classifier(), None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"Targets hold \[7\] in training batch 3 of epoch 1"):
        engine.train_one_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, CPU, progress=False)
    for criterion in (nn.CrossEntropyLoss(), None):  # without a loss it used to be dropped silently
        with pytest.raises(ValueError, match=r"Targets hold \[7\] in evaluation batch 3"):
            engine.evaluate(model, loader, CPU, 3, criterion=criterion, progress=False)


def test_a_second_trainer_of_the_same_checkpoint_is_told_and_changes_nothing(tmp_path, capsys):
    run(tmp_path, *setup(seed=0), epochs=1)
    before = (tmp_path / "tiny.pt").read_bytes()
    with checkpoint.locked(tmp_path / "tiny.pt"):  # another notebook is training "tiny"
        with pytest.raises(checkpoint.CheckpointBusyError, match=rf"pid {os.getpid()} on .*another name="):
            run(tmp_path, *setup(seed=0))
    assert (tmp_path / "tiny.pt").read_bytes() == before
    (tmp_path / "tiny.pt.0badf00d.tmp").write_bytes(b"half a checkpoint")  # from a kernel killed mid-save
    run(tmp_path, *setup(seed=0))  # the lock is free again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt", *sorted(
        p.name for p in tmp_path.glob("tiny.replaced-*"))]  # no lock or temporary file left behind


# ---- Issue 18.3: fit_or_load knows what it trained (structure, transforms) and says what it did --------
def _with_model(make_model):
    """``setup`` with another model: the same optimizer, schedule and data."""
    def changed(seed=0):
        model, train_loader, val_loader, _, _ = setup(seed=seed)
        torch.manual_seed(seed)
        model = make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=2 * len(train_loader))
        return model, train_loader, val_loader, optimizer, scheduler
    return changed


@pytest.mark.parametrize("make_model, expected", [
    (lambda: nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)),
     "line 4 '(2): Dropout(p=0.1, inplace=False)' -> '(2): Dropout(p=0.5, inplace=False)'"),
    (lambda: nn.Sequential(nn.Linear(2, 16), nn.GELU(), nn.Dropout(0.1), nn.Linear(16, 3)), "GELU"),
    (lambda: nn.Sequential(nn.Linear(2, 16), nn.Dropout(0.1), nn.ReLU(), nn.Linear(16, 3)),
     "line 3 '(1): ReLU()' -> '(1): Dropout(p=0.1, inplace=False)'"),
], ids=["dropout", "activation", "order"])
def test_a_changed_model_with_the_same_parameters_is_another_experiment(tmp_path, capsys, make_model, expected):
    """Same class, same parameter count: only the structure tells the runs apart (it was loaded before)."""
    run(tmp_path, *setup(seed=0))
    capsys.readouterr()
    history = run(tmp_path, *_with_model(make_model)())
    out = capsys.readouterr().out
    assert history.outcome == "trained" and "comes from another plan (structure: " in out and expected in out


def test_changed_augmentation_is_another_experiment(tmp_path, capsys):
    from torchvision.transforms import v2

    def loader_with(transform):
        model, _, val_loader, optimizer, scheduler = setup(seed=0)
        data = course_data(transform)
        return model, DataLoader(data, batch_size=16, shuffle=True, drop_last=True), val_loader, optimizer, scheduler

    def course_data(transform):
        class Blobs(torch.utils.data.Dataset):  # a dataset with a transform, as torchvision's are
            def __init__(self):
                self.data, self.transform = blobs(), transform

            def __len__(self):
                return len(self.data)

            def __getitem__(self, i):
                x, y = self.data[i]
                return self.transform(x), y
        return torch.utils.data.Subset(Blobs(), list(range(96)))

    run(tmp_path, *loader_with(v2.Identity()))
    capsys.readouterr()
    history = run(tmp_path, *loader_with(v2.Lambda(lambda x: x * 2)))
    out = capsys.readouterr().out
    assert history.outcome == "trained" and "transforms: transform=Identity() -> transform=Lambda(" in out


def test_fit_or_load_returns_whether_it_trained_resumed_or_loaded(tmp_path):
    first = run(tmp_path, *setup(seed=0))
    assert first.outcome == "trained" and first.checkpoint == tmp_path / "tiny.pt" and first.replaced is None
    assert isinstance(first, dict) and first["epoch"] == [1, 2]  # still the history callers use
    loaded = run(tmp_path, *setup(seed=0))
    assert loaded.outcome == "loaded" and loaded == first
    model, train_loader, val_loader, optimizer, scheduler = setup(seed=0)
    interrupt_after_steps(optimizer, len(train_loader) + 1)  # stopped in epoch 2
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "split", model, train_loader, val_loader, optimizer, scheduler)
    resumed = run(tmp_path / "split", *setup(seed=0))
    assert resumed.outcome == "resumed" and resumed["epoch"] == [1, 2]
    changed = run(tmp_path, *setup(seed=0, epochs=3), epochs=3)
    assert changed.outcome == "trained" and changed.replaced.name.startswith("tiny.replaced-")


def test_the_plan_records_structure_and_transforms_without_memory_addresses():
    from course_utils.data.device_loader import DeviceLoader
    from torchvision.transforms import v2
    model, train_loader, _, optimizer, _ = setup(seed=0)
    plan = checkpoint.training_plan(model, train_loader, optimizer, nn.CrossEntropyLoss(), epochs=1)
    assert plan["structure"] == repr(model) and plan["transforms"] is None  # a TensorDataset transforms nothing
    images = torch.zeros(8, 32, 32, 3, dtype=torch.uint8)
    device_loader = DeviceLoader(images, torch.zeros(8), batch_size=4, device="cpu", mean=(0.5,) * 3,
                                 std=(0.25,) * 3, train=True)
    described = checkpoint.data_transforms(device_loader)
    assert "random crop (zero padding 4) + horizontal flip" in described and "(0.5, 0.5, 0.5)" in described
    lambda_loader = DataLoader(torch.utils.data.Subset(_Transformed(v2.Lambda(lambda x: x)), [0]), batch_size=1)
    assert " at 0x" not in checkpoint.data_transforms(lambda_loader)


class _Transformed(torch.utils.data.Dataset):
    def __init__(self, transform):
        self.transform = transform

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return self.transform(torch.zeros(2)), 0
