"""Your own images: a folder of image files plus a JSON annotation file. Taught in lesson 06.

The layout this module reads (and ``export_torchvision_dataset`` / ``synthetic.write_image_folder``
write)::

    my_dataset/
      train/annotations.json   {"categories": ["cat", "dog"],            <- optional: the class list
                                "annotations": [{"file_name": "0001.jpg", "category": "dog"}, ...]}
      train/0001.jpg ...       file names are relative to the folder holding annotations.json
      test/0001.jpg ...        no labels: the model predicts them -> predictions.csv

Class list and label numbers: the ``classes`` argument if given, else the JSON's ``"categories"``
(in that order), else the sorted category names found in the annotations. With a given list, a
category outside it is an error (a typo such as "dgo" would otherwise become a new class).
Items keep the order of the JSON. Every listed file must exist; problems raise with the file name.
"""

from __future__ import annotations

import csv
import difflib
import json
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from course_utils import runtime
from course_utils.constants import CIFAR10_CLASSES, IMAGENET_MEAN, IMAGENET_STD
from course_utils.data import cifar, loading, synthetic
from course_utils.files import write_atomically, write_folder_atomically

ANNOTATIONS = "annotations.json"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MEAN, STD = IMAGENET_MEAN, IMAGENET_STD  # the usual default for photos of any kind


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB (greyscale, palette and RGBA files too); a bad file names itself."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # decodes now, so a truncated file fails here
    except (OSError, ValueError, SyntaxError) as error:  # PIL's errors for unreadable files
        raise RuntimeError(f"Cannot read the image {path} ({type(error).__name__}: {error}). "
                           f"Replace the file, or delete it and its entry from {ANNOTATIONS}.") from None


def _warn_about_likely_typos(path: Path, categories: list[str]) -> None:
    """Warn about classes that look like a mislabelled category rather than a class of its own.

    Without a class list, every distinct name becomes a class, so a typo ("dgo") or another
    spelling ("Cat") silently adds one. Suspicious: a name equal to another but for case or
    spaces; a name close to a much bigger class's (difflib); a class with very few images
    (under 1 % of them, or under 3 when another class has 10 or more).
    """
    counts = Counter(categories)
    total, most = len(categories), max(counts.values())
    explained = set()  # the likely intended classes, not reported as typos themselves
    for name in sorted(counts, key=lambda c: (counts[c], c)):  # smallest classes first
        if name in explained:
            continue
        others = [c for c in counts if c != name]
        same = [c for c in others if c.strip().lower() == name.strip().lower()]
        close = same or difflib.get_close_matches(name, others, n=1, cutoff=0.6)
        intended = close[0] if close else None
        few = counts[name] < total / 100 or (counts[name] < 3 and most >= 10)
        much_smaller = intended is not None and counts[name] * 5 <= counts[intended]
        if not (same or few or much_smaller):
            continue
        if intended is not None:
            explained.add(intended)
            what = (f"the class {name!r} ({counts[name]} of {total} images) looks like {intended!r} "
                    f"({counts[intended]} images) written differently")
        else:
            what = f"the class {name!r} has only {counts[name]} of {total} images"
        fix = f'"category": "{intended}"' if intended is not None else "the intended class"
        warnings.warn(
            f"{path}: {what}. Without a \"categories\" list every distinct category name becomes a "
            f"class. If it is a mistake, fix those annotations ({fix}); either way, add "
            f"\"categories\": [...] naming every class (then a misspelt category is an error).",
            stacklevel=3)


