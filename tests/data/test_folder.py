"""Lesson 06's image folder: JSON annotations, clear errors, splits, predictions.csv, exports."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils import runtime
from course_utils.data import cifar, folder, synthetic


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic shapes folder (24 train / 6 test images); read-only."""
    return synthetic.write_image_folder(tmp_path_factory.mktemp("shapes"), num_train=24, num_test=6,
                                        size=(20, 28), seed=0)


def _write_folder(root: Path, annotations: list[tuple[str, str]], categories=None,
                  sizes=None) -> Path:
    """A hand-made folder: one solid-colour PNG per file name, and its annotations.json."""
    root.mkdir(parents=True, exist_ok=True)
    for i, (name, _) in enumerate(annotations):
        size = sizes[i] if sizes else (6, 5)
        Image.new("RGB", size, (10 * i, 20, 30)).save(root / name)
    content = {"annotations": [{"file_name": n, "category": c} for n, c in annotations]}
    if categories is not None:
        content["categories"] = categories
    (root / folder.ANNOTATIONS).write_text(json.dumps(content))
    return root


PETS = [("b.png", "dog"), ("a.png", "cat"), ("c.png", "bird"), ("d.png", "dog")]


# ------------------------------------------------------------------------------ synthetic writer
def test_write_image_folder_layout(shapes):
    assert shapes.name == synthetic.IMAGE_FOLDER
    content = json.loads((shapes / "train" / folder.ANNOTATIONS).read_text())
    assert content["categories"] == ["circle", "square", "triangle"]
    names = [a["file_name"] for a in content["annotations"]]
    assert len(names) == 24 and all((shapes / "train" / n).is_file() for n in names)
    assert [sum(a["category"] == c for a in content["annotations"]) for c in content["categories"]] == [8, 8, 8]
    assert {Path(n).suffix for n in names} == {".png", ".jpg"}  # real folders mix formats
    test_files = sorted(p.name for p in (shapes / "test").iterdir())
    assert len(test_files) == 6 and folder.ANNOTATIONS not in test_files
    with Image.open(shapes / "train" / names[0]) as image:
        assert image.mode == "RGB" and all(20 <= side <= 28 for side in image.size)


def test_write_image_folder_is_deterministic_given_seed(tmp_path):
    def files(seed, name):
        out = synthetic.write_image_folder(tmp_path / name, num_train=6, num_test=3, size=(16, 20), seed=seed)
        return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    assert files(1, "a") == files(1, "b")
    assert files(1, "a") != files(2, "c")


def test_write_image_folder_rejects_unknown_shapes(tmp_path):
    with pytest.raises(ValueError, match="hexagon"):
        synthetic.write_image_folder(tmp_path, classes=("circle", "hexagon"))


def test_ensure_image_folder_writes_once(tmp_path):
    path = synthetic.ensure_image_folder(tmp_path)
    assert path == tmp_path / synthetic.IMAGE_FOLDER and (path / "train" / folder.ANNOTATIONS).is_file()
    (path / "marker").write_text("kept")
    assert synthetic.ensure_image_folder(tmp_path) == path and (path / "marker").is_file()


# ------------------------------------------------------------------------------------- dataset
def test_items_follow_the_json_order_with_labels_from_categories(tmp_path):
    root = _write_folder(tmp_path / "pets", PETS, categories=["dog", "cat", "bird"])
    ds = folder.AnnotatedImageFolder(root)
    assert len(ds) == 4 and ds.classes == ["dog", "cat", "bird"]
    assert [ds[i][1] for i in range(4)] == [0, 1, 2, 0] == ds.targets
    image, _ = ds[2]
    assert isinstance(image, Image.Image) and image.getpixel((0, 0)) == (20, 20, 30)


def test_classes_are_sorted_names_without_a_categories_key(tmp_path):
    ds = folder.AnnotatedImageFolder(_write_folder(tmp_path / "pets", PETS))
    assert ds.classes == ["bird", "cat", "dog"] and ds.targets == [2, 1, 0, 2]


def test_classes_argument_wins_over_the_json(tmp_path):
    root = _write_folder(tmp_path / "pets", PETS, categories=["dog", "cat", "bird"])
    ds = folder.AnnotatedImageFolder(root, classes=("cat", "bird", "dog", "fish"))
    assert ds.targets == [2, 0, 1, 2] and ds.class_to_idx["fish"] == 3


