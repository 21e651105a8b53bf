"""The synthetic stand-ins: real on-disk formats, deterministic, learnable, written atomically."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from course_utils import runtime
from course_utils.data import cifar, synthetic, voc


def _load(path):
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # exactly as torchvision reads CIFAR


def test_cifar_files_have_the_real_format(synthetic_cifar_root):
    folder = synthetic_cifar_root / "cifar-10-batches-py"
    sizes = []
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        batch = _load(folder / name)
        assert set(batch) == {"batch_label", "labels", "data", "filenames"}
        assert batch["data"].dtype == np.uint8 and batch["data"].shape == (len(batch["labels"]), 3072)
        assert all(type(y) is int and 0 <= y < 10 for y in batch["labels"])
        assert len(batch["filenames"]) == len(batch["labels"])
        sizes.append(len(batch["labels"]))
    assert sum(sizes[:5]) == 512 and sizes[5] == 256
    meta = _load(folder / "batches.meta")
    assert meta["label_names"] == list(cifar.CIFAR10_CLASSES)
    assert meta["num_vis"] == 3072 and meta["num_cases_per_batch"] == sizes[0]


def test_cifar_rows_are_chw_planes(synthetic_cifar_root):
    data = _load(synthetic_cifar_root / "cifar-10-batches-py" / "test_batch")["data"]
    images = data.reshape(-1, 3, 32, 32)
    # Each class colour is strongly coloured, so the three 1024-value planes must differ.
    assert not np.array_equal(images[:, 0], images[:, 1])
    assert not np.array_equal(images[:, 0], images[:, 2])


def test_cifar_is_deterministic_given_seed(tmp_path):
    a = synthetic.write_cifar10(tmp_path / "a", num_train=20, num_test=10, seed=3)
    b = synthetic.write_cifar10(tmp_path / "b", num_train=20, num_test=10, seed=3)
    c = synthetic.write_cifar10(tmp_path / "c", num_train=20, num_test=10, seed=4)
    same = _load(a / "data_batch_1"), _load(b / "data_batch_1"), _load(c / "data_batch_1")
    assert np.array_equal(same[0]["data"], same[1]["data"]) and same[0]["labels"] == same[1]["labels"]
    assert not np.array_equal(same[0]["data"], same[2]["data"])


def test_voc_tree_has_the_real_layout(synthetic_voc_root):
    folder = synthetic_voc_root / "VOCdevkit" / "VOC2012"
    lists = {s: (folder / "ImageSets/Segmentation" / f"{s}.txt").read_text().split()
             for s in ("train", "val", "trainval")}
    assert len(lists["train"]) == 48 and len(lists["val"]) == 24
    assert not set(lists["train"]) & set(lists["val"])
    assert sorted(lists["train"] + lists["val"]) == lists["trainval"]
    assert all(re.fullmatch(r"20\d\d_\d{6}", i) for i in lists["trainval"])
    for image_id in lists["trainval"]:
        assert (folder / "JPEGImages" / f"{image_id}.jpg").is_file()
        assert (folder / "SegmentationClass" / f"{image_id}.png").is_file()


def test_voc_images_have_varied_sizes_not_multiples_of_16(synthetic_voc_root):
    folder = synthetic_voc_root / "VOCdevkit" / "VOC2012" / "JPEGImages"
    sizes = [Image.open(p).size for p in sorted(folder.glob("*.jpg"))]
    sides = {s for size in sizes for s in size}
    assert all(70 <= s <= 110 and s % 16 for s in sides)
    assert len(set(sizes)) > 10 and any(w != h for w, h in sizes)


def test_voc_masks_are_palette_pngs_with_void_borders(synthetic_voc_root):
    folder = synthetic_voc_root / "VOCdevkit" / "VOC2012" / "SegmentationClass"
    for path in sorted(folder.glob("*.png"))[:24]:
        png = Image.open(path)
        assert png.mode == "P"
        assert np.array_equal(np.array(png.getpalette()).reshape(-1, 3), voc.VOC_PALETTE.numpy())
        mask = np.array(png)
        values = set(np.unique(mask).tolist())
        assert values <= set(range(21)) | {255} and 255 in values and values - {0, 255}
        # Two different classes are never within 4 px of each other: a void band separates them.
        for k in range(1, 5):
            for a, b in ((mask[:, :-k], mask[:, k:]), (mask[:-k], mask[k:])):
                assert not ((a != b) & (a != 255) & (b != 255)).any(), path.name


def test_ensure_writes_once_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.DATA_ENV, str(tmp_path))
    assert synthetic.synthetic_root() == tmp_path / "synthetic"
    assert synthetic.ensure_cifar10() == tmp_path / "synthetic"
    assert synthetic.ensure_voc2012() == tmp_path / "synthetic"
    assert (tmp_path / "synthetic" / "VOCdevkit" / "VOC2012" / "ImageSets").is_dir()

    def fail(*args, **kwargs):
        raise AssertionError("written twice")

    monkeypatch.setattr(synthetic, "write_cifar10", fail)
    monkeypatch.setattr(synthetic, "write_voc2012", fail)
    synthetic.ensure_cifar10()
    synthetic.ensure_voc2012()


def test_interrupted_write_leaves_no_half_dataset(tmp_path, monkeypatch):
    calls = []

    def sample_then_crash(rng, sides):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real_sample(rng, sides)

    real_sample = synthetic._voc_sample
    monkeypatch.setattr(synthetic, "_voc_sample", sample_then_crash)
    with pytest.raises(KeyboardInterrupt):
        synthetic.write_voc2012(tmp_path, num_train=4, num_val=2)
    assert list((tmp_path / "VOCdevkit").iterdir()) == []  # no VOC2012, no temporary folder


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread than on two busy shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_tiny(model, train_loader, epochs, lr):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for images, targets in train_loader:
            loss = nn.functional.cross_entropy(model(images), targets, ignore_index=255)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def test_synthetic_cifar_is_learnable_by_a_tiny_cnn(synthetic_cifar_root, ci_profile, one_thread):
    torch.manual_seed(0)
    train_loader, test_loader = cifar.loaders(ci_profile, root=synthetic_cifar_root)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
                          nn.Flatten(), nn.Linear(32, 10))
    _train_tiny(model, train_loader, epochs=1, lr=3e-3)
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in test_loader)
    assert correct / 256 > 0.3  # chance is 0.1


def test_synthetic_voc_is_learnable_by_a_tiny_cnn(synthetic_voc_root, ci_profile, one_thread):
    torch.manual_seed(0)
    train_loader, val_loader = voc.loaders(ci_profile, root=synthetic_voc_root)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 21, 1))
    _train_tiny(model, train_loader, epochs=10, lr=1e-2)
    with torch.no_grad():
        pairs = [(model(x).argmax(1), m) for x, m in val_loader]
    preds, masks = torch.cat([p for p, _ in pairs]), torch.cat([m for _, m in pairs])
    objects = (masks > 0) & (masks < 255)
    assert (preds[objects] == masks[objects]).float().mean() > 0.3  # 20 object classes: chance 0.05


# ------------------------------------------------------------------ several notebooks at once
def _open_synthetic(kind: str, root: Path) -> None:
    """Open the synthetic set ``kind`` under ``root`` the way a lesson does; raise if it cannot."""
    if kind == "cifar":
        assert len(cifar.SyntheticCIFAR10(root, train=True)) == 512
        assert len(cifar.SyntheticCIFAR10(root, train=False)) == 256
    elif kind == "voc":
        dataset = torchvision.datasets.VOCSegmentation(root, image_set="train")
        for index in (0, len(dataset) - 1):
            image, mask = dataset[index]
            image.load(), mask.load()
    else:
        folder = root / synthetic.IMAGE_FOLDER
        names = [a["file_name"] for a in json.loads((folder / "train" / "annotations.json").read_text())["annotations"]]
        for name in names[:: len(names) // 8]:
            with Image.open(folder / "train" / name) as image:
                image.load()


_WRITE = {"cifar": synthetic.write_cifar10, "voc": synthetic.write_voc2012, "shapes": synthetic.write_image_folder}
_ENSURE = {"cifar": synthetic.ensure_cifar10, "voc": synthetic.ensure_voc2012, "shapes": synthetic.ensure_image_folder}


def _notebook(kind: str, root: str, seconds: float, rewrites: bool) -> str | None:
    """One notebook process: ensure the set, then open it again and again for ``seconds``.

    With ``rewrites`` it also writes the set again before each read (same content), as a second
    notebook that starts a moment later does. Returns the first error, or None."""
    root = Path(root)
    deadline = time.monotonic() + seconds
    try:
        _ENSURE[kind](root)
        while time.monotonic() < deadline:
            if rewrites:
                _WRITE[kind](root)
            _open_synthetic(kind, root)
    except Exception as error:  # reported to the test, which names it
        return f"{type(error).__name__}: {error}"
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks the test process (fast); Linux and macOS")
@pytest.mark.parametrize("kind", ["cifar", "voc", "shapes"])
def test_notebooks_started_at_once_never_lose_the_folder_they_read(kind, tmp_path):
    """Issue 15.6: three ci notebooks on an empty data folder; a parallel writer replaced the
    folder under a reader (FileNotFoundError). A folder with the same content must be kept."""
    context = multiprocessing.get_context("fork")
    jobs = [(kind, str(tmp_path), 1.0, i % 2 == 1) for i in range(6)]  # 3 readers, 3 re-writers
    with context.Pool(len(jobs)) as pool:
        errors = pool.starmap_async(_notebook, jobs).get(timeout=60)
    assert errors == [None] * len(jobs)
    _open_synthetic(kind, tmp_path)
    leftovers = [p.name for p in tmp_path.rglob(".*tmp-*")] + [p.name for p in tmp_path.rglob(".*old-*")]
    assert leftovers == []  # every temporary copy was discarded


def test_writing_the_same_content_again_keeps_the_folder(tmp_path):
    """A second writer of identical files keeps the existing folder (a reader may hold it open)."""
    folder = synthetic.write_cifar10(tmp_path, num_train=20, num_test=10)
    inode = (folder / "data_batch_1").stat().st_ino
    assert synthetic.write_cifar10(tmp_path, num_train=20, num_test=10) == folder
    assert (folder / "data_batch_1").stat().st_ino == inode  # the very same file, not a new copy
    assert sorted(p.name for p in tmp_path.iterdir()) == [synthetic.CIFAR_FOLDER]


def test_other_content_or_a_half_deleted_folder_is_replaced(tmp_path):
    """An explicit write of other content still replaces the folder; so does a damaged one."""
    folder = synthetic.write_cifar10(tmp_path, num_train=20, num_test=10, seed=0)
    first = _load(folder / "data_batch_1")["data"]
    synthetic.write_cifar10(tmp_path, num_train=20, num_test=10, seed=1)
    assert not np.array_equal(_load(folder / "data_batch_1")["data"], first)
    (folder / "data_batch_3").unlink()  # e.g. a process killed while it deleted the folder
    synthetic.ensure_cifar10(tmp_path)  # checksums.md5 is still there, but a file is missing
    assert (folder / "data_batch_3").is_file() and len(cifar.SyntheticCIFAR10(tmp_path)) == 512
    assert sorted(p.name for p in tmp_path.iterdir()) == [synthetic.CIFAR_FOLDER]


def test_ensure_voc_repairs_a_half_deleted_tree(tmp_path):
    folder = synthetic.ensure_voc2012(tmp_path) / synthetic.VOC_FOLDER
    image = next((folder / "JPEGImages").iterdir())
    image.unlink()
    synthetic.ensure_voc2012(tmp_path)
    assert image.is_file()
