"""Every graded check cell rejects a plausible wrong answer, not only a missing one.

``test_notebooks`` proves that a stub (``raise NotImplementedError``) fails its check cells. A
check that passes a *wrong* implementation is just as useless, and easier to miss: a fresh
BatchNorm is the identity in ``eval()``, a square layer has the same fan-in and fan-out, ...
Here each lesson's solution gets one typical mistake (a text replacement in its solution cells),
and the question's check cells must print a ``FAIL`` line and never raise (inside
``checks.question`` a check cell reports in one line, so Run All goes on). Lessons 03-06 and 08
keep their tables in ``test_check_cells_voc.py`` and ``wrong_answers_08.py``; they run here.

The cells run in one namespace: the lesson's setup cell (profile ``ci``), the solution cells and
the question's check cells, in order. That is all a check cell needs (they are self-contained);
``test_unchanged_solutions_give_the_stored_answers`` proves this harness reproduces the stored
output, so a FAIL below comes from the mistake, not from the harness.
"""

from __future__ import annotations

import collections
import contextlib
import io
import re
from pathlib import Path

import nbformat
import pytest

import test_check_cells_voc
import wrong_answers_08

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


# --- more plausible wrong answers for lessons 00, 01, 02 and 07: each check must see what one eval()
# forward of one input cannot (module settings, train mode and gradients, other arguments, odd sizes)
MISTAKES.update({
    "00 normalize edits the caller's images in place": ("00_setup.ipynb", "1", {
        "return (images - mean) / std": "return images.sub_(mean).div_(std)"}),
    "00 normalize hard-codes three channels": ("00_setup.ipynb", "1", {
        ".view(1, -1, 1, 1)": ".view(1, 3, 1, 1)"}),
    "00 normalize always returns float32": ("00_setup.ipynb", "1", {
        "return (images - mean) / std": "return ((images - mean) / std).float()"}),
    "00 count_pixels hard-codes 21 classes": ("00_setup.ipynb", "2", {
        "minlength=num_classes)": "minlength=21)"}),
    "00 count_pixels without minlength": ("00_setup.ipynb", "2", {
        "torch.bincount(labels.flatten(), minlength=num_classes)": "torch.bincount(labels.flatten())"}),
    "00 count_pixels returns float counts": ("00_setup.ipynb", "2", {
        "return torch.bincount(labels.flatten(), minlength=num_classes)":
        "return torch.histc(labels.float(), bins=num_classes, min=0, max=num_classes - 1)"}),
    "00 count_pixels overwrites 255 in the caller's mask": ("00_setup.ipynb", "2", {
        "labels = mask[mask < num_classes]  # drops 255 (void)\n    return torch.bincount(labels.flatten(), minlength=num_classes)":
        "mask[mask == 255] = num_classes\n    return torch.bincount(mask.flatten(), minlength=num_classes + 1)[:num_classes]"}),
    "01 BatchNorm momentum 0.9 (Keras habit)": ("01_vgg16_cifar10.ipynb", "1", {
        "layers.append(nn.BatchNorm2d(v))": "layers.append(nn.BatchNorm2d(v, momentum=0.9))"}),
    "01 BatchNorm eps 1e-3": ("01_vgg16_cifar10.ipynb", "1", {
        "layers.append(nn.BatchNorm2d(v))": "layers.append(nn.BatchNorm2d(v, eps=1e-3))"}),
    "01 ReLU6 in make_layers": ("01_vgg16_cifar10.ipynb", "1", {
        "        layers.append(nn.ReLU(inplace=True))": "        layers.append(nn.ReLU6(inplace=True))"}),
    "01 make_layers ignores cfg": ("01_vgg16_cifar10.ipynb", "1", {"for v in cfg:": "for v in vgg.VGG16_CFG:"}),
    "01 conv pads by reflection": ("01_vgg16_cifar10.ipynb", "1", {
        "nn.Conv2d(in_channels, v, kernel_size=3, padding=1)": 
        "nn.Conv2d(in_channels, v, kernel_size=3, padding=1, padding_mode=\"reflect\")"}),
    "01 head ignores num_classes": ("01_vgg16_cifar10.ipynb", "2", {
        "nn.Linear(512, num_classes)": "nn.Linear(512, 10)"}),
    "01 VGG16 builds its own features instead of using the argument": ("01_vgg16_cifar10.ipynb", "2", {
        "self.features = features": "self.features = make_layers(vgg.VGG16_CFG)"}),
    "01 head with dropout 0.2": ("01_vgg16_cifar10.ipynb", "2", {"nn.Dropout(0.5),": "nn.Dropout(0.2),"}),
    "01 softmax in forward": ("01_vgg16_cifar10.ipynb", "2", {
        "return self.classifier(x)  # (N, num_classes)": "return self.classifier(x).softmax(dim=1)"}),
    "01 features detached from the head": ("01_vgg16_cifar10.ipynb", "2", {
        "x = self.features(x)  # (N, 512, 1, 1)": "x = self.features(x).detach()"}),
    "01 ReLU6 in the head": ("01_vgg16_cifar10.ipynb", "2", {
        "            nn.ReLU(inplace=True),\n            nn.Dropout(0.5),": "            nn.ReLU6(inplace=True),\n            nn.Dropout(0.5),"}),
    "01 init only the direct children": ("01_vgg16_cifar10.ipynb", "3", {
        "for m in module.modules():\n        if isinstance(m, nn.Conv2d):\n            nn.init.kaiming_normal_":
        "for m in module.children():\n        if isinstance(m, nn.Conv2d):\n            nn.init.kaiming_normal_"}),
    "01 Kaiming uniform": ("01_vgg16_cifar10.ipynb", "3", {
        'nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")\n            if m.bias is not None:\n                nn.init.zeros_(m.bias)\n        elif isinstance(m, nn.BatchNorm2d):\n            nn.init.ones_(m.weight)\n            nn.init.zeros_(m.bias)\n        elif isinstance(m, nn.Linear):\n            nn.init.normal_(m.weight, 0, 0.01)\n            nn.init.zeros_(m.bias)\n    ### END':
        'nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="relu")\n            if m.bias is not None:\n                nn.init.zeros_(m.bias)\n        elif isinstance(m, nn.BatchNorm2d):\n            nn.init.ones_(m.weight)\n            nn.init.zeros_(m.bias)\n        elif isinstance(m, nn.Linear):\n            nn.init.normal_(m.weight, 0, 0.01)\n            nn.init.zeros_(m.bias)\n    ### END'}),
    "01 Kaiming std written for 3x3 kernels only": ("01_vgg16_cifar10.ipynb", "3", {
        'nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")\n            if m.bias is not None:\n                nn.init.zeros_(m.bias)\n        elif isinstance(m, nn.BatchNorm2d):\n            nn.init.ones_(m.weight)\n            nn.init.zeros_(m.bias)\n        elif isinstance(m, nn.Linear):\n            nn.init.normal_(m.weight, 0, 0.01)\n            nn.init.zeros_(m.bias)\n    ### END':
        'nn.init.normal_(m.weight, 0, (2 / (m.out_channels * 9)) ** 0.5)\n            if m.bias is not None:\n                nn.init.zeros_(m.bias)\n        elif isinstance(m, nn.BatchNorm2d):\n            nn.init.ones_(m.weight)\n            nn.init.zeros_(m.bias)\n        elif isinstance(m, nn.Linear):\n            nn.init.normal_(m.weight, 0, 0.01)\n            nn.init.zeros_(m.bias)\n    ### END'}),
    "01 Xavier for the linear layers": ("01_vgg16_cifar10.ipynb", "3", {
        "            nn.init.normal_(m.weight, 0, 0.01)\n            nn.init.zeros_(m.bias)\n    ### END":
        "            nn.init.xavier_normal_(m.weight)\n            nn.init.zeros_(m.bias)\n    ### END"}),
    "01 training loop without zero_grad": ("01_vgg16_cifar10.ipynb", "4", {
        "        optimizer.zero_grad()  # backward adds to .grad: clear the previous batch's gradient\n": ""}),
    "01 scheduler stepped once per epoch": ("01_vgg16_cifar10.ipynb", "4", {
        "        scheduler.step()  # the schedule is per batch\n": "",
        "    return loss_sum / num_images\n    ### END": "    scheduler.step()\n    return loss_sum / num_images\n    ### END"}),
    "01 training loop without model.train()": ("01_vgg16_cifar10.ipynb", "4", {
        "    model.train()  # BatchNorm on batch statistics, dropout on\n": ""}),
    "01 backward after the optimizer step": ("01_vgg16_cifar10.ipynb", "4", {
        "        loss.backward()\n        optimizer.step()\n": "        optimizer.step()\n        loss.backward()\n"}),
    "01 zero_grad between backward and step": ("01_vgg16_cifar10.ipynb", "4", {
        "        optimizer.zero_grad()  # backward adds to .grad: clear the previous batch's gradient\n        loss.backward()\n":
        "        loss.backward()\n        optimizer.zero_grad()\n"}),
    "01 loop returns the mean of batch means": ("01_vgg16_cifar10.ipynb", "4", {
        "loss_sum += loss.item() * images.shape[0]": "loss_sum += loss.item()",
        "num_images += images.shape[0]": "num_images += 1"}),
    "01 scheduler stepped before the optimizer": ("01_vgg16_cifar10.ipynb", "4", {
        "        optimizer.step()\n        scheduler.step()  # the schedule is per batch\n":
        "        scheduler.step()\n        optimizer.step()\n"}),
    "01 loop returns the last batch's loss": ("01_vgg16_cifar10.ipynb", "4", {
        "return loss_sum / num_images": "return loss.item()"}),
    "02 downsample only when the stride changes (layer1's first block)": ("02_resnet50_cifar10.ipynb", "1", {
        "if stride != 1 or in_channels != out_channels:": "if stride != 1:"}),
    "02 block BatchNorm momentum 0.9": ("02_resnet50_cifar10.ipynb", "1", {
        "self.bn1 = nn.BatchNorm2d(middle_channels)": "self.bn1 = nn.BatchNorm2d(middle_channels, momentum=0.9)"}),
    "02 block with ReLU6": ("02_resnet50_cifar10.ipynb", "1", {
        "        self.bn3 = nn.BatchNorm2d(out_channels)\n        self.relu = nn.ReLU(inplace=True)":
        "        self.bn3 = nn.BatchNorm2d(out_channels)\n        self.relu = nn.ReLU6(inplace=True)"}),
    "02 F.relu6 after the add": ("02_resnet50_cifar10.ipynb", "1", {
        "return self.relu(out + identity)": "return nn.functional.relu6(out + identity)"}),
    "02 projection shortcut detached": ("02_resnet50_cifar10.ipynb", "1", {
        "identity = x if self.downsample is None else self.downsample(x)":
        "identity = x if self.downsample is None else self.downsample(x).detach()"}),
    "02 expansion hard-coded as 4 x middle": ("02_resnet50_cifar10.ipynb", "1", {
        "self.conv3 = nn.Conv2d(middle_channels, out_channels, kernel_size=1, bias=False)\n        self.bn3 = nn.BatchNorm2d(out_channels)":
        "self.conv3 = nn.Conv2d(middle_channels, 4 * middle_channels, kernel_size=1, bias=False)\n        self.bn3 = nn.BatchNorm2d(4 * middle_channels)"}),
    "02 make_stage ignores its block argument": ("02_resnet50_cifar10.ipynb", "2", {
        "[block(in_channels, middle, out, stride=stride)]": "[ResidualBlock(in_channels, middle, out, stride=stride)]",
        "[block(out, middle, out) for": "[ResidualBlock(out, middle, out) for"}),
    "02 make_stage builds one block too many": ("02_resnet50_cifar10.ipynb", "2", {
        "for _ in range(blocks - 1)]": "for _ in range(blocks)]"}),
    "02 stride on the last block of a stage": ("02_resnet50_cifar10.ipynb", "2", {
        "layers = [block(in_channels, middle, out, stride=stride)]  # the only block that changes the shape\n    layers += [block(out, middle, out) for _ in range(blocks - 1)]":
        "layers = [block(in_channels, middle, out)]\n    layers += [block(out, middle, out, stride=stride if i == blocks - 2 else 1) for i in range(blocks - 1)]"}),
    "02 make_stage returns a ModuleList": ("02_resnet50_cifar10.ipynb", "2", {
        "return nn.Sequential(*layers)\n    ### END": "return nn.ModuleList(layers)\n    ### END"}),
    "02 fc ignores num_classes": ("02_resnet50_cifar10.ipynb", "3", {
        "self.fc = nn.Linear(2048, num_classes)": "self.fc = nn.Linear(2048, 10)"}),
    "02 stem BatchNorm momentum 0.9": ("02_resnet50_cifar10.ipynb", "3", {
        "self.bn1 = nn.BatchNorm2d(64)": "self.bn1 = nn.BatchNorm2d(64, momentum=0.9)"}),
    "02 stem with relu6 in forward": ("02_resnet50_cifar10.ipynb", "3", {
        "x = self.maxpool(self.relu(self.bn1(self.conv1(x))))": "x = self.maxpool(nn.functional.relu6(self.bn1(self.conv1(x))))"}),
    "02 pooled features detached from the stages": ("02_resnet50_cifar10.ipynb", "3", {
        "x = torch.flatten(self.avgpool(x), 1)": "x = torch.flatten(self.avgpool(x), 1).detach()"}),
    "02 CIFAR stem keeps a max-pool": ("02_resnet50_cifar10.ipynb", "3", {
        'if stem == "imagenet" else nn.Identity()': 'if stem == "imagenet" else nn.MaxPool2d(kernel_size=3, stride=1, padding=1)'}),
    "07 true division instead of //": ("07_model_comparison.ipynb", "1", {"// stride + 1": "/ stride + 1"}),
    "07 padding counted once": ("07_model_comparison.ipynb", "1", {"+ 2 * padding -": "+ padding -"}),
    "07 output width from the height": ("07_model_comparison.ipynb", "1", {
        "out_width = (width + 2 * padding": "out_width = (height + 2 * padding"}),
    "07 FLOPs instead of multiply-adds": ("07_model_comparison.ipynb", "1", {
        "return out_channels * out_height": "return 2 * out_channels * out_height"}),
    "07 output size rounded up": ("07_model_comparison.ipynb", "1", {
        "- kernel_size) // stride + 1": "- kernel_size + stride - 1) // stride + 1"}),
})


