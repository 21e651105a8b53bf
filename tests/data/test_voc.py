"""VOC 2012: torchvision reads the tree, joint transforms keep masks exact, errors give directions."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
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
from torchvision import tv_tensors

from course_utils import runtime
from course_utils.data import synthetic, voc


def _sample(height=60, width=70, seed=0):
    """An image whose pixel colours encode its mask: block classes in 10 px squares, some void."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 21, (height // 10 + 1, width // 10 + 1), generator=g)
    mask = blocks.repeat_interleave(10, 0).repeat_interleave(10, 1)[:height, :width]
    mask[:5, :] = 255  # a void strip along the top
    image = voc.VOC_PALETTE[mask].permute(2, 0, 1)  # (3, H, W) uint8: colour of each class
    return tv_tensors.Image(image), tv_tensors.Mask(mask.to(torch.uint8))


def _decode(image):
    """Normalised image (3, H, W) -> nearest palette class per pixel (H, W) and its colour error."""
    rgb = (image * torch.tensor(voc.STD)[:, None, None] + torch.tensor(voc.MEAN)[:, None, None]) * 255
    dist = (rgb.permute(1, 2, 0)[:, :, None, :] - voc.VOC_PALETTE[:21].float()).norm(dim=-1)  # (H, W, 21)
    return dist.min(-1).indices, dist.min(-1).values


def test_palette_has_the_standard_voc_colours():
    assert voc.VOC_PALETTE.shape == (256, 3) and voc.VOC_PALETTE.dtype == torch.uint8
    assert voc.VOC_PALETTE[0].tolist() == [0, 0, 0]
    assert voc.VOC_PALETTE[1].tolist() == [128, 0, 0]
    assert voc.VOC_PALETTE[15].tolist() == [192, 128, 128]  # person
    assert voc.VOC_PALETTE[20].tolist() == [0, 64, 128]  # tvmonitor
    assert voc.VOC_PALETTE[255].tolist() == [224, 224, 192]  # void
    assert len(voc.VOC_CLASSES) == voc.NUM_CLASSES == 21 and voc.VOC_CLASSES[0] == "background"
    assert voc.VOC_CLASSES[15] == "person" and voc.IGNORE_INDEX == 255


def test_synthetic_tree_is_read_by_torchvision(synthetic_voc_root):
    plain = torchvision.datasets.VOCSegmentation(synthetic_voc_root, year="2012", image_set="train")
    image, mask = plain[0]
    assert len(plain) == 48 and image.mode == "RGB" and mask.mode == "P" and image.size == mask.size
    ours = voc.VOCSegmentationV2(synthetic_voc_root, year="2012", image_set="val")
    image, mask = ours[0]
    assert len(ours) == 24 and isinstance(image, tv_tensors.Image) and isinstance(mask, tv_tensors.Mask)
    assert image.dtype == torch.uint8 and image.shape[0] == 3 and mask.shape == image.shape[1:]


def test_read_mask_gives_class_indices(synthetic_voc_root):
    path = next((synthetic_voc_root / "VOCdevkit/VOC2012/SegmentationClass").glob("*.png"))
    mask = voc.read_mask(path)
    assert mask.dtype == torch.int64 and mask.ndim == 2
    assert set(mask.unique().tolist()) <= set(range(21)) | {255} and 255 in mask


@pytest.mark.parametrize("split", ["train", "eval"])
def test_transforms_keep_255_and_invent_no_labels(synthetic_voc_root, split):
    dataset = voc.VOCSegmentationV2(synthetic_voc_root, image_set="val")
    transforms = voc.train_transforms(48) if split == "train" else voc.eval_transforms(48)
    for index in range(8):
        torch.manual_seed(index)
        image, mask = dataset[index]
        before = set(mask.unique().tolist())
        out_image, out_mask = transforms(image, mask)
        assert out_mask.dtype == torch.int64 and out_mask.shape == (48, 48) and type(out_mask) is torch.Tensor
        assert out_image.dtype == torch.float32 and out_image.shape == (3, 48, 48)
        assert set(out_mask.unique().tolist()) <= before | {255}  # nearest: no in-between classes
    void = tv_tensors.Mask(torch.full((50, 70), 255, dtype=torch.uint8))
    for seed in range(5):
        torch.manual_seed(seed)
        _, out_mask = transforms(tv_tensors.Image(torch.zeros(3, 50, 70, dtype=torch.uint8)), void)
        assert (out_mask == 255).all()  # 255 survives scaling, cropping and padding


