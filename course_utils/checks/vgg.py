"""Checks of lesson 01 (VGG16 on CIFAR-10): ``make_layers``, ``VGG16`` and ``init_weights``.

Each check prints one line per aspect. Beyond one ``eval()`` forward of one input, they look at
what such a forward cannot see: BatchNorm momentum and eps, dropout, activation types (ReLU6
clips large inputs only), a ``train()`` step with its gradients, other configurations and
``num_classes``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from course_utils.checks.verdicts import (check_equal, check_param_count, check_same_as, check_same_settings,
                                          check_same_shapes, check_same_training, check_shape, labelled)
from course_utils.models import vgg

BLOCK_SHAPES = [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2), (2, 512, 1, 1)]
SMALL_CFG = [8, "M", 16, 16, "M", 24, "M"]  # another config: make_layers must follow cfg, not VGG16_CFG
NARROW_CFG = [16, "M", 32, "M", 64, "M", 128, "M", 512, "M"]  # 512 channels at 1x1 like VGG16, 20x cheaper


def _block_shapes(features: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    """The feature map after each max-pool (the end of each block) for input ``x``."""
    shapes = []
    with torch.no_grad():
        for layer in features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                shapes.append(tuple(x.shape))
    return shapes


def check_make_layers(make_layers: Callable) -> None:
    """Question: ``make_layers(cfg, batch_norm=True)``: conv3x3 (+BN) + ReLU per int, 2x2 max-pool per "M"."""
    features = make_layers(vgg.VGG16_CFG).eval()
    check_equal(_block_shapes(features, torch.zeros(2, 3, 32, 32)), BLOCK_SHAPES, name="feature map after each block")
    check_param_count(features, 14_723_136)
    check_param_count(make_layers(vgg.VGG16_CFG, batch_norm=False), 14_714_688)
    reference = vgg.make_layers(vgg.VGG16_CFG)
    check_same_settings(features, reference)
    check_same_as(features, reference, input_shape=(2, 3, 32, 32))
    check_same_as(features, reference, input_shape=(2, 3, 32, 32), input_scale=100)
    with labelled(f"cfg {SMALL_CFG}"):  # a narrow network: a train() step of VGG16 costs seconds on a CPU
        check_same_training(make_layers(SMALL_CFG), vgg.make_layers(SMALL_CFG), input_shape=(4, 3, 16, 16))
    for batch_norm in (True, False):
        with labelled(f"cfg {SMALL_CFG}, batch_norm={batch_norm}"):
            check_same_as(make_layers(SMALL_CFG, batch_norm=batch_norm),
                          vgg.make_layers(SMALL_CFG, batch_norm=batch_norm), input_shape=(2, 3, 16, 16))


def check_vgg16(VGG16: type[nn.Module]) -> None:
    """Question: ``VGG16(features, num_classes)``: the features, then Flatten - Linear(512, 512) - ReLU -
    Dropout(0.5) - Linear(512, num_classes); ``forward`` returns logits."""
    features = vgg.make_layers(vgg.VGG16_CFG)
    model = VGG16(features).eval()
    with torch.no_grad():
        check_shape(model(torch.zeros(2, 3, 32, 32)), (2, 10), name="logits")
    check_equal(getattr(model, "features", None) is features, True, name="self.features is the module passed in:")
    check_param_count(model, 14_990_922)
    check_equal([type(m).__name__ for m in model.classifier], ["Flatten", "Linear", "ReLU", "Dropout", "Linear"],
                name="classifier layers")
    check_equal([m.p for m in model.modules() if isinstance(m, nn.Dropout)], [0.5], name="dropout probabilities")
    reference = vgg.vgg16()
    check_same_settings(model, reference)
    check_same_as(model, reference, input_shape=(2, 3, 32, 32))
    with labelled("narrower features"):  # dropout on, BatchNorm on batch statistics, gradients
        check_same_training(VGG16(vgg.make_layers(NARROW_CFG)), vgg.VGG(vgg.make_layers(NARROW_CFG)),
                            input_shape=(4, 3, 32, 32))
    with torch.device("meta"), labelled("num_classes=7"):  # shapes only: no memory, no initialisation
        check_same_shapes(VGG16(vgg.make_layers(vgg.VGG16_CFG), num_classes=7), vgg.vgg16(num_classes=7))


def _initialised(init_weights: Callable, model: nn.Module, seed: int) -> nn.Module:
    """``model`` with every parameter set to 0.5 (to forget its own init), then ``init_weights(model)``
    under a fixed seed, so the statistics below are the same on every machine."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        init_weights(model)
    return model


def _other_model() -> nn.Module:
    """Layers VGG16 lacks: a 5x5 and a 1x1 conv (fan_out is out_channels x k x k), a bigger
    linear layer, all nested one level deeper (``modules()`` finds them, ``children()`` not)."""
    return nn.Sequential(nn.Sequential(nn.Conv2d(16, 96, kernel_size=5), nn.BatchNorm2d(96), nn.ReLU()),
                         nn.Sequential(nn.Conv2d(96, 256, kernel_size=1), nn.Conv2d(256, 64, kernel_size=3)),
                         nn.Sequential(nn.Flatten(), nn.Linear(1024, 300)))


def check_init_weights(init_weights: Callable) -> None:
    """Question: ``init_weights(module)``: Kaiming normal (fan_out, ReLU) convs, BatchNorm (1, 0),
    linear N(0, 0.01), biases 0, in place.

    Random weights differ from run to run, so this looks at statistics every right answer shares
    (drawn under a fixed seed): each conv's standard deviation within 10 % of sqrt(2 / fan_out),
    a normal shape (about 4.6 % of the weights beyond 2 standard deviations; a uniform draw has
    none there), linear standard deviations near 0.01, and the constants.
    """
    results = {}
    for label, model in (("VGG16", vgg.vgg16()), ("other layers", _other_model())):
        model = _initialised(init_weights, model, seed=0)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        with torch.no_grad():
            fan_out = [m.out_channels * m.kernel_size[0] * m.kernel_size[1] for m in convs]
            kaiming = [math.sqrt(2 / fan) for fan in fan_out]
            good_std = sum(0.9 < m.weight.std().item() / s < 1.1 for m, s in zip(convs, kaiming))
            beyond = sum(int((m.weight.abs() > 2 * s).sum()) for m, s in zip(convs, kaiming))
            tails = beyond / sum(m.weight.numel() for m in convs)
            good_linear = sum(0.009 < m.weight.std().item() < 0.011 for m in linears)
            biases = [m.bias for m in convs + linears if m.bias is not None]
            results[label] = (
                f"{good_std} of {len(convs)}", f"{good_linear} of {len(linears)}", 0.035 < tails < 0.06,
                all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in norms),
                all(bool((b == 0).all()) for b in biases))
    vgg_result, other = results["VGG16"], results["other layers"]
    check_equal(vgg_result[0], "13 of 13", name="conv layers with std close to sqrt(2 / fan_out):")
    check_equal(vgg_result[2], True, name="conv weights normal (about 4.6 % beyond 2 std):")
    check_equal(vgg_result[1], "2 of 2", name="linear layers with std close to 0.01:")
    check_equal(vgg_result[3], True, name="BatchNorm weights 1 and biases 0:")
    check_equal(vgg_result[4], True, name="conv and linear biases 0:")
    check_equal(other, ("3 of 3", "1 of 1", True, True, True),
                name="5x5, 1x1 and 3x3 convs, a 1024 -> 300 linear, nested (conv std, linear std, "
                     "normal, BatchNorm, biases):")