# Lessons 03-06 and 08 keep their tables in their own files; one runner for all of them.
EVERY_MISTAKE = {**MISTAKES, **test_check_cells_voc.MISTAKES, **wrong_answers_08.MISTAKES}


@pytest.mark.parametrize("name", EVERY_MISTAKE)
def test_check_cells_reject_a_wrong_answer(name):
    lesson, question, mistake = EVERY_MISTAKE[name]
    printed, stored = run_checks(lesson, question, mistake)
    assert "PASS" in stored and "FAIL" not in stored
    assert "FAIL" in printed or "RAISED" in printed, (
        f"{lesson} Question {question} accepts the mistake '{name}':\n{printed}")
    assert "RAISED" not in printed, f"a check cell stopped Run All instead of printing one line:\n{printed}"


# Right answers written another way must pass too: (lesson, question, {solution text: other text}).
ALTERNATIVES = {
    "03 bincount as a tensor method": ("03_voc_segmentation_data.ipynb", "2", {
        "torch.bincount(pairs, minlength=num_classes ** 2)": "pairs.bincount(minlength=num_classes ** 2)"}),
    "00 count_pixels drops 255 by name": ("00_setup.ipynb", "2", {
        "labels = mask[mask < num_classes]": "labels = mask[mask != 255]"}),
}


