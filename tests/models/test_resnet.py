import pytest
import torch
import torchvision
from torch import nn

from course_utils import checks
from course_utils.models import resnet


class ReluBeforeAdd(resnet.Bottleneck):
    """A common mistake: ReLU on the residual branch before the add (negatives of x survive)."""

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out))) + identity


class NoProjection(nn.Module):
    """Another mistake: no 1x1 projection on the shortcut when the channels change."""

    def __init__(self, in_channels, middle_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, middle_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(middle_channels)
        self.conv2 = nn.Conv2d(middle_channels, middle_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(middle_channels)
        self.conv3 = nn.Conv2d(middle_channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)))


@pytest.fixture(scope="module")
def imagenet_pair():
    """The course ResNet50 (ImageNet stem, 10 classes) with torchvision's weights loaded strictly,
    and torchvision's resnet50(num_classes=10) itself."""
    torch.manual_seed(0)
    theirs = torchvision.models.resnet50(num_classes=10).eval()
    ours = resnet.ResNet50(stem="imagenet", num_classes=10)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours.eval(), theirs


def test_imagenet_stem_has_23528522_parameters_like_torchvision(imagenet_pair):
    ours, theirs = imagenet_pair
    assert checks.count_params(ours) == 23_528_522
    assert checks.count_params(theirs) == 23_528_522


@pytest.fixture(scope="module")
def cifar_model():
    return resnet.resnet50(num_classes=10).eval()


def test_cifar_stem_has_23520842_parameters(cifar_model):
    assert checks.count_params(cifar_model) == 23_520_842


def test_torchvision_weights_load_strictly_and_give_the_same_output(imagenet_pair):
    ours, theirs = imagenet_pair
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_imagenet_weights_with_1000_classes_load_strictly(imagenet_pair):
    ours = resnet.ResNet50(stem="imagenet", num_classes=1000)
    state = imagenet_pair[1].state_dict()
    state.update({"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)})  # ImageNet's head
    ours.load_state_dict(state, strict=True)  # raises on any missing, unexpected or misshapen key


def test_features_of_imagenet_stem_are_at_1_2_to_1_32(imagenet_pair):
    ours, theirs = imagenet_pair
    with torch.no_grad():
        feats = ours.features(torch.zeros(1, 3, 64, 64))
        tv_feats = resnet.encoder_features(theirs, torch.zeros(1, 3, 64, 64))
    expected = [(1, 64, 32, 32), (1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 2, 2)]
    assert [tuple(f.shape) for f in feats] == expected
    assert [tuple(f.shape) for f in tv_feats] == expected


def test_cifar_stem_keeps_32px_and_has_no_maxpool(cifar_model):
    model = cifar_model
    assert isinstance(model.maxpool, nn.Identity) and model.conv1.kernel_size == (3, 3)
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        shapes = [tuple(f.shape) for f in model.features(x)]
        logits = model(x)
    assert shapes == [(1, 64, 32, 32), (1, 256, 32, 32), (1, 512, 16, 16), (1, 1024, 8, 8), (1, 2048, 4, 4)]
    assert logits.shape == (1, 10)


def test_width_div_divides_every_width():
    model = resnet.resnet50(num_classes=10, width_div=8).eval()
    with torch.no_grad():
        shapes = [tuple(f.shape) for f in model.stages(torch.zeros(1, 3, 32, 32))]
    assert shapes == [(1, 8, 32, 32), (1, 32, 32, 32), (1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4)]
    assert model.fc.in_features == 256


def test_stride_is_on_the_3x3_conv_and_projection_only_when_shape_changes():
    first, second = resnet.make_stage(256, 128, 512, blocks=2, stride=2)
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)  # v1.5
    conv, bn = first.downsample
    assert conv.kernel_size == (1, 1) and conv.stride == (2, 2) and isinstance(bn, nn.BatchNorm2d)
    assert second.downsample is None
    assert resnet.Bottleneck(64, 64, 256).downsample is not None  # channels change, stride 1
    assert resnet.ResidualBlock is resnet.Bottleneck


def test_relu_comes_after_the_add():
    block = resnet.Bottleneck(8, 2, 8).eval()
    nn.init.zeros_(block.bn3.weight)  # residual branch now outputs 0, so the block is relu(x)
    x = torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))


def test_init_is_torchvision_style():
    torch.manual_seed(0)
    model = resnet.resnet50(width_div=2)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in bns)  # no zero-init of bn3
    conv = model.layer4[0].conv2  # 512 -> 512 (halved: 256), 3x3: Kaiming fan_out std = sqrt(2 / (256 * 9))
    assert abs(conv.weight.std().item() - (2 / (256 * 9)) ** 0.5) < 0.002


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 1, 32, 32)])
def test_wrong_input_says_the_expected_shape(shape):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        resnet.resnet50(width_div=8)(torch.zeros(shape))


def test_unknown_stem_is_an_error():
    with pytest.raises(ValueError, match="cifar"):
        resnet.ResNet50(stem="tiny")


def test_check_same_as_passes_for_torchvision_resnet50(imagenet_pair, capsys):
    ours, theirs = imagenet_pair
    checks.check_same_as(theirs, ours)
    assert capsys.readouterr().out == "PASS same parameters and output as reference\n"


def test_check_same_as_fails_for_relu_before_the_add(capsys):
    shape = (2, 256, 4, 4)
    checks.check_same_as(resnet.Bottleneck(256, 64, 256), resnet.Bottleneck(256, 64, 256), input_shape=shape)
    checks.check_same_as(ReluBeforeAdd(256, 64, 256), resnet.Bottleneck(256, 64, 256), input_shape=shape)
    passed, failed = capsys.readouterr().out.splitlines()
    assert passed == "PASS same parameters and output as reference"
    assert failed.startswith("FAIL got different outputs")


def test_check_same_as_fails_without_projection_shortcut(capsys):
    checks.check_same_as(NoProjection(64, 64, 256), resnet.Bottleneck(64, 64, 256), input_shape=(2, 64, 4, 4))
    assert capsys.readouterr().out.startswith("FAIL got 9 parameter tensors expected 12")


def test_check_same_as_fails_for_the_wrong_stem(capsys):
    checks.check_same_as(resnet.resnet50(width_div=8), resnet.ResNet50(stem="imagenet", width_div=8))
    assert capsys.readouterr().out.startswith("FAIL got parameter #0 of shape (8, 3, 3, 3)")
