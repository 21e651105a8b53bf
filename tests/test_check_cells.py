"""Every graded check cell rejects a plausible wrong answer, not only a missing one.

``test_notebooks`` proves that a stub (``raise NotImplementedError``) fails its check cells. A
check that passes a *wrong* implementation is just as useless, and easier to miss: a fresh
BatchNorm is the identity in ``eval()``, a square layer has the same fan-in and fan-out, ...
Here each lesson's solution gets one typical mistake (a text replacement in its solution cells),
and the question's check cells must print a ``FAIL`` line or raise (as the grader, which scores
a question by all its check cells).

The cells run in one namespace: the lesson's setup cell (profile ``ci``), the solution cells and
the question's check cells, in order. That is all a check cell needs (they are self-contained);
``test_unchanged_solutions_give_the_stored_answers`` proves this harness reproduces the stored
output, so a FAIL below comes from the mistake, not from the harness.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def check_cells(nb, question: str) -> list[int]:
    """Indices of the check cells of ``# Question <question>``."""
    return [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            and "NBVAL_CHECK_OUTPUT" in cell.source and re.search(rf"^# Question {question}$", cell.source, re.M)]


def run_checks(lesson: str, question: str, mistake: dict[str, str] | None = None) -> tuple[str, str]:
    """(text printed by the question's check cells, their stored answers), with ``mistake`` applied
    to the solution cells. A check cell that raises counts as a rejection (nbval fails it)."""
    nb = nbformat.read(NOTEBOOKS / lesson, as_version=4)
    checks = check_cells(nb, question)
    setup = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and "get_profile" in cell.source)
    solutions = [i for i, cell in enumerate(nb.cells[:checks[-1]])
                 if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source]
    applied, namespace, printed = set(), {"__name__": "__main__"}, io.StringIO()
    for i in sorted({setup, *solutions, *checks}):
        source = nb.cells[i].source
        if i in checks:
            try:
                with contextlib.redirect_stdout(printed):
                    exec(compile(source, f"{lesson} cell {i}", "exec"), namespace)
            except Exception as error:
                printed.write(f"RAISED {type(error).__name__}: {error}\n")
            continue
        for old, new in (mistake or {}).items():
            if old in source:
                source, _ = source.replace(old, new), applied.add(old)
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(source, f"{lesson} cell {i}", "exec"), namespace)
    assert applied == set(mistake or {}), f"mistake not found in the solutions: {set(mistake) - applied}"
    stored = "".join(output.get("text", "") for i in checks for output in nb.cells[i].outputs
                     if output.output_type == "stream")
    return printed.getvalue(), stored