def test_train_crop_and_flip_hit_image_and_mask_alike():
    transforms = voc.train_transforms(64)
    for seed in range(8):
        image, mask = _sample(seed=seed)
        torch.manual_seed(seed)
        out_image, out_mask = transforms(image, mask)
        decoded, error = _decode(out_image)
        sure = (error < 10) & (out_mask != 255)  # block interiors: no blending at block edges
        assert sure.float().mean() > 0.2
        assert (decoded[sure] == out_mask[sure]).float().mean() > 0.98, seed


def test_train_transforms_rescale_randomly():
    mask = torch.zeros(100, 100, dtype=torch.uint8)
    mask[40:60, 40:60] = 1  # a 20 x 20 object, always inside a 64 px crop at scale 1
    image = tv_tensors.Image(torch.zeros(3, 100, 100, dtype=torch.uint8))
    areas = set()
    for seed in range(8):
        torch.manual_seed(seed)
        _, out_mask = voc.train_transforms(64)(image, tv_tensors.Mask(mask))
        areas.add(int((out_mask == 1).sum()))
    assert len(areas) >= 4 and min(areas) < 200  # scale jitter 0.32..1.27 (without it: always 400)


def test_padding_fills_masks_with_255_not_0():
    image = tv_tensors.Image(torch.full((3, 30, 45), 200, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(30, 45, dtype=torch.uint8))  # all background
    out_image, out_mask = voc.eval_transforms(90)(image, mask)
    assert (out_mask[:60] == 0).all() and (out_mask[60:] == 255).all()  # 30x45 -> 60x90, pad 30 rows
    padded = (0 - torch.tensor(voc.MEAN)) / torch.tensor(voc.STD)
    assert torch.allclose(out_image[:, 75, 10], padded, atol=1e-4)  # image padding is black
    padded_any = False
    for seed in range(10):  # train: shorter side 32..127, so narrow draws are padded to 64
        torch.manual_seed(seed)
        _, out_mask = voc.train_transforms(64)(image, mask)
        assert set(out_mask.unique().tolist()) <= {0, 255}
        padded_any |= bool((out_mask == 255).any())
    assert padded_any


def test_eval_transforms_keep_every_pixel_undistorted(synthetic_voc_root):
    image, mask = _sample(height=50, width=75)
    out_image, out_mask = voc.eval_transforms(60)(image, mask)
    assert out_image.shape == (3, 60, 60) and out_mask.shape == (60, 60)
    real_rows = (out_mask != 255).any(1).nonzero().max() + 1
    assert real_rows == 40 and (out_mask[40:] == 255).all()  # 50x75 -> 40x60: aspect kept
    torch.manual_seed(0)
    again = voc.eval_transforms(60)(image, mask)[1]
    assert torch.equal(out_mask, again)  # evaluation is deterministic
    val = voc.VOCSegmentationV2(synthetic_voc_root, image_set="val", transforms=voc.eval_transforms(32))
    assert {tuple(val[i][0].shape) for i in range(5)} == {(3, 32, 32)}


def test_rgb_saved_mask_is_refused_naming_the_file(synthetic_voc_root, tmp_path):
    shutil.copytree(synthetic_voc_root / "VOCdevkit", tmp_path / "VOCdevkit")
    dataset = voc.VOCSegmentationV2(tmp_path, image_set="train")
    path = dataset.masks[3]
    Image.open(path).convert("RGB").save(path)  # what an image editor often does
    with pytest.raises(ValueError, match="mode 'RGB'") as error:
        dataset[3]
    assert path in str(error.value)
    with pytest.raises(ValueError, match="mode 'RGB'"):
        voc.read_mask(path)


def test_mask_values_outside_voc_classes_are_refused(tmp_path):
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5:10, 5:10] = 30
    path = tmp_path / "bad.png"
    Image.fromarray(mask).save(path)  # greyscale "L": allowed mode, wrong values
    with pytest.raises(ValueError, match=r"values \[30\] outside 0..20") as error:
        voc.read_mask(path)
    assert str(path) in str(error.value)
    mask[5:10, 5:10] = 255
    Image.fromarray(mask).save(path)
    assert voc.read_mask(path).max() == 255  # void is fine