def read_annotations(path: str | Path, classes: Sequence[str] | None = None
                     ) -> tuple[list[str], list[tuple[str, int]]]:
    """Parse an annotation file: ``(classes, [(file_name, label), ...])`` in the file's order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Annotation file {path} not found. Expected JSON like "
            f'{{"annotations": [{{"file_name": "0001.jpg", "category": "dog"}}, ...]}} next to the images.')
    try:  # utf-8-sig: also reads the byte-order mark that Windows Notepad puts first
        content = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {error.object[error.start]:#x} at position {error.start}): "
            f"it was probably saved as Latin-1/ANSI. Open it in an editor and save it as UTF-8 "
            f"(Notepad: File > Save as > Encoding: UTF-8).") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    entries = content.get("annotations") if isinstance(content, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f'{path} needs a non-empty list under the key "annotations".')
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("file_name"), str)
                and isinstance(entry.get("category"), str)):
            raise ValueError(f'{path}: annotation #{i} is {entry!r}; each one needs the strings '
                             f'"file_name" and "category".')
    if classes is None:
        classes = content.get("categories")
    if classes is None:
        classes = sorted({entry["category"] for entry in entries})
        _warn_about_likely_typos(path, [entry["category"] for entry in entries])
    classes = list(classes)
    if not classes or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise ValueError(f"{path}: the class list must hold distinct names, got {classes!r}.")
    class_to_idx = {name: i for i, name in enumerate(classes)}
    samples, seen = [], set()
    for entry in entries:
        name, category = entry["file_name"], entry["category"]
        if category not in class_to_idx:
            raise ValueError(f"{path}: {name} has the unknown category {category!r}; known classes: "
                             f"{classes}. Fix the annotation, or add the class to the list.")
        if name in seen:
            raise ValueError(f"{path}: {name} is listed twice; it could land in train and validation.")
        seen.add(name)
        samples.append((name, class_to_idx[category]))
    return classes, samples


class AnnotatedImageFolder(Dataset):
    """Images listed in ``root/annotations.json``: item k -> ``(transform(image), label)``.

    Attributes, as in torchvision's ``ImageFolder``: ``classes``, ``class_to_idx``, ``samples``
    (``[(file_name, label), ...]``) and ``targets``. Without a transform the image is a PIL image.
    """

    def __init__(self, root: str | Path, classes: Sequence[str] | None = None, transform=None,
                 annotation_file: str | Path = ANNOTATIONS) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Image folder {self.root} not found; check the path "
                                    f"(relative paths start from the notebook's folder).")
        self.classes, self.samples = read_annotations(self.root / annotation_file, classes)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.targets = [label for _, label in self.samples]
        self.transform = transform
        missing = [name for name, _ in self.samples if not (self.root / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of the {len(self.samples)} files listed in {annotation_file} are missing "
                f"under {self.root}, e.g. {missing[:3]}. Remove their entries or restore the files.")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        name, label = self.samples[index]
        image = load_image(self.root / name)
        return (self.transform(image) if self.transform is not None else image), label


class UnlabeledImageFolder(Dataset):
    """Every image file under ``root`` (sorted, subfolders included): item k -> ``(image, file_name)``.

    ``file_name`` is relative to ``root`` with "/" separators, the key of ``predictions.csv``.
    Hidden files are skipped (e.g. macOS's "._photo.jpg", which are not images).
    """

    def __init__(self, root: str | Path, transform=None, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Image folder {self.root} not found; check the path.")
        paths = (p.relative_to(self.root) for p in self.root.rglob("*") if p.suffix.lower() in extensions)
        self.file_names = sorted(p.as_posix() for p in paths if not any(s.startswith(".") for s in p.parts))
        if not self.file_names:
            raise FileNotFoundError(f"No image files ({', '.join(extensions)}) under {self.root}.")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.file_names)

    def __getitem__(self, index: int):
        name = self.file_names[index]
        image = load_image(self.root / name)
        return (self.transform(image) if self.transform is not None else image), name


def train_transform(size: int) -> v2.Compose:
    """Strong augmentation for a small dataset: random zoomed crop, flip, rotation, colour jitter.

    ``scale=(0.35, 1)``: the default 0.08 would leave a few pixels of a small image. The random
    transforms run on the PIL image (PIL's C code: several times faster than tensor ops on
    small images), then ``ToImage`` makes the (3, size, size) tensor.
    """
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),  # PIL (size, size)
        v2.RandomHorizontalFlip(),
        v2.RandomRotation(15),
        v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
        v2.ToImage(),  # PIL -> uint8 tensor (3, size, size)
        v2.ToDtype(torch.float32, scale=True),  # 0..255 -> 0..1
        v2.Normalize(MEAN, STD),
        v2.ToPureTensor(),
    ])


def eval_transform(size: int) -> v2.Compose:
    """No randomness: shorter side to ``size``, centre crop, normalise -> (3, size, size)."""
    return v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.ToImage(),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD), v2.ToPureTensor()])


def split(dataset: Dataset, val_fraction: float = 0.2, seed: int = 0) -> tuple[Subset, Subset]:
    """A fixed random (train, validation) split of ``dataset`` into two ``Subset``s.

    Stratified when the dataset has ``targets``: each class keeps its share in both parts. The
    same ``seed`` on two views of one folder (train and eval transforms) gives the same split.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (e.g. 0.2), got {val_fraction}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    if hasattr(dataset, "targets"):
        targets = torch.as_tensor(dataset.targets)[order]
        val = torch.cat([order[targets == c][:round(val_fraction * int((targets == c).sum()))]
                         for c in targets.unique()])
    else:
        val = order[:round(val_fraction * len(dataset))]
    is_val = torch.zeros(len(dataset), dtype=torch.bool)
    is_val[val] = True
    if is_val.all() or not is_val.any():
        raise ValueError(f"Splitting {len(dataset)} items with val_fraction={val_fraction} leaves one "
                         f"part empty; use more images or another fraction.")
    return (Subset(dataset, torch.nonzero(~is_val).flatten().tolist()),
            Subset(dataset, torch.nonzero(is_val).flatten().tolist()))


def _dataset_root(profile: runtime.Profile, root: str | Path | None) -> Path:
    if root is not None:
        return Path(root)
    if profile.synthetic:
        return synthetic.ensure_image_folder()
    raise ValueError("Pass root= your dataset folder (holding train/annotations.json and test/), "
                     "e.g. root=folder.export_cifar10() to practise on CIFAR-10 images.")


def datasets(profile: runtime.Profile, root: str | Path | None = None, val_fraction: float = 0.2,
             augment: bool = True, seed: int = 0) -> tuple[Dataset, Dataset, Dataset]:
    """(train, val, test) for ``root`` (ci default: the synthetic shapes folder).

    train and val split ``root/train`` (train with ``train_transform`` if ``augment``, val
    without augmentation); test is ``root/test`` (unlabeled). Images become
    ``(3, profile.image_size, profile.image_size)``; ``train_subset``/``eval_subset`` apply.
    """
    root = _dataset_root(profile, root)
    size = profile.image_size
    train_view = AnnotatedImageFolder(root / "train", transform=train_transform(size) if augment
                                      else eval_transform(size))
    eval_view = AnnotatedImageFolder(root / "train", transform=eval_transform(size))
    train, _ = split(train_view, val_fraction, seed)
    _, val = split(eval_view, val_fraction, seed)
    test = UnlabeledImageFolder(root / "test", transform=eval_transform(size))
    return loading.subset(train, profile.train_subset, seed), loading.subset(val, profile.eval_subset, seed), test


def loaders(profile: runtime.Profile, root: str | Path | None = None, val_fraction: float = 0.2,
            augment: bool = True, seed: int = 0) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train_loader, val_loader, test_loader); prints one line saying which data is used."""
    train, val, test = datasets(profile, root, val_fraction=val_fraction, augment=augment, seed=seed)
    train_loader, val_loader = loading.make_loaders(train, val, profile, seed=seed)
    test_loader = DataLoader(test, batch_size=profile.batch_size, shuffle=False,
                             num_workers=profile.num_workers, pin_memory=torch.cuda.is_available())
    print(f"Image folder {test.root.parent}: {len(train):,} train / {len(val):,} validation / "
          f"{len(test):,} unlabeled test images, {profile.image_size} px, augment={augment}")
    return train_loader, val_loader, test_loader


def write_predictions_csv(path: str | Path, file_names: Sequence[str], class_names: Sequence[str]) -> Path:
    """Write ``filename,class`` rows sorted by file name; ``class_names[i]`` is the prediction of file i.

    Written to a temporary file, then renamed: an interrupted run never leaves half a CSV.
    """
    path = Path(path)
    file_names, class_names = list(file_names), list(class_names)
    if len(file_names) != len(class_names):
        raise ValueError(f"Got {len(file_names)} file names but {len(class_names)} predictions; "
                         f"pass one class name per file.")
    if len(set(file_names)) != len(file_names):
        raise ValueError("A file name appears twice; each test image needs exactly one prediction.")
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f) -> None:
        writer = csv.writer(f)
        writer.writerow(["filename", "class"])
        writer.writerows(sorted(zip(file_names, class_names)))

    return write_atomically(path, write, text=True)


def export_torchvision_dataset(dataset: Dataset, root: str | Path, classes: Sequence[str] | None = None,
                               labeled: bool = True, image_format: str = "png") -> Path:
    """Write a classification dataset (items ``(PIL image or uint8 tensor, int label)``) as a folder.

    Works for any torchvision classification dataset opened without a transform (CIFAR10,
    Flowers102, ...). ``root`` gets one file per item, ``00000.png``, ... (names say nothing about
    the class) and, if ``labeled``, ``annotations.json`` with ``classes`` (default
    ``dataset.classes``) as its ``"categories"``; ``labeled=False`` writes a test folder, images
    only. Written into a temporary folder, then renamed: an existing ``root`` is replaced, unless
    it already holds exactly these files, in which case it is kept (someone may be reading it).
    """
    if classes is None:
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        classes = getattr(base, "classes", None)
        if classes is None and labeled:
            raise ValueError("Pass classes=[...] (the class names, in label order): the dataset has no .classes.")
    digits = max(5, len(str(len(dataset) - 1)))

    def write(tmp: Path) -> None:
        annotations = []
        for i in range(len(dataset)):  # one file per image
            image, label = dataset[i]
            if isinstance(image, torch.Tensor):
                image = TF.to_pil_image(image)
            name = f"{i:0{digits}d}.{image_format}"
            image.convert("RGB").save(tmp / name)
            if labeled:
                annotations.append({"file_name": name, "category": classes[int(label)]})
        if labeled:
            content = {"categories": list(classes), "annotations": annotations}
            (tmp / ANNOTATIONS).write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")

    return write_folder_atomically(Path(root), write)


def export_cifar10(root: str | Path | None = None, num_train: int = 5000, num_test: int = 1000,
                   download: bool = True, seed: int = 0) -> Path:
    """CIFAR-10 as an image folder (``root/train`` labeled, ``root/test`` unlabeled), exported once.

    Fixed random subsets of ``num_train`` training and ``num_test`` test images (all: None). The
    real CIFAR-10 is read from ``runtime.data_root()`` (downloaded, ~170 MB, if ``download``).
    Default ``root``: ``data_root()/cifar10_folder_<num_train>_<num_test>``.
    """
    data = runtime.data_root()
    root = Path(root) if root is not None else data / f"cifar10_folder_{num_train}_{num_test}"
    if (root / "train" / ANNOTATIONS).is_file() and (root / "test").is_dir():
        return root  # already exported
    if download:
        cifar.download(data)
    train = cifar.open_real(data, train=True, transform=None, download=False)
    test = cifar.open_real(data, train=False, transform=None, download=False)
    export_torchvision_dataset(loading.subset(train, num_train, seed), root / "train", CIFAR10_CLASSES)
    export_torchvision_dataset(loading.subset(test, num_test, seed), root / "test", labeled=False)
    return root
