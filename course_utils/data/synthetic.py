"""Tiny synthetic stand-ins for CIFAR-10 and Pascal VOC 2012, written in the REAL on-disk formats.

The ``ci`` profile trains on these so every notebook runs in seconds, offline. Because the files
have exactly the layout of the real datasets, torchvision's own ``CIFAR10`` and
``VOCSegmentation`` read them, and the lessons run the same code path as with real data.

The content is learnable but easy: every class has its own colour and shape, drawn at a random
place on a noisy or textured background, so a tiny network does clearly better than chance after
an epoch or two. Everything is deterministic given ``seed``.

Folders are written atomically (into a temporary folder, then renamed), so an interrupted run
never leaves half a dataset behind, and a folder that already holds the same files is kept, so
notebooks started at once never pull a folder from under each other (see
``files.write_folder_atomically``).
"""

from __future__ import annotations

import colorsys
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from course_utils import runtime
from course_utils.constants import CIFAR10_CLASSES, VOC_PALETTE
from course_utils.files import md5sum, write_folder_atomically

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_CHECKSUMS = "checksums.md5"  # md5 of every generated file, written last (see cifar.py)
VOC_FOLDER = Path("VOCdevkit", "VOC2012")

# One colour per CIFAR-10 class (RGB), in class order: airplane, automobile, bird, cat, deer,
# dog, frog, horse, ship, truck.
_CIFAR_COLOURS = np.array([
    (90, 160, 255), (230, 30, 30), (250, 220, 20), (255, 130, 0), (130, 80, 30),
    (220, 180, 130), (40, 200, 40), (170, 40, 200), (20, 30, 140), (0, 190, 190)], dtype=np.float32)


def synthetic_root() -> Path:
    """Where the ``ci`` profile keeps its generated datasets: ``data_root()/synthetic``."""
    return runtime.data_root() / "synthetic"


def read_checksums(folder: Path) -> dict[str, str]:
    """``{file name: md5}`` from the ``checksums.md5`` that ``write_cifar10`` wrote last."""
    path = Path(folder) / CIFAR_CHECKSUMS
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing, so {folder} is not a complete synthetic CIFAR-10 folder. "
            f"Delete the folder and write it again with synthetic.write_cifar10(root).")
    pairs = (line.split() for line in path.read_text().splitlines() if line.strip())
    return {name: md5 for md5, name in pairs}