def test_loaders_print_one_line_and_drop_last(synthetic_voc_root, ci_profile, capsys):
    profile = dataclasses.replace(ci_profile, batch_size=20)
    train_loader, val_loader = voc.loaders(profile, root=synthetic_voc_root)
    assert len(train_loader) == 2 and len(val_loader) == 2  # 48 -> 2 x 20; 24 -> 20 + 4
    images, masks = next(iter(train_loader))
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.float32
    assert masks.shape == (20, 32, 32) and masks.dtype == torch.int64
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "synthetic" in lines[0] and "48 train / 24 val" in lines[0]


def test_subsets_follow_the_profile(synthetic_voc_root, ci_profile):
    profile = dataclasses.replace(ci_profile, train_subset=10, eval_subset=5)
    train, val = voc.datasets(profile, root=synthetic_voc_root, train_set="trainval")
    assert len(train) == 10 and len(val) == 5 and len(train.dataset) == 72


def test_missing_data_raises_with_directions(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        voc.datasets(runtime.default_profile("quick"), root=tmp_path)
    message = str(error.value)
    assert f"VOC 2012 not found under {tmp_path / 'VOCdevkit' / 'VOC2012'}" in message
    assert "voc.download()" in message and "2 GB" in message and "COURSE_PROFILE=ci" in message


def tiny_voc_tar(folder) -> bytes:
    """A VOC-format tar of 2 train / 1 val synthetic images (the real one is 2 GB)."""
    synthetic.write_voc2012(folder, num_train=2, num_val=1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder / "VOCdevkit", arcname="VOCdevkit")
    return buffer.getvalue()


class _Response(io.BytesIO):
    """What the fake ``urlopen`` returns: ``data``, then ``failure`` (e.g. a connection cut off)."""

    def __init__(self, data: bytes, length: int, failure: Exception | None = None) -> None:
        super().__init__(data)
        self.length, self.failure = length, failure

    def read1(self, size: int = -1) -> bytes:
        chunk = super().read1(size)
        if not chunk and self.failure is not None:
            raise self.failure
        return chunk


@pytest.fixture
def offline_mirror(tmp_path, monkeypatch):
    """Oxford fails; the 'mirror' serves a tiny VOC tar. Returns (tar bytes, requested URLs).

    ``urls`` lists the mirror requests; ``oxford`` (a list) holds the silence timeout that each
    Oxford request ran under. Oxford sends 100 bytes, then the connection is cut off."""
    data, urls, oxford = tiny_voc_tar(tmp_path / "src"), [], []

    def urlopen(request, timeout=None):
        if request.full_url == voc.OXFORD_URL:
            oxford.append(timeout)
            return _Response(data[:100], len(data), urllib.error.URLError("thor.robots.ox.ac.uk: connection reset"))
        urls.append(request.full_url)
        return _Response(data, len(data))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return data, urls, oxford


def test_download_falls_back_to_the_mirror_and_checks_sha1(tmp_path, offline_mirror, monkeypatch):
    data, urls, oxford = offline_mirror
    monkeypatch.setattr(voc, "MIRROR_SHA1", hashlib.sha1(data).hexdigest())
    folder = voc.download(tmp_path / "data")
    assert urls == [voc.MIRROR_URL] and folder == tmp_path / "data" / "VOCdevkit" / "VOC2012"
    assert oxford == [60.0] and socket.getdefaulttimeout() is None  # a stalled host times out; reset after
    assert len(torchvision.datasets.VOCSegmentation(tmp_path / "data", image_set="train")) == 2
    assert voc.download(tmp_path / "data") == folder and urls == [voc.MIRROR_URL]  # present: no fetch


@pytest.mark.parametrize("failure", [http.client.IncompleteRead(b"partial"), TimeoutError("timed out"),
                                     RuntimeError("File not found or corrupted.")])
def test_any_oxford_failure_falls_back_to_the_mirror(failure, tmp_path, offline_mirror, monkeypatch):
    data, urls, _ = offline_mirror

    fake_urlopen = urllib.request.urlopen  # the fixture's

    def oxford_fails(request, timeout=None):
        if request.full_url == voc.OXFORD_URL:
            raise failure
        return fake_urlopen(request, timeout)

    monkeypatch.setattr(urllib.request, "urlopen", oxford_fails)
    monkeypatch.setattr(voc, "MIRROR_SHA1", hashlib.sha1(data).hexdigest())
    voc.download(tmp_path / "data")
    assert urls == [voc.MIRROR_URL]


def test_download_refuses_a_mirror_file_with_the_wrong_sha1(tmp_path, offline_mirror):
    with pytest.raises(RuntimeError, match="sha1") as error:
        voc.download(tmp_path / "data")
    assert "COURSE_PROFILE=ci" in str(error.value) and error.value.__suppress_context__
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == []  # no tar, no .part, no tree


def test_a_half_extracted_tree_is_extracted_again_from_the_kept_tar(tmp_path, offline_mirror, monkeypatch):
    data, urls, oxford = offline_mirror
    monkeypatch.setattr(voc, "MIRROR_SHA1", hashlib.sha1(data).hexdigest())
    folder = voc.download(tmp_path / "data")
    monkeypatch.setattr(voc, "TAR_MD5", hashlib.md5(data).hexdigest())  # the kept tar is the real one
    image = next((folder / "JPEGImages").iterdir())
    image.unlink()  # e.g. Colab restarted during the extraction: the split lists are there already
    assert voc.download(tmp_path / "data") == folder and image.is_file()
    assert urls == [voc.MIRROR_URL] and len(oxford) == 1  # repaired from the tar, nothing downloaded


def test_a_corrupt_tar_put_there_by_hand_is_named_and_fetched_again(tmp_path, offline_mirror, monkeypatch, capsys):
    data, urls, _ = offline_mirror
    monkeypatch.setattr(voc, "MIRROR_SHA1", hashlib.sha1(data).hexdigest())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / voc.TAR_NAME).write_bytes(b"<html>Service unavailable</html>")
    voc.download(tmp_path / "data")
    assert "is incomplete or corrupt" in capsys.readouterr().out and urls == [voc.MIRROR_URL]