# (lesson, question, the mistake: {solution text: wrong text})
MISTAKES = {
    "00 normalize without brackets": ("00_setup.ipynb", "1", {
        "return (images - mean) / std": "return images - mean / std"}),
    "00 count_pixels keeps 255": ("00_setup.ipynb", "2", {
        "labels = mask[mask < num_classes]": "labels = mask.clamp(max=num_classes - 1)"}),
    "01 BatchNorm after the ReLU": ("01_vgg16_cifar10.ipynb", "1", {
        "        if batch_norm:\n            layers.append(nn.BatchNorm2d(v))\n        layers.append(nn.ReLU(inplace=True))":
        "        layers.append(nn.ReLU(inplace=True))\n        if batch_norm:\n            layers.append(nn.BatchNorm2d(v))"}),
    "01 head without its ReLU": ("01_vgg16_cifar10.ipynb", "2", {
        "            nn.ReLU(inplace=True),\n            nn.Dropout(0.5),": "            nn.Dropout(0.5),"}),
    "01 Kaiming with fan_in": ("01_vgg16_cifar10.ipynb", "3", {'mode="fan_out"': 'mode="fan_in"'}),
    "02 stride on the 1x1 conv (ResNet v1.0)": ("02_resnet50_cifar10.ipynb", "1", {
        "middle_channels, kernel_size=1, bias=False)": "middle_channels, kernel_size=1, stride=stride, bias=False)",
        "kernel_size=3, stride=stride,": "kernel_size=3, stride=1,"}),
    "02 ReLU before the add": ("02_resnet50_cifar10.ipynb", "1", {
        "out = self.bn3(self.conv3(out))": "out = self.relu(self.bn3(self.conv3(out)))",
        "return self.relu(out + identity)": "return out + identity"}),
    "02 stride in every block of a stage": ("02_resnet50_cifar10.ipynb", "2", {
        "[block(out, middle, out) for": "[block(out, middle, out, stride=stride) for"}),
    "02 max-pool without padding": ("02_resnet50_cifar10.ipynb", "3", {
        "nn.MaxPool2d(kernel_size=3, stride=2, padding=1)": "nn.MaxPool2d(kernel_size=3, stride=2)"}),
    "03 pixel accuracy counts void as wrong": ("03_voc_segmentation_data.ipynb", "1", {
        "/ valid.sum().item()": "/ masks.numel()"}),
    "03 confusion matrix transposed": ("03_voc_segmentation_data.ipynb", "2", {
        "num_classes * masks[keep] + preds[keep]": "num_classes * preds[keep] + masks[keep]"}),
    "03 mIoU counts absent classes as 0": ("03_voc_segmentation_data.ipynb", "3", {
        "float(iou.nanmean())": "float(iou.nan_to_num().mean())"}),
    "03 single conv with a 1x1 kernel": ("03_voc_segmentation_data.ipynb", "4", {
        "kernel_size=3, padding=1)": "kernel_size=1)"}),
    "04 DoubleConv: ReLU before BatchNorm": ("04_unet_voc.ipynb", "1", {
        "            nn.BatchNorm2d(out_channels),\n            nn.ReLU(inplace=True),\n            nn.Conv2d(":
        "            nn.ReLU(inplace=True),\n            nn.BatchNorm2d(out_channels),\n            nn.Conv2d("}),
    "04 Up concatenates [upsampled, skip]": ("04_unet_voc.ipynb", "2", {
        "torch.cat([skip, x], dim=1)": "torch.cat([x, skip], dim=1)"}),
    "04 Up puts the odd extra pixel before": ("04_unet_voc.ipynb", "2", {
        "[dx // 2, dx - dx // 2, dy // 2, dy - dy // 2]": "[dx - dx // 2, dx // 2, dy - dy // 2, dy // 2]"}),
    "04 UNet skips in the wrong order": ("04_unet_voc.ipynb", "3", {
        "x = self.up3(x, x2)": "x = self.up3(x, x2.flip(-1))"}),
    "05 stem without bn1": ("05_resnet_unet_voc.ipynb", "1", {
        "stem = net.relu(net.bn1(net.conv1(x)))": "stem = net.relu(net.conv1(x))"}),
    "05 stem after the max-pool": ("05_resnet_unet_voc.ipynb", "1", {
        "stem = net.relu(net.bn1(net.conv1(x)))": "stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))",
        "x1 = net.layer1(net.maxpool(stem))": "x1 = net.layer1(stem)"}),
    "05 decoder concatenates [upsampled, skip]": ("05_resnet_unet_voc.ipynb", "2", {
        "torch.cat([skip, x], dim=1)": "torch.cat([x, skip], dim=1)"}),
    "05 decoder uses nearest upsampling": ("05_resnet_unet_voc.ipynb", "2", {
        'mode="bilinear", align_corners=False)  # (N, in, H, W)': 'mode="nearest")  # (N, in, H, W)'}),
    "05 logits left at half size": ("05_resnet_unet_voc.ipynb", "3", {
        "return F.interpolate(logits, size=x.shape[-2:], mode=\"bilinear\", align_corners=False)": "return logits"}),
    "06 image not converted to RGB": ("06_custom_dataset_classifier.ipynb", "1", {
        'image = file.convert("RGB")': "image = file.copy()"}),
    "06 labels from sorted names, not the given classes": ("06_custom_dataset_classifier.ipynb", "1", {
        "class_to_idx = {name: i for i, name in enumerate(self.classes)}":
        "class_to_idx = {name: i for i, name in enumerate(sorted(self.classes))}"}),
    "07 MACs without padding": ("07_model_comparison.ipynb", "1", {
        "(height + 2 * padding - kernel_size)": "(height - kernel_size)"}),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_check_cells_reject_a_wrong_answer(name):
    lesson, question, mistake = MISTAKES[name]
    printed, stored = run_checks(lesson, question, mistake)
    assert "FAIL" not in stored
    assert "FAIL" in printed or "RAISED" in printed, (
        f"{lesson} Question {question} accepts the mistake '{name}':\n{printed}")


# Right answers written another way must pass too: (lesson, question, {solution text: other text}).
ALTERNATIVES = {
    "03 bincount as a tensor method": ("03_voc_segmentation_data.ipynb", "2", {
        "torch.bincount(pairs, minlength=num_classes ** 2)": "pairs.bincount(minlength=num_classes ** 2)"}),
    "00 count_pixels drops 255 by name": ("00_setup.ipynb", "2", {
        "labels = mask[mask < num_classes]": "labels = mask[mask != 255]"}),
}


@pytest.mark.parametrize("name", ALTERNATIVES)
def test_check_cells_accept_a_right_answer_written_another_way(name):
    lesson, question, rewrite = ALTERNATIVES[name]
    printed, stored = run_checks(lesson, question, rewrite)
    assert printed == stored


@pytest.mark.parametrize("lesson, question", sorted({(m[0], m[1]) for m in MISTAKES.values()}),
                         ids=lambda value: value[:2] if value.endswith(".ipynb") else f"Q{value}")
def test_unchanged_solutions_give_the_stored_answers(lesson, question):
    printed, stored = run_checks(lesson, question)
    assert printed == stored


def test_every_graded_check_cell_has_a_mistake_it_rejects():
    covered = {(lesson, question) for lesson, question, _ in MISTAKES.values()}
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        questions = {m.group(1) for cell in nb.cells if "NBVAL_CHECK_OUTPUT" in cell.source
                     for m in [re.search(r"^# Question (\d+)$", cell.source, re.M)] if m}
        missing = sorted(q for q in questions if (path.name, q) not in covered)
        assert not missing, f"{path.name}: no wrong answer is tried on Question(s) {missing}"
