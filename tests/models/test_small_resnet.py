"""SmallResNet: ResNet-50's recipe (bottlenecks, stages, names) at any depth and width."""

import pytest
import torch
from torch import nn

from course_utils import checks
from course_utils.models import resnet


def test_default_is_three_single_block_stages_with_496419_parameters():
    # stem 3x3 (32) + stages of widths 32/64/128 -> 128/256/512 channels + fc(512 -> 3)
    model = resnet.SmallResNet(num_classes=3)
    assert checks.count_params(model) == 496_419
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [1, 1, 1]
    assert not hasattr(model, "layer4")
    assert model.fc.in_features == 512 and model.fc.out_features == 3


@pytest.mark.parametrize("blocks, width, stem, size, spatial", [
    ((1, 1, 1), 8, "cifar", 16, [16, 8, 4]),
    ((2, 1), 8, "cifar", 40, [40, 20]),
    ((1, 1, 1, 1), 8, "imagenet", 64, [16, 8, 4, 2]),
])
def test_each_stage_widens_by_2_and_halves_the_size(blocks, width, stem, size, spatial):
    model = resnet.SmallResNet(num_classes=5, stage_blocks=blocks, base_width=width, stem=stem).eval()
    x = torch.zeros(2, 3, size, size)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        for i, side in enumerate(spatial):
            x = getattr(model, f"layer{i + 1}")(x)
            assert x.shape == (2, 4 * width * 2**i, side, side)


def test_resnet50_recipe_is_resnet50():
    """stage_blocks=(3, 4, 6, 3), base_width=64: same names, shapes and output as ResNet50."""
    torch.manual_seed(0)
    reference = resnet.ResNet50(num_classes=10, stem="imagenet").eval()  # imagenet stem: a cheap forward
    model = resnet.SmallResNet(num_classes=10, stage_blocks=(3, 4, 6, 3), base_width=64, stem="imagenet").eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)


def test_blocks_are_the_lesson_02_bottlenecks_with_torchvision_init():
    torch.manual_seed(0)
    model = resnet.SmallResNet(stage_blocks=(2, 1), base_width=32)
    assert len([m for m in model.modules() if isinstance(m, resnet.Bottleneck)]) == 3
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.numel() >= 4096:  # enough weights for a stable std
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            assert abs(m.weight.std().item() / (2 / fan_out) ** 0.5 - 1) < 0.1  # Kaiming normal, fan_out
        if isinstance(m, nn.BatchNorm2d):
            assert bool((m.weight == 1).all()) and bool((m.bias == 0).all())


def test_a_few_steps_fit_a_fixed_batch():
    torch.manual_seed(0)
    model = resnet.SmallResNet(num_classes=2, stage_blocks=(1, 1), base_width=4)
    x = torch.randn(8, 3, 8, 8)
    y = torch.tensor([0, 1] * 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(10):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(stem="vit"), "stem"),
    (dict(stage_blocks=()), "stage_blocks"),
    (dict(stage_blocks=(1, 0)), "stage_blocks"),
    (dict(base_width=0), "base_width"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resnet.SmallResNet(**kwargs)


def test_bad_input_raises_with_directions():
    with pytest.raises(ValueError, match="unsqueeze"):
        resnet.SmallResNet()(torch.zeros(3, 32, 32))
