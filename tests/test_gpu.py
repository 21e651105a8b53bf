"""The CUDA paths: GPU-side CIFAR batches, mixed precision, checkpoints across devices.

Skipped without a CUDA GPU (CI has none); ``benchmarks/gpu_check.sh`` runs them on the lent GPU
machine. Each one compares the GPU result with the CPU's, so it fails on a wrong GPU path.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import checkpoint, checks, engine, runtime
from course_utils.data import cifar
from course_utils.data.device_loader import DeviceLoader
from course_utils.models import vgg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def images_and_labels(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


def test_device_loader_on_cuda_normalises_like_the_cpu():
    images, labels = images_and_labels()
    common = dict(batch_size=16, mean=cifar.MEAN, std=cifar.STD, train=False)
    gpu = list(DeviceLoader(images, labels, device=CUDA, **common))
    cpu = list(DeviceLoader(images, labels, device="cpu", **common))
    assert len(gpu) == len(cpu) == 4
    for (xg, yg), (xc, yc) in zip(gpu, cpu):
        assert xg.is_cuda and xg.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(xg.cpu(), xc)
        assert torch.equal(yg.cpu(), yc)


def test_device_loader_on_cuda_crops_within_the_padded_image():
    n = 32
    images = (torch.arange(1, n + 1, dtype=torch.uint8)[:, None, None, None]).expand(n, 32, 32, 3).contiguous()
    loader = DeviceLoader(images, torch.arange(n), batch_size=n, device=CUDA, mean=(0, 0, 0), std=(1, 1, 1),
                          train=True)
    batch, index = next(iter(loader))  # image i is the constant i + 1; its "label" is i
    assert batch.shape == (n, 3, 32, 32) and batch.dtype == torch.float32 and batch.is_cuda
    values = torch.round(batch * 255).long().cpu()
    source = (index.cpu() + 1)[:, None, None, None]
    assert bool(((values == 0) | (values == source)).all())  # only the image itself or zero padding
    inside = (values != 0).sum(dim=(1, 2, 3)) // 3
    assert int(inside.min()) >= 28 * 28  # a shift of at most 4 px each way keeps >= 28x28 pixels
    assert int((inside < 32 * 32).sum()) > n // 2  # and most images were shifted
    assert sorted(index.tolist()) == list(range(n)) # a permutation, none dropped


def test_predict_from_a_device_loader_returns_cpu_tensors():
    images, labels = images_and_labels(n=40)
    loader = DeviceLoader(images, labels, batch_size=16, device=CUDA, mean=cifar.MEAN, std=cifar.STD, train=False)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)).to(CUDA)
    preds, targets = engine.predict(model, loader, CUDA)
    assert preds.device.type == targets.device.type == "cpu"
    assert preds.shape == (40,) and torch.equal(targets, labels)


@pytest.mark.parametrize("amp", [False, True])
def test_training_on_cuda_learns_like_on_the_cpu(amp):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, 8, 8, generator=g)
    y = (x[:, 0].mean(dim=(1, 2)) > 0).long()  # a learnable rule
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False, drop_last=True)
    losses = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).to(device)
        if device == "cuda":
            model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        stats = [engine.train_one_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, device, amp=amp and
                                        device == "cuda", progress=False) for _ in range(5)]
        losses[device] = [s["loss"] for s in stats]
        result = engine.evaluate(model, loader, device, num_classes=2, progress=False, amp=amp)
        assert result["accuracy"] > 0.8, (device, result["accuracy"])
    tolerance = 0.05 if amp else 0.02  # bf16/fp16 rounding; in fp32, cuDNN's convolutions use TF32 by default
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=tolerance, abs=tolerance)


def test_amp_picks_bf16_or_fp16_with_a_scaler():
    dtype = engine.amp_dtype(CUDA, amp=True)
    assert dtype in (torch.bfloat16, torch.float16)
    assert (engine.make_scaler(CUDA, amp=True) is not None) == (dtype == torch.float16)
    assert engine.amp_dtype(CUDA, amp=False) is None


def test_fit_or_load_on_cuda_resumes_and_reloads_on_the_cpu(tmp_path, capsys):
    profile = runtime.get_profile("ci", verbose=False)
    x = torch.randn(64, 3, 8, 8)
    loader = DataLoader(TensorDataset(x, torch.randint(0, 3, (64,))), batch_size=16, drop_last=True)

    def setup():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 3))
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    model, optimizer = setup()
    engine.fit_or_load(model, loader, loader, name="gpu", profile=profile, optimizer=optimizer,
                       criterion=nn.CrossEntropyLoss(), num_classes=3, device=CUDA, checkpoint_dir=tmp_path)
    again, optimizer = setup()
    capsys.readouterr()
    engine.fit_or_load(again, loader, loader, name="gpu", profile=profile, optimizer=optimizer,
                       criterion=nn.CrossEntropyLoss(), num_classes=3, device="cpu", checkpoint_dir=tmp_path)
    assert "Loaded the finished checkpoint" in capsys.readouterr().out
    for a, b in zip(model.parameters(), again.parameters()):
        torch.testing.assert_close(a.detach().cpu(), b.detach())


def test_check_same_as_on_cuda_models_prints_pass(capsys):
    mine, reference = vgg.vgg16(width_div=8).to(CUDA), vgg.vgg16(width_div=8).to(CUDA)
    checks.check_same_as(mine, reference, input_shape=(2, 3, 32, 32))
    assert capsys.readouterr().out.startswith("PASS")


@pytest.mark.parametrize("precision", ["native", "fp16"])
def test_fit_or_load_on_cuda_with_amp_resumes_like_an_uninterrupted_run(precision, synthetic_cifar_root, tmp_path,
                                                                        monkeypatch):
    """amp on, CIFAR kept on the GPU (DeviceLoader): interrupted in epoch 2, resumed, the same history.

    "native" uses what this GPU picks (bf16 on Ampere and later: no GradScaler); "fp16" forces the
    GradScaler path, whose scale must come back from the checkpoint too. The comparison is exact:
    cuDNN is made deterministic and the model avoids ops without a deterministic CUDA backward
    (adaptive pooling), so two runs differ only if the resume does.
    """
    if precision == "fp16":
        monkeypatch.setattr(engine, "amp_dtype", lambda device, amp: torch.float16 if amp else None)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    profile = dataclasses.replace(runtime.default_profile("ci"), amp=True, epochs=2)

    def setup(seed):
        torch.manual_seed(seed)  # the model's initial weights; the loader has its own seed
        model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.Dropout(0.2), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))  # (N, 10)
        train_loader, test_loader = cifar.loaders(profile, root=synthetic_cifar_root, device=CUDA)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1,
                                                        total_steps=profile.epochs * len(train_loader))
        return model, train_loader, test_loader, optimizer, scheduler

    def run(folder, model, train_loader, test_loader, optimizer, scheduler):
        return engine.fit_or_load(model, train_loader, test_loader, name="amp", profile=profile,
                                  optimizer=optimizer, criterion=nn.CrossEntropyLoss(), num_classes=10,
                                  device=CUDA, scheduler=scheduler, checkpoint_dir=folder)

    whole = run(tmp_path / "whole", *setup(seed=0))
    real, calls = engine.train_one_epoch, []

    def dies_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:  # only this patch ends here, not the precision or cuDNN ones
        patch.setattr(engine, "train_one_epoch", dies_in_epoch_2)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "split", *setup(seed=0))
    partial = checkpoint.load(tmp_path / "split" / "amp.pt")
    assert (partial["epoch"], partial["finished"]) == (1, False)
    assert (partial["scaler"] is not None) == (engine.make_scaler(CUDA, amp=True) is not None)
    if precision == "fp16":
        assert partial["scaler"] is not None  # the fp16 path really ran with a GradScaler

    torch.manual_seed(123)  # a fresh kernel: other random state, everything must come from the file
    model, *rest = setup(seed=7)
    assert isinstance(rest[0], DeviceLoader)
    resumed = run(tmp_path / "split", model, *rest)
    for key in whole:  # every value of every epoch, except the seconds it took
        assert key == "epoch_time" or resumed[key] == whole[key], key
    reference = setup(seed=0)[0]
    reference.load_state_dict(checkpoint.load(tmp_path / "whole" / "amp.pt")["model"])
    for mine, theirs in zip(model.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(mine.cpu(), theirs)  # BatchNorm's running statistics included
