"""Lessons 03-06: every graded check cell rejects plausible wrong answers and accepts right ones
written another way.

The tables below are run by ``test_check_cells`` with its harness (the lesson's setup cell, its
solution cells with a text replacement, then the question's check cells, in one namespace). The wrong answers here are the
kinds that one ``eval()`` forward of one input under ``no_grad``, with every argument at its
default, lets through: BatchNorm settings, clipping activations, an encoder under ``no_grad`` or
``.detach()``ed skips, another ``ignore_index`` or ``num_classes``, ``dx != dy``, dtypes, counts
above 2**31, a ``Dataset`` that crashes without a transform. At least three per question.
"""

from __future__ import annotations

import pytest

L03, L04, L05, L06 = ("03_voc_segmentation_data.ipynb", "04_unet_voc.ipynb", "05_resnet_unet_voc.ipynb",
                      "06_custom_dataset_classifier.ipynb")

# (lesson, question, the mistake: {solution text: wrong text})
MISTAKES = {
    # 03 Q1 pixel_accuracy
    "03 pixel accuracy hard-codes 255": (L03, "1", {
        "valid = masks != ignore_index": "valid = masks != 255"}),
    "03 pixel accuracy skips pixels by the prediction": (L03, "1", {
        "valid = masks != ignore_index": "valid = preds != ignore_index"}),
    "03 pixel accuracy averaged per image": (L03, "1", {
        "return correct.sum().item() / valid.sum().item()":
        "return (correct.sum((1, 2)) / valid.sum((1, 2))).mean().item()"}),
    "03 pixel accuracy counts a void pixel predicted as void as right": (L03, "1", {
        "correct = (preds == masks) & valid": "correct = preds == masks"}),
    "03 pixel accuracy marks void in the caller's masks": (L03, "1", {
        "valid = masks != ignore_index  # (N, H, W) bool":
        "masks[masks == ignore_index] = -1  # in place: the caller's masks change\n    valid = masks >= 0"}),
    # 03 Q2 confusion_matrix
    "03 confusion matrix keeps every value but 255": (L03, "2", {
        "keep = (masks >= 0) & (masks < num_classes)": "keep = masks != 255"}),
    "03 confusion matrix keeps negative mask values": (L03, "2", {
        "keep = (masks >= 0) & (masks < num_classes)": "keep = masks < num_classes"}),
    "03 confusion matrix returned as float32": (L03, "2", {
        "return counts.reshape(num_classes, num_classes)": "return counts.reshape(num_classes, num_classes).float()"}),
    "03 confusion matrix with histc": (L03, "2", {
        "counts = torch.bincount(pairs, minlength=num_classes ** 2)":
        "counts = torch.histc(pairs.float(), bins=num_classes ** 2, min=0, max=num_classes ** 2 - 1)"}),
    "03 confusion matrix without minlength": (L03, "2", {
        "torch.bincount(pairs, minlength=num_classes ** 2)": "torch.bincount(pairs)"}),
    # 03 Q3 iou_from_confusion
    "03 IoU computed in int32": (L03, "3", {"cm = cm.double()": "cm = cm.int()"}),
    "03 IoU computed in float16": (L03, "3", {"cm = cm.double()": "cm = cm.half()"}),
    "03 IoU union without the overlap": (L03, "3", {
        "union = cm.sum(1) + cm.sum(0) - tp": "union = cm.sum(1) + cm.sum(0)"}),
    "03 IoU is the recall": (L03, "3", {"union = cm.sum(1) + cm.sum(0) - tp": "union = cm.sum(1)"}),
    "03 mIoU over the classes in the truth only": (L03, "3", {
        "return iou, float(iou.nanmean())": "return iou, float(iou[cm.sum(1) > 0].nanmean())"}),
    # 03 Q4 SingleConv
    "03 SingleConv ignores num_classes": (L03, "4", {
        "nn.Conv2d(in_channels, num_classes, kernel_size=3": "nn.Conv2d(in_channels, 21, kernel_size=3"}),
    "03 SingleConv ignores in_channels": (L03, "4", {
        "nn.Conv2d(in_channels, num_classes, kernel_size=3": "nn.Conv2d(3, num_classes, kernel_size=3"}),
    "03 SingleConv without bias": (L03, "4", {"kernel_size=3, padding=1)": "kernel_size=3, padding=1, bias=False)"}),
    "03 SingleConv pads by reflection": (L03, "4", {
        "kernel_size=3, padding=1)": 'kernel_size=3, padding=1, padding_mode="reflect")'}),
    "03 SingleConv detaches its output": (L03, "4", {
        "return self.conv(x)  # (N, num_classes, H, W)": "return self.conv(x).detach()"}),
    # 04 Q1 DoubleConv
    "04 DoubleConv BatchNorm momentum 0.9 (Keras)": (L04, "1", {
        "nn.BatchNorm2d(out_channels)": "nn.BatchNorm2d(out_channels, momentum=0.9)"}),
    "04 DoubleConv BatchNorm eps 1e-3": (L04, "1", {
        "nn.BatchNorm2d(out_channels)": "nn.BatchNorm2d(out_channels, eps=1e-3)"}),
    "04 DoubleConv ReLU6": (L04, "1", {"nn.ReLU(inplace=True)": "nn.ReLU6(inplace=True)"}),
    "04 DoubleConv LeakyReLU": (L04, "1", {"nn.ReLU(inplace=True)": "nn.LeakyReLU(0.1, inplace=True)"}),
    "04 DoubleConv convs with bias": (L04, "1", {"padding=1, bias=False)": "padding=1)"}),
    "04 DoubleConv ends with dropout": (L04, "1", {
        "            nn.ReLU(inplace=True),\n        )": "            nn.ReLU(inplace=True),\n            nn.Dropout2d(0.1),\n        )"}),
    # 04 Q2 Up
    "04 Up pads with dx and dy swapped": (L04, "2", {
        "[dx // 2, dx - dx // 2, dy // 2, dy - dy // 2]": "[dy // 2, dy - dy // 2, dx // 2, dx - dx // 2]"}),
    "04 Up with align_corners=False": (L04, "2", {
        'mode="bilinear", align_corners=True)': 'mode="bilinear", align_corners=False)'}),
    "04 Up detaches the skip": (L04, "2", {"torch.cat([skip, x], dim=1)": "torch.cat([skip.detach(), x], dim=1)"}),
    "04 Up pads by replicating the border": (L04, "2", {
        "dy // 2, dy - dy // 2])  # (N, C, H, W)": 'dy // 2, dy - dy // 2], mode="replicate")  # (N, C, H, W)'}),
    "04 Up interpolates to the skip's size instead of x2 and pad": (L04, "2", {
        "x = self.up(x)  # (N, C, 2h, 2w)":
        'x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)'}),
    # 04 Q3 UNet
    "04 UNet encoder under no_grad": (L04, "3", {
        "x1, x2, x3, x4, x5 = self.encode(x)":
        "with torch.no_grad():\n            x1, x2, x3, x4, x5 = self.encode(x)"}),
    "04 UNet detached skips": (L04, "3", {
        "x = self.up1(x5, x4)": "x = self.up1(x5, x4.detach())", "x = self.up2(x, x3)": "x = self.up2(x, x3.detach())",
        "x = self.up3(x, x2)": "x = self.up3(x, x2.detach())", "x = self.up4(x, x1)": "x = self.up4(x, x1.detach())"}),
    "04 UNet encode returns the maps coarse to fine": (L04, "3", {
        "return [x1, x2, x3, x4, x5]": "return [x5, x4, x3, x2, x1]",
        "x1, x2, x3, x4, x5 = self.encode(x)": "x5, x4, x3, x2, x1 = self.encode(x)"}),
    "04 UNet without the 1x1 head": (L04, "3", {"return self.outc(x)  # (N, 21, H, W)": "return x"}),
    # 05 Q1 encoder_features
    "05 encoder features under no_grad": (L05, "1", {
        "stem = net.relu(net.bn1(net.conv1(x)))  # (N, 64, H/2, W/2): before the max-pool":
        "with torch.no_grad():\n        stem = net.relu(net.bn1(net.conv1(x)))"}),
    "05 encoder features detached": (L05, "1", {
        "return [stem, x1, x2, x3, x4]": "return [stem.detach(), x1.detach(), x2.detach(), x3.detach(), x4]"}),
    "05 encoder features via the course-only net.features": (L05, "1", {
        "return [stem, x1, x2, x3, x4]": "return net.features(x)"}),
    "05 encoder features coarse to fine": (L05, "1", {"return [stem, x1, x2, x3, x4]": "return [x4, x3, x2, x1, stem]"}),
    "05 encoder features run the stem twice": (L05, "1", {
        "x1 = net.layer1(net.maxpool(stem))": "x1 = net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))"}),
    # 05 Q2 DecoderBlock
    "05 decoder with align_corners=True": (L05, "2", {
        'mode="bilinear", align_corners=False)  # (N, in, H, W)': 'mode="bilinear", align_corners=True)  # (N, in, H, W)'}),
    "05 decoder upsamples x2 instead of to the skip's size": (L05, "2", {
        'size=skip.shape[-2:], mode="bilinear", align_corners=False)  # (N, in, H, W)':
        'scale_factor=2, mode="bilinear", align_corners=False)  # (N, in, H, W)'}),
    "05 decoder swaps height and width": (L05, "2", {
        'size=skip.shape[-2:], mode="bilinear", align_corners=False)  # (N, in, H, W)':
        'size=(skip.shape[-1], skip.shape[-2]), mode="bilinear", align_corners=False)'}),
    "05 decoder detaches the skip": (L05, "2", {
        "return self.conv(torch.cat([skip, x], dim=1))": "return self.conv(torch.cat([skip.detach(), x], dim=1))"}),
    "05 decoder with bicubic upsampling": (L05, "2", {
        'mode="bilinear", align_corners=False)  # (N, in, H, W)': 'mode="bicubic", align_corners=False)'}),
    # 05 Q3 ResNetUNet
    "05 ResNetUNet encoder under no_grad": (L05, "3", {
        "stem, x1, x2, x3, x4 = resnet.encoder_features(self.encoder, x)":
        "with torch.no_grad():\n            stem, x1, x2, x3, x4 = resnet.encoder_features(self.encoder, x)"}),
    "05 ResNetUNet freezes the encoder in __init__": (L05, "3", {
        "nn.Identity(), nn.Identity()  # no classification head":
        "nn.Identity(), nn.Identity()\n        self.encoder.requires_grad_(False)"}),
    "05 ResNetUNet ignores num_classes": (L05, "3", {
        "self.head = unet.OutConv(64, num_classes)": "self.head = unet.OutConv(64, 21)"}),
    "05 ResNetUNet keeps the classification head": (L05, "3", {
        "self.encoder.avgpool, self.encoder.fc = nn.Identity(), nn.Identity()  # no classification head": "pass"}),
    "05 ResNetUNet logits upsampled with align_corners=True": (L05, "3", {
        'return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)':
        'return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)'}),
    "05 ResNetUNet logits upsampled x2": (L05, "3", {
        'return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)':
        'return F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)'}),
    "05 ResNetUNet detached stem skip": (L05, "3", {"y = self.up1(y, stem)": "y = self.up1(y, stem.detach())"}),
    # 06 Q1 JsonImageDataset
    "06 dataset crashes without a transform": (L06, "1", {
        "        if self.transform is not None:\n            image = self.transform(image)":
        "        image = self.transform(image)"}),
    "06 dataset reads every image in __init__": (L06, "1", {
        "            self.samples.append((name, class_to_idx[category]))\n":
        "            self.samples.append((name, class_to_idx[category]))\n"
        '        self.images = [Image.open(self.root / n).convert("RGB") for n, _ in self.samples]\n',
        'with Image.open(self.root / name) as file:\n            image = file.convert("RGB")':
        "image = self.images[index]"}),
    "06 dataset returns tensor labels": (L06, "1", {"return image, label": "return image, torch.tensor(label)"}),
    "06 dataset sorts the files by name": (L06, "1", {
        'for entry in content["annotations"]:': 'for entry in sorted(content["annotations"], key=lambda e: e["file_name"]):'}),
    "06 dataset needs a Path root": (L06, "1", {"self.root = Path(root)": "self.root = root"}),
    "06 dataset takes the file's class order": (L06, "1", {
        'content = json.loads((self.root / "annotations.json").read_text())':
        'content = json.loads((self.root / "annotations.json").read_text())\n'
        '        class_to_idx = {name: i for i, name in enumerate(content.get("categories", self.classes))}'}),
    "06 dataset counts the image files of its folder": (L06, "1", {
        "return len(self.samples)": 'return len(list(self.root.glob("*.png"))) + len(list(self.root.glob("*.jpg")))'}),
    "06 dataset raises KeyError for an unknown category": (L06, "1", {
        'raise ValueError(f"{name}: unknown': 'raise KeyError(f"{name}: unknown'}),
}


