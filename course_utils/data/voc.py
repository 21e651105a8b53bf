"""Pascal VOC 2012 semantic segmentation: dataset, joint transforms, loaders, download.

Images and masks go through ONE joint ``transforms.v2`` pipeline as ``tv_tensors.Image`` and
``tv_tensors.Mask``, so a random crop or flip hits both alike, masks are resized nearest (no
invented classes) and every pad fills masks with 255 (void, ignored by the loss and metrics).
The ``ci`` profile reads a small synthetic tree in the real layout with the same code.

Batches are ``images (N, 3, H, W)`` float32, normalised, and ``masks (N, H, W)`` int64 holding
0..20 and 255 = ignore.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import tv_tensors
from torchvision.datasets.utils import check_integrity, extract_archive
from torchvision.transforms import v2

from course_utils import runtime
from course_utils.constants import (IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, VOC_CLASSES, VOC_NUM_CLASSES,
                                    VOC_PALETTE)
from course_utils.data import synthetic
from course_utils.data.loading import fetch, make_loaders, size_text, subset

NUM_CLASSES = VOC_NUM_CLASSES  # 21, with VOC_CLASSES and VOC_PALETTE from course_utils.constants
MEAN, STD = IMAGENET_MEAN, IMAGENET_STD  # pretrained encoders expect ImageNet statistics
FOLDER = Path("VOCdevkit", "VOC2012")
_TORCHVISION_VOC2012 = torchvision.datasets.voc.DATASET_YEAR_DICT["2012"]  # what VOCSegmentation downloads
OXFORD_URL = _TORCHVISION_VOC2012["url"]  # the Oxford host (often slow or down: see MIRROR_URL)
TAR_NAME = _TORCHVISION_VOC2012["filename"]  # VOCtrainval_11-May-2012.tar, ~2 GB
TAR_MD5 = _TORCHVISION_VOC2012["md5"]  # 6cd6e144f989b92b3379bac3b3de84fd
MIRROR_URL = "http://d2l-data.s3-accelerate.amazonaws.com/VOCtrainval_11-May-2012.tar"  # d2l's copy
MIRROR_SHA1 = "4e443f8a2eca6b1dac8a6c57641b67dd40621a49"
FILL = {tv_tensors.Mask: IGNORE_INDEX, "others": 0}  # every pad: masks 255 (ignored), images 0
DTYPES = {tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}


def _unreadable(path: str | Path, error: Exception) -> RuntimeError:
    """The error for a damaged VOC file: PIL's own ("image file is truncated") names no file."""
    return RuntimeError(
        f"Cannot read {path} ({type(error).__name__}: {error}): the file is damaged, e.g. cut "
        f"short by an interrupted download, copy or extraction. Delete it and run voc.download() "
        f"again: it puts back missing files from the kept {TAR_NAME} (or downloads it, 2 GB). "
        f"For the synthetic set, delete its VOCdevkit folder: it is written again on next use.")


def _decode(path: str | Path, read):
    """``read(PIL image)``, decoding now, so that a damaged file fails naming itself."""
    try:
        with Image.open(path) as image:
            return read(image)
    except FileNotFoundError:
        raise  # already names the file
    except (OSError, ValueError, SyntaxError) as error:  # PIL's errors for damaged files
        raise _unreadable(path, error) from None


def _load_image(path: str | Path) -> Image.Image:
    """A VOC photo as an RGB PIL image."""
    return _decode(path, lambda image: image.convert("RGB"))


def _load_mask(path: str | Path) -> torch.Tensor:
    """A VOC mask (H, W) uint8, validated: palette or greyscale, values 0..20 or 255."""
    mode, array = _decode(path, lambda png: (png.mode, np.array(png) if png.mode in ("P", "L") else None))
    if array is None:
        raise ValueError(
            f"{path}: mask has PIL mode {mode!r}; expected a palette ('P') or greyscale "
            f"('L') PNG whose pixel values are class indices 0..20 (255 = void). A mask saved "
            f"as RGB holds colours, not classes: save it as a palette PNG instead.")
    # numpy, not torch: on tiny per-image arrays torch's thread pool costs more than the work
    bad = (array >= NUM_CLASSES) & (array != IGNORE_INDEX)
    if bad.any():
        values = np.unique(array[bad]).tolist()
        raise ValueError(f"{path}: mask holds values {values[:10]} outside 0..{NUM_CLASSES - 1} "
                         f"and {IGNORE_INDEX} (void); it is not a VOC class-index mask.")
    return torch.from_numpy(array)


def read_mask(path: str | Path) -> torch.Tensor:
    """Read and validate one VOC mask: LongTensor (H, W) with 0..20 and 255 = void."""
    return _load_mask(path).long()


