import pytest
import torch
from torch import nn

from course_utils import checks
from course_utils.models import vgg


def student_make_layers(cfg, batch_norm=True):
    """An independent make_layers, written the way a student would, for check_same_as."""
    layers, channels = [], 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(2)]
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1)]
            layers += [nn.BatchNorm2d(v), nn.ReLU()] if batch_norm else [nn.ReLU()]
            channels = v
    return nn.Sequential(*layers)


def test_vgg16_has_14990922_parameters():
    assert checks.count_params(vgg.vgg16(num_classes=10)) == 14_990_922


def test_features_reduce_32px_to_1x1_and_head_gives_logits():
    model = vgg.vgg16().eval()
    x = torch.zeros(2, 3, 32, 32)
    assert model.features(x).shape == (2, 512, 1, 1)
    assert model(x).shape == (2, 10)


def test_make_layers_is_conv_bn_relu_with_bias_and_five_pools():
    layers = vgg.make_layers(vgg.VGG16_CFG)
    conv, bn, relu = layers[0], layers[1], layers[2]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
    assert conv.bias is not None  # torchvision keeps the conv bias
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
    assert sum(isinstance(m, nn.MaxPool2d) for m in layers) == 5
    assert sum(isinstance(m, nn.Conv2d) for m in layers) == 13
    assert not any(isinstance(m, nn.BatchNorm2d) for m in vgg.make_layers(vgg.VGG16_CFG, batch_norm=False))


def test_head_is_flatten_linear_relu_dropout_linear():
    head = vgg.vgg16().classifier
    assert [type(m) for m in head] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert (head[1].in_features, head[1].out_features, head[4].out_features) == (512, 512, 10)
    assert head[3].p == 0.5


def test_init_is_torchvision_style():
    torch.manual_seed(0)
    model = vgg.vgg16()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in bns)
    linear = model.classifier[1]
    assert (linear.bias == 0).all() and abs(linear.weight.std().item() - 0.01) < 0.001
    conv = model.features[-4]  # last conv: 512 -> 512, Kaiming fan_out std = sqrt(2 / (512 * 9))
    assert abs(conv.weight.std().item() - (2 / (512 * 9)) ** 0.5) < 0.002
    assert (conv.bias == 0).all()


def test_width_div_divides_every_width():
    model = vgg.vgg16(width_div=8)
    widths = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert widths == [v // 8 for v in vgg.VGG16_CFG if v != "M"]
    assert model.classifier[1].out_features == 64
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_scale_cfg_rejects_a_width_div_that_does_not_divide():
    assert vgg.scale_cfg([64, "M", 128], 2) == [32, "M", 64]
    with pytest.raises(ValueError, match="width_div"):
        vgg.scale_cfg(vgg.VGG16_CFG, 3)


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 1, 32, 32), (2, 3, 64, 32), (2, 3, 32, 16)])
def test_wrong_input_says_the_expected_shape(shape):
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        vgg.vgg16(width_div=8)(torch.zeros(shape))


def test_check_same_as_passes_for_an_independent_correct_make_layers(capsys):
    checks.check_same_as(student_make_layers(vgg.VGG16_CFG), vgg.make_layers(vgg.VGG16_CFG))
    assert capsys.readouterr().out == "PASS same parameters and output as reference\n"


def test_check_same_as_passes_for_a_correct_full_model(capsys):
    mine = vgg.VGG(student_make_layers(vgg.VGG16_CFG))
    checks.check_same_as(mine, vgg.vgg16())
    assert capsys.readouterr().out == "PASS same parameters and output as reference\n"


def test_check_same_as_fails_for_vgg_without_batchnorm(capsys):
    mine = vgg.VGG(student_make_layers(vgg.VGG16_CFG, batch_norm=False))
    checks.check_same_as(mine, vgg.vgg16())
    assert capsys.readouterr().out.startswith("FAIL got")