def test_at_least_three_mistakes_per_question():
    covered = {}
    for lesson, question, _ in MISTAKES.values():
        covered[(lesson, question)] = covered.get((lesson, question), 0) + 1
    expected = {(L03, q) for q in "1234"} | {(L04, q) for q in "123"} | {(L05, q) for q in "123"} | {(L06, "1")}
    assert set(covered) == expected
    assert min(covered.values()) >= 3, covered


# Right answers written another way: full marks (the stored answer, byte for byte).
ALTERNATIVES = {
    "03 pixel accuracy as a mean over the labelled pixels": (L03, "1", {
        "return correct.sum().item() / valid.sum().item()": "return (preds[valid] == masks[valid]).float().mean().item()"}),
    "03 pixel accuracy returned as a 0-d tensor": (L03, "1", {
        "return correct.sum().item() / valid.sum().item()": "return correct.sum() / valid.sum()"}),
    "03 confusion matrix with an extra bin for dropped pixels": (L03, "2", {
        "pairs = num_classes * masks[keep] + preds[keep]  # (K,) one number per (truth, prediction) pair":
        "pairs = torch.where(keep, num_classes * masks + preds, num_classes ** 2).flatten()",
        "counts = torch.bincount(pairs, minlength=num_classes ** 2)  # (num_classes ** 2,)":
        "counts = torch.bincount(pairs, minlength=num_classes ** 2 + 1)[:-1]"}),
    "03 IoU in float32, mIoU as a tensor": (L03, "3", {
        "cm = cm.double()": "cm = cm.float()", "return iou, float(iou.nanmean())": "return iou, iou.nanmean()"}),
    "03 SingleConv with padding='same'": (L03, "4", {
        "nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=1)":
        'nn.Conv2d(in_channels, num_classes, kernel_size=(3, 3), padding="same")'}),
    "04 DoubleConv with the defaults spelled out": (L04, "1", {
        "nn.BatchNorm2d(out_channels)": "nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.1)",
        "nn.ReLU(inplace=True)": "nn.ReLU()"}),
    "04 Up with F.interpolate and another padding formula": (L04, "2", {
        "x = self.up(x)  # (N, C, 2h, 2w)": 'x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)',
        "[dx // 2, dx - dx // 2, dy // 2, dy - dy // 2]": "(dx // 2, (dx + 1) // 2, dy // 2, (dy + 1) // 2)"}),
    "04 UNet decoder as a loop": (L04, "3", {
        "x = self.up1(x5, x4)  # (N, 512, H/8, W/8)\n        x = self.up2(x, x3)  # (N, 256, H/4, W/4)\n"
        "        x = self.up3(x, x2)  # (N, 128, H/2, W/2)\n        x = self.up4(x, x1)  # (N, 64, H, W)":
        "x = x5\n        for up, skip in zip([self.up1, self.up2, self.up3, self.up4], [x4, x3, x2, x1]):\n"
        "            x = up(x, skip)"}),
    "05 encoder features with torch.relu": (L05, "1", {
        "stem = net.relu(net.bn1(net.conv1(x)))": "stem = torch.relu(net.bn1(net.conv1(x)))"}),
    "05 decoder with nn.Upsample to the skip's size": (L05, "2", {
        'x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)':
        'x = nn.Upsample(size=tuple(skip.shape[-2:]), mode="bilinear")(x)'}),
    "05 ResNetUNet upsamples the features, then the head": (L05, "3", {
        "logits = self.head(y)  # (N, num_classes, H/2, W/2)\n"
        '        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)':
        'y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)\n'
        "        return self.head(y)"}),
    "06 dataset labels with classes.index": (L06, "1", {
        "self.samples.append((name, class_to_idx[category]))": "self.samples.append((name, self.classes.index(category)))",
        'with Image.open(self.root / name) as file:\n            image = file.convert("RGB")':
        'image = Image.open(self.root / name).convert("RGB")'}),
}