def test_transform_is_applied(tmp_path):
    root = _write_folder(tmp_path / "pets", PETS, sizes=[(40, 30), (30, 50), (33, 33), (64, 20)])
    ds = folder.AnnotatedImageFolder(root, transform=folder.eval_transform(16))
    images = torch.stack([ds[i][0] for i in range(4)])
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32


def test_grey_and_rgba_images_load_as_rgb(tmp_path):
    Image.new("L", (4, 4), 77).save(tmp_path / "grey.jpg")
    Image.new("RGBA", (4, 4), (1, 2, 3, 100)).save(tmp_path / "alpha.png")
    assert folder.load_image(tmp_path / "grey.jpg").mode == "RGB"
    assert folder.load_image(tmp_path / "alpha.png").getpixel((0, 0)) == (1, 2, 3)


# -------------------------------------------------------------------------------------- errors
def test_unknown_category_raises_naming_it_and_the_file(tmp_path):
    root = _write_folder(tmp_path / "pets", PETS, categories=["dog", "cat"])
    with pytest.raises(ValueError, match=r"c\.png has the unknown category 'bird'"):
        folder.AnnotatedImageFolder(root)
    with pytest.raises(ValueError, match="'bird'"):
        folder.AnnotatedImageFolder(_write_folder(tmp_path / "b", PETS), classes=["dog", "cat"])


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="Image folder .*nowhere not found"):
        folder.AnnotatedImageFolder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere not found"):
        folder.UnlabeledImageFolder(tmp_path / "nowhere")


def test_missing_json_raises_with_the_expected_format(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"annotations\.json not found.*file_name"):
        folder.AnnotatedImageFolder(tmp_path)


def test_listed_but_missing_file_raises_naming_it(tmp_path):
    root = _write_folder(tmp_path / "pets", PETS)
    (root / "c.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 4 files .*\['c\.png'\]"):
        folder.AnnotatedImageFolder(root)


@pytest.mark.parametrize("content", [b"not an image at all", None])
def test_corrupt_image_raises_naming_the_file(tmp_path, content):
    root = _write_folder(tmp_path / "pets", PETS)
    Image.new("RGB", (64, 64), (200, 10, 10)).save(root / "a.png")
    broken = root / "a.png"
    data = broken.read_bytes()
    broken.write_bytes(content if content is not None else data[: len(data) // 2])  # garbage or truncated
    ds = folder.AnnotatedImageFolder(root)
    assert ds[0][1] == 2  # the other files still load
    with pytest.raises(RuntimeError, match=r"Cannot read the image .*a\.png"):
        ds[1]


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"images": []}', 'non-empty list under the key "annotations"'),
    ('{"annotations": [{"file_name": "a.png"}]}', 'annotation #0 .*"category"'),
    ('{"annotations": [{"file_name": "a.png", "category": "cat"}], "categories": ["cat", "cat"]}',
     "distinct names"),
])
def test_malformed_json_raises(tmp_path, text, message):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / folder.ANNOTATIONS).write_text(text)
    with pytest.raises(ValueError, match=message):
        folder.AnnotatedImageFolder(tmp_path)


def test_a_file_listed_twice_raises(tmp_path):
    root = _write_folder(tmp_path / "pets", PETS + [("a.png", "dog")])
    with pytest.raises(ValueError, match=r"a\.png is listed twice"):
        folder.AnnotatedImageFolder(root)


def _annotations_json(annotations: list[tuple[str, str]]) -> str:
    return json.dumps({"annotations": [{"file_name": n, "category": c} for n, c in annotations]})


def test_annotations_saved_with_a_byte_order_mark_are_read(tmp_path):
    path = tmp_path / folder.ANNOTATIONS  # Windows Notepad's "UTF-8 with BOM"
    path.write_bytes(_annotations_json([("a.png", "café"), ("b.png", "dog")]).encode("utf-8-sig"))
    classes, samples = folder.read_annotations(path)
    assert classes == ["café", "dog"] and samples == [("a.png", 0), ("b.png", 1)]


def test_annotations_in_latin_1_name_the_file_and_say_save_as_utf8(tmp_path):
    path = tmp_path / folder.ANNOTATIONS
    path.write_bytes(json.dumps({"annotations": [{"file_name": "a.png", "category": "café"}]},
                                ensure_ascii=False).encode("latin-1"))
    with pytest.raises(ValueError, match="save it as UTF-8") as error:
        folder.read_annotations(path)
    assert str(path) in str(error.value)
    assert not isinstance(error.value, UnicodeDecodeError)  # not Python's bare decoding error