ALTERNATIVES.update({
    "00 normalize with (C, 1, 1) statistics": ("00_setup.ipynb", "1", {".view(1, -1, 1, 1)": "[:, None, None]"}),
    "00 count_pixels without flatten": ("00_setup.ipynb", "2", {
        "torch.bincount(labels.flatten(), minlength=num_classes)": "labels.bincount(minlength=num_classes)"}),
    "01 make_layers with ReLU(inplace=False) and MaxPool2d(2)": ("01_vgg16_cifar10.ipynb", "1", {
        "        layers.append(nn.ReLU(inplace=True))": "        layers.append(nn.ReLU())",
        "nn.MaxPool2d(kernel_size=2, stride=2)": "nn.MaxPool2d(2)"}),
    "01 make_layers with padding='same'": ("01_vgg16_cifar10.ipynb", "1", {
        "nn.Conv2d(in_channels, v, kernel_size=3, padding=1)": 'nn.Conv2d(in_channels, v, 3, padding="same")'}),
    "01 head with ReLU() and Dropout(p=0.5)": ("01_vgg16_cifar10.ipynb", "2", {
        "            nn.ReLU(inplace=True),\n            nn.Dropout(0.5),": "            nn.ReLU(),\n            nn.Dropout(p=0.5),"}),
    "01 init with default nonlinearity and a manual normal": ("01_vgg16_cifar10.ipynb", "3", {
        'nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")':
        "nn.init.normal_(m.weight, 0, (2 / (m.out_channels * m.kernel_size[0] * m.kernel_size[1])) ** 0.5)",
        "elif isinstance(m, nn.BatchNorm2d):": "elif isinstance(m, nn.modules.batchnorm._BatchNorm):"}),
    "01 init with kaiming_normal_ defaults and constant_": ("01_vgg16_cifar10.ipynb", "3", {
        'nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")': 'nn.init.kaiming_normal_(m.weight, mode="fan_out")',
        "            nn.init.ones_(m.weight)": "            nn.init.constant_(m.weight, 1)"}),
    "01 loop: zero_grad after the step, mean over the dataset": ("01_vgg16_cifar10.ipynb", "4", {
        "        optimizer.zero_grad()  # backward adds to .grad: clear the previous batch's gradient\n": "",
        "        optimizer.step()\n": "        optimizer.step()\n        model.zero_grad(set_to_none=False)\n",
        "return loss_sum / num_images": "return float(loss_sum / len(loader.dataset))"}),
    "01 loop: loss summed as a tensor, zero_grad first": ("01_vgg16_cifar10.ipynb", "4", {
        "loss_sum += loss.item() * images.shape[0]": "loss_sum += loss.detach() * len(labels)",
        "return loss_sum / num_images": "return (loss_sum / num_images).item()"}),
    "02 block with F.relu in forward": ("02_resnet50_cifar10.ipynb", "1", {
        "out = self.relu(self.bn1(self.conv1(x)))": "out = nn.functional.relu(self.bn1(self.conv1(x)))",
        "return self.relu(out + identity)": "return torch.relu(out + identity)"}),
    "02 make_stage with a loop and positional stride": ("02_resnet50_cifar10.ipynb", "2", {
        "layers = [block(in_channels, middle, out, stride=stride)]  # the only block that changes the shape\n    layers += [block(out, middle, out) for _ in range(blocks - 1)]":
        "layers = []\n    for i in range(blocks):\n        layers.append(block(in_channels if i == 0 else out, middle, out, stride if i == 0 else 1))"}),
    "02 ResNet50 with x.flatten(1) and AdaptiveAvgPool2d(1)": ("02_resnet50_cifar10.ipynb", "3", {
        "x = torch.flatten(self.avgpool(x), 1)": "x = self.avgpool(x).flatten(1)",
        "self.avgpool = nn.AdaptiveAvgPool2d((1, 1))": "self.avgpool = nn.AdaptiveAvgPool2d(1)"}),
    "07 conv2d_macs with math.floor and k ** 2": ("07_model_comparison.ipynb", "1", {
        "out_height = (height + 2 * padding - kernel_size) // stride + 1":
        "import math\n    out_height = math.floor((height + 2 * padding - kernel_size) / stride) + 1",
        "in_channels * kernel_size * kernel_size": "in_channels * kernel_size ** 2"}),
 "00 torchvision normalize": ("00_setup.ipynb", "1", {"    mean = torch.as_tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)\n    std = torch.as_tensor(std, dtype=images.dtype).view(1, -1, 1, 1)\n    return (images - mean) / std": "    import torchvision.transforms.functional as F2\n    return F2.normalize(images, list(mean), list(std))"}),
 "00 float32 stats": ("00_setup.ipynb", "1", {"mean = torch.as_tensor(mean, dtype=images.dtype)": "mean = torch.tensor(mean)", "std = torch.as_tensor(std, dtype=images.dtype)": "std = torch.tensor(std, dtype=images.dtype)"}),
 "00 one_hot": ("00_setup.ipynb", "2", {"return torch.bincount(labels.flatten(), minlength=num_classes)": "return torch.nn.functional.one_hot(labels.flatten(), num_classes).sum(0)"}),
 "00 bincount slice": ("00_setup.ipynb", "2", {"labels = mask[mask < num_classes]  # drops 255 (void)\n    return torch.bincount(labels.flatten(), minlength=num_classes)": "return torch.bincount(mask.flatten(), minlength=256)[:num_classes]"}),
 "01 explicit BN defaults, MaxPool2d(2, 2)": ("01_vgg16_cifar10.ipynb", "1", {"layers.append(nn.BatchNorm2d(v))": "layers.append(nn.BatchNorm2d(num_features=v, eps=1e-05, momentum=0.1))", "nn.MaxPool2d(kernel_size=2, stride=2)": "nn.MaxPool2d(2, 2)"}),
 "01 forward one line": ("01_vgg16_cifar10.ipynb", "2", {"x = self.features(x)  # (N, 512, 1, 1)\n        return self.classifier(x)  # (N, num_classes)": "return self.classifier(self.features(x))"}),
 "01 init data.normal_": ("01_vgg16_cifar10.ipynb", "3", {"            nn.init.normal_(m.weight, 0, 0.01)\n            nn.init.zeros_(m.bias)\n    ### END": "            m.weight.data.normal_(0, 0.01)\n            m.bias.data.zero_()\n    ### END"}),
 "01 loop train(True), labels.size(0)": ("01_vgg16_cifar10.ipynb", "4", {"model.train()  #": "model.train(True)  #", "loss_sum += loss.item() * images.shape[0]": "loss_sum += loss.item() * labels.size(0)", "optimizer.zero_grad()  #": "optimizer.zero_grad(set_to_none=True)  #"}),
 "02 block separate relus and explicit if": ("02_resnet50_cifar10.ipynb", "1", {"        identity = x if self.downsample is None else self.downsample(x)  # (N, out, H/s, W/s)": "        identity = x\n        if self.downsample is not None:\n            identity = self.downsample(x)", "return self.relu(out + identity)": "out = out + identity\n        return self.relu(out)", "self.relu = nn.ReLU(inplace=True)\n        self.downsample": "self.relu = nn.ReLU()\n        self.downsample"}),
 "02 resnet view": ("02_resnet50_cifar10.ipynb", "3", {"x = torch.flatten(self.avgpool(x), 1)": "x = self.avgpool(x)\n        x = x.view(x.size(0), -1)"}),
 "07 int of float": ("07_model_comparison.ipynb", "1", {"return out_channels * out_height": "return int(1.0 * out_channels) * out_height"}),
})


