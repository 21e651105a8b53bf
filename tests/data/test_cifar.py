"""CIFAR-10 datasets and loaders: torchvision reads the synthetic set; errors give directions."""

from __future__ import annotations

import dataclasses
import http.client
import pickle
import shutil
import socket
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import Subset
from torchvision.transforms import v2

from course_utils import runtime
from course_utils.data import cifar, synthetic


def test_synthetic_set_passes_torchvisions_own_checks(synthetic_cifar_root):
    train = cifar.SyntheticCIFAR10(synthetic_cifar_root, train=True)
    test = cifar.SyntheticCIFAR10(synthetic_cifar_root, train=False)
    assert isinstance(train, torchvision.datasets.CIFAR10)
    assert train._check_integrity()
    train._load_meta()  # raises if batches.meta failed its md5
    assert train.classes == list(cifar.CIFAR10_CLASSES)
    assert len(train) == 512 and len(test) == 256
    assert train.data.shape == (512, 32, 32, 3) and train.data.dtype == np.uint8
    assert set(train.targets) == set(range(10))
    image, label = train[0]
    assert isinstance(image, Image.Image) and image.size == (32, 32) and isinstance(label, int)


def test_md5s_are_computed_from_the_generated_files(synthetic_cifar_root):
    train = cifar.SyntheticCIFAR10(synthetic_cifar_root)
    folder = synthetic_cifar_root / "cifar-10-batches-py"
    for name, md5 in train.train_list + train.test_list + [[train.meta["filename"], train.meta["md5"]]]:
        assert md5 == synthetic.md5sum(folder / name)
    real = dict(torchvision.datasets.CIFAR10.train_list)
    assert all(md5 != real[name] for name, md5 in train.train_list)
    assert torchvision.datasets.CIFAR10.train_list[0][1] == "c99cafc152244af753f735de768cd75f"  # untouched


@pytest.mark.parametrize("name", ["data_batch_3", "batches.meta"])
def test_corrupted_file_is_refused(synthetic_cifar_root, tmp_path, name):
    shutil.copytree(synthetic_cifar_root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-batches-py" / name
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # one flipped byte inside the pickle
    path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="corrupted"):
        cifar.SyntheticCIFAR10(tmp_path, train=True)
    with pytest.raises(FileNotFoundError, match="write_cifar10"):
        cifar.datasets(runtime.default_profile("ci"), root=tmp_path)


def test_synthetic_set_never_downloads(synthetic_cifar_root):
    with pytest.raises(RuntimeError, match="generated, not downloaded"):
        cifar.SyntheticCIFAR10(synthetic_cifar_root).download()


def test_eval_transform_normalises_with_cifar_statistics():
    # The standard statistics of the 50,000 training images (std of the pixels, not of image means).
    assert np.allclose(cifar.MEAN, (0.4914, 0.4822, 0.4465)) and np.allclose(cifar.STD, (0.2470, 0.2435, 0.2616))
    x = cifar.eval_transform()(Image.new("RGB", (32, 32), (125, 123, 114)))  # about the mean colour
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and type(x) is torch.Tensor
    assert x.abs().max() < 0.01  # the mean colour maps to 0
    white = cifar.eval_transform()(Image.new("RGB", (32, 32), (255, 255, 255)))
    assert torch.allclose(white[:, 0, 0], torch.tensor([2.0591, 2.1265, 2.1158]), atol=1e-3)


def test_train_transform_crops_flips_and_normalises():
    steps = cifar.train_transform().transforms
    crop = next(t for t in steps if isinstance(t, v2.RandomCrop))
    assert crop.size == (32, 32) and crop.padding == [4, 4, 4, 4]
    assert any(isinstance(t, v2.RandomHorizontalFlip) for t in steps)
    image = Image.new("RGB", (32, 32), (125, 123, 114))  # about the mean colour
    torch.manual_seed(0)
    outs = [cifar.train_transform()(image) for _ in range(10)]
    assert all(o.shape == (3, 32, 32) and o.dtype == torch.float32 for o in outs)
    assert all(o[:, 4:28, 4:28].abs().max() < 0.01 for o in outs)  # normalised (shifts are <= 4 px)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])  # random: the black padding moves


def test_loader_batches_are_normalised_float_images_and_int64_labels(synthetic_cifar_root, ci_profile):
    train_loader, test_loader = cifar.loaders(ci_profile, root=synthetic_cifar_root)
    images, labels = next(iter(test_loader))
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (16,) and labels.dtype == torch.int64
    assert -3 < images.mean() < 3 and images.std() > 0.3


def test_subsets_are_fixed_and_sized_by_the_profile(synthetic_cifar_root, ci_profile):
    profile = dataclasses.replace(ci_profile, train_subset=100, eval_subset=50)
    train, test = cifar.datasets(profile, root=synthetic_cifar_root)
    again, _ = cifar.datasets(profile, root=synthetic_cifar_root)
    assert isinstance(train, Subset) and len(train) == 100 and len(test) == 50
    assert train.indices == again.indices and train.indices != list(range(100))
    whole, _ = cifar.datasets(ci_profile, root=synthetic_cifar_root)
    assert len(whole) == 512 and not isinstance(whole, Subset)


def test_train_loader_drops_the_last_incomplete_batch(synthetic_cifar_root, ci_profile, capsys):
    profile = dataclasses.replace(ci_profile, batch_size=100)
    train_loader, test_loader = cifar.loaders(profile, root=synthetic_cifar_root)
    assert len(train_loader) == 5 and all(len(y) == 100 for _, y in train_loader)  # 512 -> 5 x 100
    assert len(test_loader) == 3  # 256 -> 100, 100, 56: evaluation keeps every image
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "synthetic" in lines[0] and "512 train / 256 test" in lines[0]