# ----------------------------------------------------------------------------------------- CIFAR
def _cifar_shapes(dy: np.ndarray, dx: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The 10 class shapes as boolean masks (10, N, 32, 32), centred at dy = dx = 0, size r."""
    inside = (abs(dy) <= r) & (abs(dx) <= r)
    dist = np.sqrt(dy**2 + dx**2)
    return np.stack([
        ((abs(dy) <= r / 3) & (abs(dx) <= r)) | ((abs(dx) <= r / 3) & (abs(dy) <= r)),  # plus
        inside,  # square
        (dy >= -r) & (dy <= r) & (abs(dx) <= (dy + r) / 2),  # triangle
        (dist <= r) & (dist >= r / 2),  # ring
        dist <= r,  # disc
        abs(dx) + abs(dy) <= r,  # diamond
        inside & (((dy + 16) // 3 + (dx + 16) // 3) % 2 == 0),  # checkerboard
        inside & ((dx + 16) // 2 % 2 == 0),  # vertical stripes
        (dx / r) ** 2 + (dy / (r / 2.5)) ** 2 <= 1,  # flat ellipse
        inside & ((dy + 16) // 2 % 2 == 0),  # horizontal stripes
    ])


def _cifar_images(num: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """``num`` images as CIFAR rows (num, 3072) uint8 (CHW order) and balanced labels."""
    labels = rng.permutation(np.arange(num) % 10)
    cy, cx = (rng.integers(11, 22, size=(num, 1, 1)) for _ in range(2))
    r = rng.uniform(6, 9.5, size=(num, 1, 1))
    yy, xx = np.mgrid[0:32, 0:32]
    masks = _cifar_shapes(yy - cy, xx - cx, r)[labels, np.arange(num)]  # (N, 32, 32)
    colour = _CIFAR_COLOURS[labels] + rng.normal(0, 15, size=(num, 3))  # (N, 3)
    grey = rng.uniform(30, 220, size=(num, 1)) + rng.normal(0, 15, size=(num, 3))  # tinted grey
    images = np.where(masks[..., None], colour[:, None, None, :], grey[:, None, None, :])
    images = images + rng.normal(0, 12, size=images.shape)  # (N, 32, 32, 3)
    images = np.clip(images, 0, 255).astype(np.uint8)
    return images.transpose(0, 3, 1, 2).reshape(num, 3072), labels.tolist()


def write_cifar10(root: str | Path, num_train: int = 512, num_test: int = 256, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py/`` in the exact format of the real CIFAR-10 (python version).

    Pickled dicts ``data_batch_1..5`` and ``test_batch`` (``data`` uint8 (N, 3072) in CHW row
    order, ``labels``, ``batch_label``, ``filenames``), ``batches.meta`` (``label_names``,
    ``num_cases_per_batch``, ``num_vis``), a ``readme.html``, and ``checksums.md5``: the md5 of each
    file, which ``cifar.SyntheticCIFAR10`` hands to torchvision's integrity check.
    """
    rng = np.random.default_rng(seed)
    train_data, train_labels = _cifar_images(num_train, rng)
    test_data, test_labels = _cifar_images(num_test, rng)

    def batch(label: str, data: np.ndarray, labels: list[int], start: int) -> dict:
        names = [f"synthetic_{CIFAR10_CLASSES[y]}_{start + i:05d}.png" for i, y in enumerate(labels)]
        return {"batch_label": label, "labels": labels, "data": data, "filenames": names}

    def write(folder: Path) -> None:
        files = {}
        parts = np.array_split(np.arange(num_train), 5)
        for k, idx in enumerate(parts, start=1):
            labels = [train_labels[i] for i in idx]
            files[f"data_batch_{k}"] = batch(f"training batch {k} of 5", train_data[idx], labels,
                                             int(idx[0]) if len(idx) else 0)
        files["test_batch"] = batch("testing batch 1 of 1", test_data, test_labels, 0)
        files["batches.meta"] = {"label_names": list(CIFAR10_CLASSES),
                                 "num_cases_per_batch": len(parts[0]), "num_vis": 3072}
        for name, content in files.items():
            with open(folder / name, "wb") as f:
                pickle.dump(content, f, protocol=2)
        (folder / "readme.html").write_text(
            "<p>Synthetic stand-in for CIFAR-10 written by course_utils.data.synthetic "
            f"(seed {seed}, {num_train} train / {num_test} test images).</p>\n")
        lines = [f"{md5sum(folder / name)}  {name}" for name in files]
        (folder / CIFAR_CHECKSUMS).write_text("\n".join(lines) + "\n")  # last: marks completion

    return write_folder_atomically(Path(root) / CIFAR_FOLDER, write)


# ------------------------------------------------------------------------------------------- VOC
def _voc_colours() -> np.ndarray:
    """One image colour per VOC class (21, 3): 10 hues x 2 brightnesses; background unused."""
    colours = [(0.0, 0.0, 0.0)]
    for c in range(20):
        hue, value = (c % 10) / 10, 1.0 if c < 10 else 0.55
        colours.append(colorsys.hsv_to_rgb(hue + (0.05 if c >= 10 else 0.0), 0.9, value))
    return np.array(colours, dtype=np.float32) * 255


def _void_border(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` px of a different label (H, W): VOC marks these 255 (void)."""
    padded = np.pad(labels, width, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * width + 1, 2 * width + 1))
    return windows.max(axis=(-2, -1)) != windows.min(axis=(-2, -1))


def _voc_sample(rng: np.random.Generator, sides: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """One image (H, W, 3) uint8 with 1-3 objects on a textured background, and its mask (H, W)."""
    height, width = rng.choice(sides, size=2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 14)  # background: grey stripes + noise
    stripes = 25 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    image = rng.uniform(80, 170) + stripes[..., None] + rng.normal(0, 8, size=(height, width, 3))
    labels = np.zeros((height, width), dtype=np.uint8)
    colours = _voc_colours()
    for c in rng.choice(np.arange(1, 21), size=rng.integers(1, 4), replace=False):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.15, 0.3) * height, rng.uniform(0.15, 0.3) * width
        dy, dx = (yy - cy) / ry, (xx - cx) / rx
        shape = c % 3  # 0 ellipse, 1 rectangle, 2 triangle: shape helps tell close colours apart
        inside = [dy**2 + dx**2 <= 1, (abs(dy) <= 1) & (abs(dx) <= 1),
                  (abs(dy) <= 1) & (abs(dx) <= (dy + 1) / 2)][shape]
        labels[inside] = c
        image[inside] = colours[c] + rng.normal(0, 10, size=3)
    image = np.clip(image + rng.normal(0, 6, size=image.shape), 0, 255).astype(np.uint8)
    mask = np.where(_void_border(labels), 255, labels).astype(np.uint8)
    return image, mask


def write_voc2012(root: str | Path, num_train: int = 48, num_val: int = 24, seed: int = 0,
                  size: int | tuple[int, int] = (70, 110)) -> Path:
    """Write ``root/VOCdevkit/VOC2012/`` laid out like the real Pascal VOC 2012 segmentation data.

    ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette "P" PNGs with the VOC colour
    map, class indices 0..20 and a 255 void border around every object, like the real masks) and
    ``ImageSets/Segmentation/{train,val,trainval}.txt``. Image sides are drawn from ``size``
    (min, max) pixels, skipping multiples of 16 so that models must cope with odd sizes.
    """
    low, high = (size, size) if isinstance(size, int) else size
    sides = [s for s in range(low, high + 1) if s % 16] or [low]
    rng = np.random.default_rng(seed)
    ids = sorted(f"{2007 + i % 5}_{32 + 7 * i:06d}" for i in range(num_train + num_val))
    order = rng.permutation(len(ids))
    splits = {"train": sorted(ids[i] for i in order[:num_train]),
              "val": sorted(ids[i] for i in order[num_train:])}
    splits["trainval"] = ids
    palette = VOC_PALETTE.flatten().tolist()

    def write(folder: Path) -> None:
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (folder / sub).mkdir(parents=True)
        for image_id in ids:
            image, mask = _voc_sample(rng, sides)
            Image.fromarray(image).save(folder / "JPEGImages" / f"{image_id}.jpg", quality=90)
            png = Image.fromarray(mask)  # mode "L" ...
            png.putpalette(palette)  # ... becomes "P" with the VOC colours, as the real masks
            png.save(folder / "SegmentationClass" / f"{image_id}.png")
        for split, names in splits.items():
            (folder / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")

    return write_folder_atomically(Path(root) / VOC_FOLDER, write)


# ---------------------------------------------------------------------------------------- ensure
def _cifar_complete(folder: Path) -> bool:
    """True when ``checksums.md5`` (written last) is there and every file it lists matches it."""
    try:
        expected = read_checksums(folder)
        return bool(expected) and all(md5sum(folder / name) == md5 for name, md5 in expected.items())
    except OSError:  # FileNotFoundError: no checksums.md5 or a listed file is missing
        return False


def missing_voc_files(folder: Path) -> list[str]:
    """Files of the trainval split not (yet) in a ``VOCdevkit/VOC2012`` ``folder``, relative to it:
    a half-extracted or half-written tree is incomplete (a split list alone proves nothing).
    Used for the synthetic tree here and for the real download (``voc.download``)."""
    split = Path("ImageSets", "Segmentation", "trainval.txt")
    if not (folder / split).is_file():
        return [split.as_posix()]
    ids = (folder / split).read_text().split()
    wanted = [f"JPEGImages/{i}.jpg" for i in ids] + [f"SegmentationClass/{i}.png" for i in ids]
    return [name for name in wanted if not (folder / name).is_file()]


def ensure_cifar10(root: str | Path | None = None) -> Path:
    """The synthetic CIFAR-10 root (default ``synthetic_root()``), written once and then reused.

    Written again (same seed, same files) when a file is missing or fails ``checksums.md5``."""
    root = Path(root) if root is not None else synthetic_root()
    if not _cifar_complete(root / CIFAR_FOLDER):
        write_cifar10(root)
    return root


def ensure_voc2012(root: str | Path | None = None) -> Path:
    """The synthetic VOC 2012 root (default ``synthetic_root()``), written once and then reused.

    Written again (same seed, same files) when an image or mask of ``trainval.txt`` is missing."""
    root = Path(root) if root is not None else synthetic_root()
    if missing_voc_files(root / VOC_FOLDER):
        write_voc2012(root)
    return root


# ------------------------------------------------------------------------------- image folder
IMAGE_FOLDER = "shapes"  # write_image_folder(root) writes root/shapes/{train,test}
SHAPES = ("circle", "square", "triangle", "ring", "cross", "diamond")  # the classes it can draw


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask (H, W) of one shape of size ``r`` in rotated coordinates ``u``, ``v``."""
    dist = np.sqrt(u**2 + v**2)
    return {"circle": dist <= r,
            "square": (abs(u) <= 0.8 * r) & (abs(v) <= 0.8 * r),
            "triangle": (v <= 0.6 * r) & (abs(u) <= (v + r) * 0.58),
            "ring": (dist <= r) & (dist >= 0.55 * r),
            "cross": ((abs(u) <= 0.3 * r) | (abs(v) <= 0.3 * r)) & (abs(u) <= r) & (abs(v) <= r),
            "diamond": abs(u) + abs(v) <= r}[shape]


def _shape_image(label: int, num_classes: int, shape: str, rng: np.random.Generator,
                 size: tuple[int, int]) -> Image.Image:
    """One RGB image of random height and width in ``size``: a rotated shape on a noisy background.

    The shape decides the class; its hue leans towards the class's own hue, so small networks
    learn fast, but the hues of neighbouring classes overlap.
    """
    height, width = rng.integers(size[0], size[1] + 1, size=2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = rng.uniform(0.22, 0.36) * min(height, width)
    dy, dx = yy - rng.uniform(0.35, 0.65) * height, xx - rng.uniform(0.35, 0.65) * width
    angle = rng.uniform(0, 2 * np.pi)
    u, v = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
    hue = (label / num_classes + rng.normal(0, 0.08)) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0))) * 255
    gradient = (xx / width)[..., None] * rng.normal(0, 40, size=3)  # (H, W, 3) a tinted slope
    image = rng.uniform(40, 200) + gradient + rng.normal(0, 10, size=(height, width, 3))
    image[_shape_mask(shape, u, v, r)] = colour
    image = np.clip(image + rng.normal(0, 8, size=image.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(image)


def write_image_folder(root: str | Path, num_train: int = 240, num_test: int = 60,
                       classes: tuple[str, ...] = ("circle", "square", "triangle"),
                       size: tuple[int, int] = (40, 64), seed: int = 0) -> Path:
    """Write ``root/shapes/``: a "bring your own data" folder in the format of ``data.folder``.

    ``train/`` holds ``num_train`` images (balanced classes) and ``annotations.json``
    (``"categories"`` = ``classes`` in the given order, ``"annotations"`` = file name and category
    of every image); ``test/`` holds ``num_test`` unlabeled images. Like real folders, sides vary
    within ``size`` (min, max) pixels and formats mix: every third image is a JPEG, the rest PNG.
    ``classes`` are shape names from ``SHAPES``. Deterministic given ``seed``; returns the folder.
    """
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"classes must be at least 2 distinct names from {SHAPES}, got {classes!r}")
    rng = np.random.default_rng(seed)

    def write_split(folder: Path, prefix: str, num: int) -> list[dict]:
        folder.mkdir()
        labels = rng.permutation(np.arange(num) % len(classes))
        entries = []
        for i, label in enumerate(labels.tolist()):  # one file per image
            image = _shape_image(label, len(classes), classes[label], rng, size)
            name = f"{prefix}_{i:04d}." + ("jpg" if i % 3 == 2 else "png")
            image.save(folder / name, **({"quality": 90} if name.endswith(".jpg") else {}))
            entries.append({"file_name": name, "category": classes[label]})
        return entries

    def write(folder: Path) -> None:
        annotations = write_split(folder / "train", "img", num_train)
        write_split(folder / "test", "test", num_test)  # labels are not written: that is the task
        content = {"categories": list(classes), "annotations": annotations}
        (folder / "train" / "annotations.json").write_text(json.dumps(content, indent=1) + "\n")

    return write_folder_atomically(Path(root) / IMAGE_FOLDER, write)


def ensure_image_folder(root: str | Path | None = None) -> Path:
    """The synthetic shapes folder under ``root`` (default ``synthetic_root()``), written once."""
    root = Path(root) if root is not None else synthetic_root()
    if not (root / IMAGE_FOLDER / "train" / "annotations.json").is_file():
        write_image_folder(root)
    return root / IMAGE_FOLDER