def test_a_failed_extraction_says_so_and_does_not_download_again(tmp_path, offline_mirror, monkeypatch):
    data, urls, oxford = offline_mirror
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / voc.TAR_NAME).write_bytes(data)
    monkeypatch.setattr(voc, "TAR_MD5", hashlib.md5(data).hexdigest())

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(voc, "extract_archive", disk_full)
    with pytest.raises(RuntimeError, match="No space left.*free some disk space"):
        voc.download(tmp_path / "data")
    assert urls == [] and oxford == [] and (tmp_path / "data" / voc.TAR_NAME).is_file()


def test_download_expands_a_home_folder(tmp_path, offline_mirror, monkeypatch):
    data, _, _ = offline_mirror
    monkeypatch.setattr(voc, "MIRROR_SHA1", hashlib.sha1(data).hexdigest())
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert voc.download("~/voc") == tmp_path / "home" / "voc" / "VOCdevkit" / "VOC2012"
    assert not (tmp_path / "~").exists()


def test_torchvision_still_downloads_the_tar_the_course_verifies():
    """The course takes the URL, file name and md5 from torchvision's own VOCSegmentation table."""
    assert voc.TAR_NAME == "VOCtrainval_11-May-2012.tar" and voc.TAR_MD5 == "6cd6e144f989b92b3379bac3b3de84fd"
    assert voc.OXFORD_URL.endswith("/" + voc.TAR_NAME)