# The helpers themselves -------------------------------------------------------------------------

def test_stored_answers_hold_verdicts_shapes_and_counts_only():
    """No floats, devices or paths in a stored answer: it must be the same in every profile and on every device."""
    import re

    import nbformat

    from test_check_cells import NOTEBOOKS

    for lesson in (L03, L04, L05, L06):
        nb = nbformat.read(NOTEBOOKS / lesson, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in cell.source:
                text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
                assert text and all(line.startswith("PASS ") for line in text.splitlines()), (lesson, text)
                assert not re.search(r"\d\.\d|\b(cpu|cuda|mps)\b|/|\\", text.replace("2**31", "")), (lesson, text)


def test_voc_mask_fact_check_never_raises(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from course_utils import checks

    palette = Image.fromarray(np.array([[0, 15], [255, 3]], dtype=np.uint8), mode="L").convert("P")
    palette.save(tmp_path / "good.png")
    checks.segmentation.check_voc_mask_file(tmp_path / "good.png")
    assert capsys.readouterr().out.count("PASS ") == 2
    Image.new("RGB", (2, 2), (128, 0, 0)).save(tmp_path / "rgb.png")  # a mask saved as RGB: colours, not classes
    checks.segmentation.check_voc_mask_file(tmp_path / "rgb.png")
    assert capsys.readouterr().out.startswith("FAIL got PIL mode of a VOC mask 'RGB'")
    checks.segmentation.check_voc_mask_file(tmp_path / "missing.png")  # one line, no exception
    assert capsys.readouterr().out == "FAIL got an unreadable mask (FileNotFoundError) expected a palette PNG\n"


def test_one_in_one_out_passes_gradients_to_every_input():
    import torch

    from course_utils.checks.adapters import OneInOneOut, flat_shape
    from course_utils.models import unet

    shapes = [(2, 8, 4, 4), (2, 4, 8, 9)]
    wrapped = OneInOneOut(unet.Up(12, 4), shapes)
    assert [p.shape for p in wrapped.parameters()] == [p.shape for p in unet.Up(12, 4).parameters()]
    flat = torch.randn(flat_shape(shapes), requires_grad=True)
    out = wrapped(flat)
    assert out.shape == (2, 4 * 8 * 9)
    out.sum().backward()
    x_grad, skip_grad = flat.grad.split([8 * 4 * 4, 4 * 8 * 9], dim=1)
    assert x_grad.abs().sum() > 0 and skip_grad.abs().sum() > 0