def test_train_loader_shuffle_is_seeded(synthetic_cifar_root, ci_profile):
    first = [next(iter(cifar.loaders(ci_profile, root=synthetic_cifar_root)[0]))[1] for _ in range(2)]
    other = next(iter(cifar.loaders(ci_profile, root=synthetic_cifar_root, seed=1)[0]))[1]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], other)


def test_missing_real_data_raises_with_directions(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        cifar.datasets(runtime.default_profile("quick"), root=tmp_path, download=False)
    message = str(error.value)
    for part in ("not found", str(tmp_path), "cifar.download(", cifar.URL, "170 MB", "COURSE_PROFILE=ci"):
        assert part in message
    assert not (tmp_path / "synthetic").exists()  # no silent fallback


def test_failed_download_raises_with_directions(tmp_path, monkeypatch):
    timeouts = []

    def no_internet(*args, timeout=None, **kwargs):
        timeouts.append(timeout)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_internet)  # the course's download (loading.fetch)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_internet)
    with pytest.raises(RuntimeError) as error:
        cifar.download(tmp_path)
    message = str(error.value)
    assert "Could not download CIFAR-10" in message and "name resolution" in message
    assert "COURSE_PROFILE=ci" in message and cifar.URL in message
    assert error.value.__suppress_context__  # no urllib traceback chained underneath
    with pytest.raises(RuntimeError, match="Could not download"):
        cifar.loaders(runtime.default_profile("quick"), root=tmp_path, download=True)
    assert timeouts[0] == 60.0  # a silent host is given up after a minute (a trickling one: test_downloads.py)


@pytest.mark.parametrize("failure", [http.client.IncompleteRead(b"partial"), tarfile.ReadError("truncated")])
def test_a_dropped_connection_or_a_damaged_archive_also_gives_directions(failure, tmp_path, monkeypatch):
    seen = []

    def fails(*args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise failure

    monkeypatch.setattr(cifar, "_fetch_archive", lambda root: None)  # straight to torchvision's download
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", fails)
    with pytest.raises(RuntimeError, match="Could not download CIFAR-10.*COURSE_PROFILE=ci"):
        cifar.download(tmp_path)
    assert seen == [60.0] and socket.getdefaulttimeout() is None  # a stalled host times out


def test_download_expands_a_home_folder(tmp_path, monkeypatch):
    roots = []

    def records(url, dest, **kwargs):
        roots.append(Path(dest).parent)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(cifar, "fetch", records)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(RuntimeError, match=str(tmp_path / "home" / "cifar")):
        cifar.download("~/cifar")  # the error names the folder it looked in: the expanded one
    assert [Path(r).expanduser() for r in roots] == [tmp_path / "home" / "cifar"]


def test_datasets_pickle_for_spawned_workers(synthetic_cifar_root, ci_profile):
    profile = dataclasses.replace(ci_profile, train_subset=64)
    for dataset in cifar.datasets(profile, root=synthetic_cifar_root):
        copy = pickle.loads(pickle.dumps(dataset))  # what a spawned DataLoader worker receives
        torch.manual_seed(0)
        image, label = dataset[3]
        torch.manual_seed(0)
        assert torch.equal(copy[3][0], image) and copy[3][1] == label


def _offline(monkeypatch):
    def no_internet(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", no_internet)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_internet)


def test_corrupt_official_files_offline_are_named_not_blamed_on_the_network(synthetic_cifar_root, tmp_path, monkeypatch):
    """Files in the official layout that fail torchvision's md5s: say which, and how to repair them."""
    shutil.copytree(synthetic_cifar_root / cifar.FOLDER, tmp_path / cifar.FOLDER)
    (tmp_path / cifar.FOLDER / synthetic.CIFAR_CHECKSUMS).unlink()  # now it claims to be the official download
    (tmp_path / cifar.FOLDER / "data_batch_4").unlink()
    _offline(monkeypatch)
    for call in (lambda: cifar.download(tmp_path),
                 lambda: cifar.datasets(runtime.default_profile("quick"), root=tmp_path, download=False)):
        with pytest.raises(FileNotFoundError) as error:
            call()
        message = str(error.value)
        assert "incomplete or corrupt" in message and str(tmp_path / cifar.FOLDER) in message
        assert "data_batch_1 (md5 mismatch)" in message and "data_batch_4 (missing)" in message
        assert "delete" in message and "cifar.download()" in message
        assert not message.startswith("Could not download")


def test_a_local_copy_with_its_own_checksums_loads_as_real_data(synthetic_cifar_root, tmp_path, capsys):
    """E.g. the course's real 10,000-image sample: real data, checked against its checksums.md5."""
    shutil.copytree(synthetic_cifar_root / cifar.FOLDER, tmp_path / cifar.FOLDER)
    profile = dataclasses.replace(runtime.default_profile("quick"), num_workers=0, train_subset=64, eval_subset=32)
    train_loader, _ = cifar.loaders(profile, root=tmp_path, download=True)  # nothing to download
    assert len(train_loader.dataset) == 64
    assert "(real, a local copy checked against its own checksums.md5)" in capsys.readouterr().out
    assert cifar.damaged_files(tmp_path) == []


def test_a_damaged_local_copy_names_its_file(synthetic_cifar_root, tmp_path):
    shutil.copytree(synthetic_cifar_root / cifar.FOLDER, tmp_path / cifar.FOLDER)
    with open(tmp_path / cifar.FOLDER / "test_batch", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(FileNotFoundError, match=r"its own checksums.md5\): test_batch \(md5 mismatch\)"):
        cifar.datasets(runtime.default_profile("quick"), root=tmp_path, download=True)