def test_datasets_pickle_for_spawned_workers(synthetic_voc_root, ci_profile):
    train, val = voc.datasets(ci_profile, root=synthetic_voc_root)
    for dataset in (train, val):
        copy = pickle.loads(pickle.dumps(dataset))  # what a spawned DataLoader worker receives
        torch.manual_seed(0)
        image, mask = dataset[1]
        torch.manual_seed(0)
        image2, mask2 = copy[1]
        assert torch.equal(image, image2) and torch.equal(mask, mask2)
    with pytest.raises(ValueError, match="train_set"):
        voc.datasets(ci_profile, root=synthetic_voc_root, train_set="val")


def test_mask_of_another_size_is_refused_naming_both_files(synthetic_voc_root, tmp_path):
    shutil.copytree(synthetic_voc_root / "VOCdevkit", tmp_path / "VOCdevkit")
    dataset = voc.VOCSegmentationV2(tmp_path, image_set="train", transforms=voc.train_transforms(32))
    path = dataset.masks[2]
    with Image.open(path) as mask:
        width, height = mask.size
        mask.crop((0, 0, width - 3, height)).save(path)  # a palette PNG 3 px narrower than its image
    with pytest.raises(ValueError, match=f"is {width - 3}x{height} pixels but its image") as error:
        dataset[2]
    message = str(error.value)
    assert path in message and dataset.images[2] in message and f"is {width}x{height}" in message


# ------------------------------------------------------------------ damaged files and split lists
def _copy_tree(synthetic_voc_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic tree, safe to damage; returns its split-list folder."""
    shutil.copytree(synthetic_voc_root / "VOCdevkit", tmp_path / "VOCdevkit")
    return tmp_path / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"


@pytest.mark.parametrize("num_workers", [0, 1])
def test_truncated_jpeg_names_the_file_and_the_fix(synthetic_voc_root, tmp_path, num_workers):
    _copy_tree(synthetic_voc_root, tmp_path)
    dataset = voc.VOCSegmentationV2(tmp_path, image_set="train", transforms=voc.eval_transforms(32))
    path = Path(dataset.images[0])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # an interrupted copy
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=num_workers)
    with pytest.raises(RuntimeError, match="damaged") as error:  # PIL alone: "image file is truncated"
        next(iter(loader))
    assert str(path) in str(error.value) and "voc.download()" in str(error.value)


def test_truncated_mask_names_the_file(synthetic_voc_root, tmp_path):
    _copy_tree(synthetic_voc_root, tmp_path)
    path = Path(voc.VOCSegmentationV2(tmp_path, image_set="train").masks[1])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RuntimeError, match="damaged") as error:
        voc.read_mask(path)
    assert str(path) in str(error.value)


def test_blank_lines_and_windows_line_ends_in_the_split_list_are_skipped(synthetic_voc_root, tmp_path):
    splits = _copy_tree(synthetic_voc_root, tmp_path)
    ids = (splits / "train.txt").read_text().split()
    lines = ids[:3] + ["", "  "] + ids[3:] + ["", ""]  # a blank line in the middle and at the end
    (splits / "train.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    dataset = voc.VOCSegmentationV2(tmp_path, image_set="train")
    assert [Path(p).stem for p in dataset.images] == ids  # no "JPEGImages/.jpg"
    assert [Path(p).stem for p in dataset.masks] == ids
    dataset[3]  # the item after the blank line loads


def test_an_empty_split_list_is_named(synthetic_voc_root, tmp_path, ci_profile):
    splits = _copy_tree(synthetic_voc_root, tmp_path)
    (splits / "train.txt").write_text("\n")
    with pytest.raises(ValueError, match="lists no images") as error:  # not "lower batch_size"
        voc.loaders(ci_profile, root=tmp_path)
    assert str(splits / "train.txt") in str(error.value)