class VOCSegmentationV2(torchvision.datasets.VOCSegmentation):
    """torchvision's ``VOCSegmentation`` returning ``(tv_tensors.Image, tv_tensors.Mask)``.

    Pass ONE joint ``transforms=`` (``train_transforms``/``eval_transforms``): wrapped as
    tv_tensors, the mask gets the image's crop and flip, nearest resizing and 255 padding.
    Each mask is validated as it is read, so an RGB-saved mask fails naming its file; that check
    is why we wrap in tv_tensors here instead of calling ``wrap_dataset_for_transforms_v2``.
    The split list (``ImageSets/Segmentation/<image_set>.txt``) is read leniently: blank lines,
    spaces and Windows line ends are skipped; a list without any image id is an error naming it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # torchvision turns a blank line of the split list into "JPEGImages/.jpg": read it again
        voc_root = Path(self.root) / torchvision.datasets.voc.DATASET_YEAR_DICT[self.year]["base_dir"]
        self.split_file = voc_root / "ImageSets" / "Segmentation" / f"{self.image_set}.txt"
        lines = self.split_file.read_text(encoding="utf-8-sig").splitlines()
        ids = [line.strip() for line in lines if line.strip()]
        if not ids:
            raise ValueError(
                f"{self.split_file} lists no images (it is empty or holds only blank lines); it "
                f"should hold one image id per line, e.g. 2007_000032. Restore it: delete "
                f"{voc_root.parent} and run voc.download() again (a kept {TAR_NAME} is extracted "
                f"without downloading). For the synthetic set, delete that folder: it is written "
                f"again on next use.")
        self.images = [str(voc_root / "JPEGImages" / f"{i}.jpg") for i in ids]
        self.targets = [str(voc_root / "SegmentationClass" / f"{i}.png") for i in ids]  # = self.masks

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image = tv_tensors.Image(_load_image(self.images[index]))  # (3, H, W) uint8
        mask = tv_tensors.Mask(_load_mask(self.masks[index]))  # (H, W) uint8
        if image.shape[1:] != mask.shape:
            (ih, iw), (mh, mw) = image.shape[1:], mask.shape
            raise ValueError(f"Mask {self.masks[index]} is {mw}x{mh} pixels but its image "
                             f"{self.images[index]} is {iw}x{ih} (width x height): each mask must match "
                             f"its image pixel for pixel. Re-save the mask at the image's size, or fix "
                             f"the pairing.")
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask


class PadTo(v2.Transform):
    """Pad the bottom and right up to ``size x size``: images with 0, masks with 255 (ignored).

    Our own, because v2 has no deterministic pad-to-size: ``RandomCrop(pad_if_needed=True)``
    pads both sides and then crops at a random place, and ``CenterCrop`` pads masks with 0.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        return {"padding": [0, 0, max(self.size - width, 0), max(self.size - height, 0)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        fill = IGNORE_INDEX if isinstance(inpt, tv_tensors.Mask) else 0
        return v2.functional.pad(inpt, params["padding"], fill=fill)


def train_transforms(size: int) -> v2.Compose:
    """Random scale, random ``size x size`` crop (padded with 255 where needed), flip, normalise."""
    return v2.Compose([
        v2.RandomResize(size // 2, 2 * size),  # shorter side in [size/2, 2 size): scale jitter
        v2.RandomCrop(size, pad_if_needed=True, fill=FILL),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(DTYPES, scale=True),  # image uint8 -> float 0..1; mask -> int64, not scaled
        v2.Normalize(MEAN, STD),  # images only
        v2.ToPureTensor(),
    ])


def eval_transforms(size: int) -> v2.Compose:
    """Longer side to ``size`` (aspect kept), then pad to ``size x size`` with mask 255.

    Every real pixel is evaluated, undistorted; the padding is ignored; batches stack.
    """
    return v2.Compose([
        v2.Resize(size=None, max_size=size),  # masks: nearest (interpolating labels invents classes)
        PadTo(size),
        v2.ToDtype(DTYPES, scale=True),
        v2.Normalize(MEAN, STD),
        v2.ToPureTensor(),
    ])


# -------------------------------------------------------------------------------------- download
def _fetch_tar(root: Path) -> None:
    """``root/<TAR_NAME>``: from the Oxford host (md5-checked), or, when that fails in any way
    (refused, stalled, too slow, cut off, corrupt), from d2l's mirror (sha1-checked). ``fetch``
    gives up on a too-slow host at its deadline and never leaves a partial tar behind."""
    try:
        fetch(OXFORD_URL, root / TAR_NAME, md5=TAR_MD5)
        return
    except Exception as error:  # URLError, timeout, too slow, IncompleteRead, md5 mismatch
        print(f"Download from the Oxford host failed ({error}); trying the mirror {MIRROR_URL}")
    try:
        fetch(MIRROR_URL, root / TAR_NAME, sha1=MIRROR_SHA1)
    except Exception as mirror_error:
        raise RuntimeError(
            f"Could not download VOC 2012 ({mirror_error}). With internet, run voc.download() "
            f"again later, or download {TAR_NAME} (2 GB, md5 {TAR_MD5}) by hand from {OXFORD_URL} "
            f"or the mirror {MIRROR_URL} into {root} and run it: it verifies and extracts the "
            f"file. Or set COURSE_PROFILE=ci for the synthetic set.") from None


def download(root: str | Path | None = None) -> Path:
    """Download and extract VOC 2012 trainval (2 GB) into ``root`` (default ``runtime.data_root()``).

    Nothing happens when every trainval image and mask is there. A verified tar already in
    ``root`` (e.g. put there by hand) is extracted without downloading; a corrupt one is fetched
    again: first from the Oxford host that torchvision uses (md5-checked), when that fails or is
    too slow (``loading.fetch``'s deadline) from d2l's mirror of the same tar (sha1-checked). The
    tar is kept, so a damaged tree is repaired without the network. Returns ``root/VOCdevkit/VOC2012``.
    """
    root = runtime.dataset_root(root)
    if not synthetic.missing_voc_files(root / FOLDER):
        return root / FOLDER
    root.mkdir(parents=True, exist_ok=True)
    tar = root / TAR_NAME
    if tar.is_file() and not check_integrity(str(tar), TAR_MD5):
        print(f"{tar} is incomplete or corrupt (its md5 is not {TAR_MD5}): fetching it again.")
        tar.unlink()
    if not tar.is_file():
        _fetch_tar(root)
    try:
        extract_archive(str(tar), str(root))
    except (OSError, tarfile.TarError) as error:
        raise RuntimeError(f"Extracting {tar} into {root} failed ({error}). The tree needs ~2 GB "
                           f"next to the tar: free some disk space and run voc.download() again "
                           f"(the verified tar is kept: nothing is downloaded twice).") from None
    missing = synthetic.missing_voc_files(root / FOLDER)
    if missing:
        raise RuntimeError(f"{tar} was extracted, but {len(missing)} files of VOC 2012 trainval are "
                           f"missing under {root / FOLDER} (e.g. {missing[0]}): delete {tar} and "
                           f"{root / 'VOCdevkit'}, then run voc.download() again.")
    return root / FOLDER


_download = download  # datasets() has a `download` flag that hides the function's name


# ---------------------------------------------------------------------------- datasets, loaders
def _require(root: Path, image_set: str, synthetic_data: bool) -> None:
    """Raise with directions when the split list of ``image_set`` is missing under ``root``."""
    if (root / FOLDER / "ImageSets" / "Segmentation" / f"{image_set}.txt").is_file():
        return
    if synthetic_data:
        fix = f"write it with synthetic.write_voc2012({str(root)!r}), or leave root=None"
    else:
        fix = "run voc.download() (2 GB) or set COURSE_PROFILE=ci for the synthetic set"
    raise FileNotFoundError(f"VOC 2012 not found under {root / FOLDER}; {fix}.")


def datasets(profile: runtime.Profile, root: str | Path | None = None, download: bool = False,
             train_set: str = "train") -> tuple[Dataset, Dataset]:
    """(train, val) VOC 2012 segmentation datasets for this profile, transforms and subsets applied.

    ``train_set``: "train" (1,464 images, the default for reported results) or "trainval".
    ``profile.synthetic``: the synthetic tree (root default ``synthetic.synthetic_root()``,
    written there on first use). Otherwise real data under ``root`` (default
    ``runtime.data_root()``), downloaded first if ``download``.
    """
    if train_set not in ("train", "trainval"):
        raise ValueError(f"train_set={train_set!r}: use 'train' (1,464 images) or 'trainval'.")
    if profile.synthetic:
        root = synthetic.ensure_voc2012() if root is None else Path(root)
    else:
        root = runtime.dataset_root(root)
        if download:
            _download(root)
    for image_set in (train_set, "val"):
        _require(root, image_set, profile.synthetic)
    size = profile.image_size
    train = VOCSegmentationV2(root, year="2012", image_set=train_set, transforms=train_transforms(size))
    val = VOCSegmentationV2(root, year="2012", image_set="val", transforms=eval_transforms(size))
    return subset(train, profile.train_subset), subset(val, profile.eval_subset)


def loaders(profile: runtime.Profile, root: str | Path | None = None, download: bool = False,
            train_set: str = "train", seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """(train_loader, val_loader) for this profile; prints one line saying which data is used."""
    train, val = datasets(profile, root=root, download=download, train_set=train_set)
    train_loader, val_loader = make_loaders(train, val, profile, seed=seed)
    full = train.dataset if isinstance(train, Subset) else train
    kind = "synthetic stand-in" if profile.synthetic else "real"
    print(f"VOC 2012 ({kind}): {size_text(train)} {train_set} / {size_text(val)} val images, "
          f"{profile.image_size}x{profile.image_size} crops, from {Path(full.root) / FOLDER}")
    return train_loader, val_loader