EVERY_ALTERNATIVE = {**ALTERNATIVES, **test_check_cells_voc.ALTERNATIVES, **wrong_answers_08.ALTERNATIVES}


@pytest.mark.parametrize("name", EVERY_ALTERNATIVE)
def test_check_cells_accept_a_right_answer_written_another_way(name):
    lesson, question, rewrite = EVERY_ALTERNATIVE[name]
    printed, stored = run_checks(lesson, question, rewrite)
    assert printed == stored


@pytest.mark.parametrize("lesson, question", sorted({(m[0], m[1]) for m in EVERY_MISTAKE.values()}),
                         ids=lambda value: value[:2] if value.endswith(".ipynb") else f"Q{value}")
def test_unchanged_solutions_give_the_stored_answers(lesson, question):
    printed, stored = run_checks(lesson, question)
    assert printed == stored


def test_every_graded_check_cell_has_a_mistake_it_rejects():
    covered = {(lesson, question) for lesson, question, _ in EVERY_MISTAKE.values()}
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        questions = {m.group(1) for cell in nb.cells if "NBVAL_CHECK_OUTPUT" in cell.source
                     for m in [re.search(r"^# Question (\d+)$", cell.source, re.M)] if m}
        missing = sorted(q for q in questions if (path.name, q) not in covered)
        assert not missing, f"{path.name}: no wrong answer is tried on Question(s) {missing}"


@pytest.mark.parametrize("lesson", ["00_setup.ipynb", "01_vgg16_cifar10.ipynb", "02_resnet50_cifar10.ipynb",
                                    "07_model_comparison.ipynb"])
def test_each_question_of_lessons_00_to_02_and_07_rejects_three_mistakes(lesson):
    """Issue 19.1: at least three plausible wrong answers per question (one catches little)."""
    nb = nbformat.read(NOTEBOOKS / lesson, as_version=4)
    questions = {m.group(1) for cell in nb.cells if "NBVAL_CHECK_OUTPUT" in cell.source
                 for m in [re.search(r"^# Question (\d+)$", cell.source, re.M)] if m}
    tried = collections.Counter(q for name, (path, q, _) in MISTAKES.items() if path == lesson)
    assert {q: tried[q] for q in questions if tried[q] < 3} == {}