def _labels(counts: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"{name}_{i}.png", name) for name, count in counts.items() for i in range(count)]


@pytest.mark.parametrize("counts, suspect, intended", [
    ({"dog": 12, "cat": 12, "dgo": 1}, "dgo", "dog"),  # a typo
    ({"dog": 12, "cat": 10, "Cat": 2}, "Cat", "cat"),  # another spelling
    ({"dog": 30, "cat": 30, "Cat": 30}, "Cat", "cat"),  # equal but for case, however many
    ({"dog": 150, "cat": 150, "bird": 2}, "bird", None),  # under 1 % of the images
])
def test_a_class_that_looks_like_a_typo_warns_naming_it_and_the_fix(tmp_path, counts, suspect, intended):
    path = tmp_path / folder.ANNOTATIONS
    path.write_text(_annotations_json(_labels(counts)))
    with pytest.warns(UserWarning, match=f"class '{suspect}'") as record:
        classes, _ = folder.read_annotations(path)
    assert suspect in classes  # still read as written: it is a warning, not an error
    assert len(record) == 1  # the intended class is not reported as well
    message = str(record[0].message)
    assert str(path) in message and f"{counts[suspect]} of {sum(counts.values())} images" in message
    assert '"categories"' in message
    if intended:
        assert f"looks like '{intended}' ({counts[intended]} images)" in message
        assert f'"category": "{intended}"' in message


@pytest.mark.parametrize("counts, categories", [
    ({"dog": 2, "cat": 1, "bird": 1}, None),  # a tiny set: few images everywhere is normal
    ({"car": 20, "cat": 20, "bat": 20}, None),  # close names of real classes, each with many images
    ({"dog": 12, "cat": 12, "dgo": 1}, ["cat", "dog", "dgo"]),  # the author listed every class
])
def test_ordinary_class_lists_do_not_warn(tmp_path, counts, categories):
    path = tmp_path / folder.ANNOTATIONS
    content = json.loads(_annotations_json(_labels(counts)))
    if categories is not None:
        content["categories"] = categories
    path.write_text(json.dumps(content))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        folder.read_annotations(path)


# ---------------------------------------------------------------------------- unlabeled folder
def test_unlabeled_folder_lists_images_sorted_and_skips_hidden_files(tmp_path):
    for name in ["b.JPG", "a.png", "sub/c.png", ".hidden.png", "._a.png", ".ipynb_checkpoints/x.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (5, 5)).save(tmp_path / name, format="PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = folder.UnlabeledImageFolder(tmp_path, transform=folder.eval_transform(8))
    assert ds.file_names == ["a.png", "b.JPG", "sub/c.png"]
    image, name = ds[2]
    assert name == "sub/c.png" and image.shape == (3, 8, 8)


def test_empty_unlabeled_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="No image files"):
        folder.UnlabeledImageFolder(tmp_path)


# ------------------------------------------------------------------------------ split, loaders
def test_split_is_disjoint_stratified_and_repeatable(shapes):
    ds = folder.AnnotatedImageFolder(shapes / "train")
    train, val = folder.split(ds, val_fraction=0.25, seed=3)
    assert sorted(train.indices + val.indices) == list(range(24))
    assert [sum(ds.targets[i] == c for i in val.indices) for c in range(3)] == [2, 2, 2]
    assert folder.split(ds, 0.25, seed=3)[1].indices == val.indices
    assert folder.split(ds, 0.25, seed=4)[1].indices != val.indices


def test_split_without_targets_and_bad_fractions():
    data = torch.utils.data.TensorDataset(torch.arange(10))
    train, val = folder.split(data, 0.3)
    assert len(train) == 7 and len(val) == 3
    for fraction in (0, 1.0, 0.01):
        with pytest.raises(ValueError, match="val_fraction"):
            folder.split(data, fraction)


def test_loaders_give_fixed_size_batches_and_file_names(shapes, ci_profile, capsys):
    train_loader, val_loader, test_loader = folder.loaders(ci_profile, root=shapes, val_fraction=0.25)
    assert "18 train / 6 validation / 6 unlabeled test" in capsys.readouterr().out
    images, labels = next(iter(train_loader))
    assert images.shape == (16, 3, 32, 32) and labels.dtype == torch.int64
    assert len(train_loader) == 1  # drop_last: 18 images make one batch of 16
    images, names = next(iter(test_loader))
    assert images.shape == (6, 3, 32, 32) and names[0] == "test_0000.png"


