"""Checks of lesson 06 (your own dataset): ``JsonImageDataset``.

The check builds a tiny image folder in a temporary directory (greyscale, transparent and palette
images, a file in a subfolder, files that are not listed, a class list in the file in another
order than the one given) and compares the student's dataset with ``folder.AnnotatedImageFolder``.
Beyond items and labels, it tries what one pass over a folder cannot show: no transform (the
item is then a PIL image), a root given as a string, a file changed after ``__init__`` (images are
opened in ``__getitem__``, not all read in ``__init__``), and an unknown category (a
``ValueError`` in ``__init__`` that names the file and the category).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from course_utils.checks.verdicts import check_close, check_equal, check_shape
from course_utils.data import folder

CLASSES = ("dog", "cat", "bird")  # deliberately not sorted
ENTRIES = [("b.png", "cat"), ("a.jpg", "bird"), ("c.png", "dog"), ("more/g.png", "cat"), ("d.png", "cat"),
           ("e.png", "bird")]


def write_tiny_folder(root: Path, entries: Sequence[tuple[str, str]] = ENTRIES) -> None:
    """Six listed images of several kinds, two unlisted files, and annotations.json (with its own class order)."""
    (root / "more").mkdir(exist_ok=True)
    Image.new("RGB", (12, 10), (200, 30, 30)).save(root / "b.png")
    Image.new("L", (9, 14), 90).save(root / "a.jpg")  # greyscale JPEG
    Image.new("RGBA", (10, 10), (0, 120, 250, 128)).save(root / "c.png")  # with transparency
    palette = Image.new("P", (11, 7), 1)  # palette PNG: pixels store index 1, drawn with the palette's colour
    palette.putpalette([0, 0, 0, 40, 160, 90] + [0] * 762)
    palette.save(root / "more" / "g.png")
    Image.new("RGB", (16, 8), (20, 220, 20)).save(root / "d.png")
    Image.new("RGB", (8, 12), (250, 250, 0)).save(root / "e.png")
    Image.new("RGB", (8, 8)).save(root / "f.png")  # not listed: not items
    Image.new("RGB", (8, 8)).save(root / "h.jpg")
    (root / "annotations.json").write_text(json.dumps({
        "categories": sorted(CLASSES),  # the file's own order: the classes given to the dataset win
        "annotations": [{"file_name": name, "category": category} for name, category in entries]}))


def _describe(item: object) -> str:
    if isinstance(item, Image.Image):
        return f"PIL image, mode {item.mode}, size {item.size}"
    return type(item).__name__


def _items(dataset: Dataset) -> list:
    return [dataset[i] for i in range(len(dataset))]


def _pixels(items: list) -> object:
    """The images of ``items`` as one flat tensor (sizes may differ); the first odd item as it is."""
    images = [image for image, _ in items]
    odd = next((image for image in images if not isinstance(image, torch.Tensor)), None)
    return odd if odd is not None else torch.cat([image.flatten() for image in images])


def check_json_dataset(JsonImageDataset: type[Dataset]) -> None:
    """Question: ``JsonImageDataset(root, classes, transform=None)``: items in the file's order,
    ``label = classes.index(category)`` (an int), images opened as RGB in ``__getitem__``, a
    ``ValueError`` naming the file and the category for an unknown category."""
    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Resize((8, 8))])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_tiny_folder(root)
        mine = JsonImageDataset(str(root), CLASSES, transform=transform)  # a root given as a string works too
        reference = folder.AnnotatedImageFolder(root, CLASSES, transform=transform)
        check_equal(len(mine), len(ENTRIES), name="number of items")
        items = _items(mine)
        labels = [label for _, label in items]
        check_equal(labels, reference.targets, name="labels in file order (positions in the given classes)")
        check_equal(sorted({type(label).__name__ for label in labels}), ["int"], name="type of the labels")
        check_shape(items[2][0], (3, 8, 8), name="item 2 after the transform")
        check_close(_pixels(items), _pixels(_items(reference)),
                    name="pixel values (greyscale, transparent and palette files as RGB)")

        plain = JsonImageDataset(root, CLASSES)
        check_equal(_describe(plain[0][0]), "PIL image, mode RGB, size (12, 10)", name="item 0 without a transform")
        Image.new("RGB", (12, 10), (10, 10, 240)).save(root / "b.png")  # the file changes after __init__
        check_close(transform(plain[0][0]), reference[0][0],
                    name="item 0 read from the file as it is now (opened in __getitem__)")

        write_tiny_folder(root, ENTRIES + [("f.png", "fish")])
        try:
            JsonImageDataset(root, CLASSES)
            verdict = "no error"
        except ValueError as error:
            verdict = "ValueError naming file and category" if "fish" in str(error) and "f.png" in str(error) \
                else "ValueError without the file or category name"
        check_equal(verdict, "ValueError naming file and category", name="unknown category 'fish' (in __init__)")