def test_validation_is_not_augmented_and_disjoint_from_train(shapes, ci_profile):
    train, val, _ = folder.datasets(ci_profile, root=shapes)
    assert not set(train.indices) & set(val.indices)
    assert torch.equal(val[0][0], val[0][0])  # deterministic
    assert not torch.equal(train[0][0], train[0][0])  # random augmentation


def test_real_profile_needs_a_root():
    with pytest.raises(ValueError, match="Pass root="):
        folder.datasets(runtime.default_profile("quick"))


# ---------------------------------------------------------------------------- predictions.csv
def test_predictions_csv_is_sorted_with_header(tmp_path):
    path = folder.write_predictions_csv(tmp_path / "out" / "predictions.csv",
                                        ["b.png", "sub/a.png", "a.png"], ["dog", "cat", "bird"])
    assert path.read_text().splitlines() == ["filename,class", "a.png,bird", "b.png,dog", "sub/a.png,cat"]
    with open(path, newline="") as f:
        assert list(csv.DictReader(f))[0] == {"filename": "a.png", "class": "bird"}


def test_predictions_csv_is_replaced_atomically(tmp_path):
    path = tmp_path / "predictions.csv"
    path.write_text("old\n")
    folder.write_predictions_csv(path, ["x.png"], ["cat"])
    assert path.read_text() == "filename,class\nx.png,cat\n"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]  # no temporary file left


def test_predictions_csv_is_untouched_when_writing_fails(tmp_path):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("cannot write this prediction")

    path = tmp_path / "predictions.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError, match="cannot write"):
        folder.write_predictions_csv(path, ["a.png", "b.png"], ["cat", Unprintable()])
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]


def test_predictions_csv_rejects_mismatched_or_duplicate_names(tmp_path):
    with pytest.raises(ValueError, match="2 file names but 1 predictions"):
        folder.write_predictions_csv(tmp_path / "p.csv", ["a", "b"], ["cat"])
    with pytest.raises(ValueError, match="twice"):
        folder.write_predictions_csv(tmp_path / "p.csv", ["a", "a"], ["cat", "dog"])
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------- export
def test_export_round_trip_of_cifar(synthetic_cifar_root, tmp_path):
    source = cifar.subset(cifar.SyntheticCIFAR10(synthetic_cifar_root, train=False), 12, seed=1)
    out = folder.export_torchvision_dataset(source, tmp_path / "train")
    back = folder.AnnotatedImageFolder(out)
    assert back.classes == list(cifar.CIFAR10_CLASSES) and len(back) == 12
    assert back.samples[0][0] == "00000.png"
    for i in range(12):
        (image, label), (again, label_back) = source[i], back[i]
        assert label_back == label
        assert np.array_equal(np.asarray(again), np.asarray(image))  # PNG is lossless


def test_export_unlabeled_writes_images_only(synthetic_cifar_root, tmp_path):
    source = cifar.subset(cifar.SyntheticCIFAR10(synthetic_cifar_root, train=False), 5)
    out = folder.export_torchvision_dataset(source, tmp_path / "test", labeled=False)
    assert sorted(p.name for p in out.iterdir()) == [f"0000{i}.png" for i in range(5)]
    assert folder.UnlabeledImageFolder(out).file_names[0] == "00000.png"


def test_export_of_tensors_needs_class_names(tmp_path):
    data = torch.utils.data.TensorDataset(torch.full((2, 3, 4, 4), 200, dtype=torch.uint8), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="classes="):
        folder.export_torchvision_dataset(data, tmp_path / "x")
    back = folder.AnnotatedImageFolder(folder.export_torchvision_dataset(data, tmp_path / "x", ["no", "yes"]))
    assert back.targets == [1, 0] and back[0][0].getpixel((0, 0)) == (200, 200, 200)


def test_export_cifar10_writes_once(synthetic_cifar_root, tmp_path, monkeypatch):
    opened = []

    def fake_open(root, train, transform, download):  # the synthetic set in place of the real one
        opened.append(train)
        return cifar.SyntheticCIFAR10(synthetic_cifar_root, train=train, transform=transform)

    monkeypatch.setattr(cifar, "open_real", fake_open)
    root = folder.export_cifar10(tmp_path / "c10", num_train=20, num_test=7, download=False)
    assert len(folder.AnnotatedImageFolder(root / "train")) == 20
    assert len(folder.UnlabeledImageFolder(root / "test")) == 7
    assert folder.export_cifar10(tmp_path / "c10", num_train=20, num_test=7, download=False) == root
    assert opened == [True, False]  # the second call found the export and read nothing
