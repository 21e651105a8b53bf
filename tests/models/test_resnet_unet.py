import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from course_utils import checks
from course_utils.models import resnet_unet


@pytest.fixture(scope="module")
def torchvision_model():
    return resnet_unet.ResNetUNet(encoder="torchvision").eval()


@pytest.fixture(scope="module")
def course_model():
    return resnet_unet.ResNetUNet(encoder="course").eval()


def test_course_and_torchvision_encoders_have_the_same_parameters(course_model, torchvision_model):
    course_model.load_state_dict(torchvision_model.state_dict(), strict=True)
    assert checks.count_params(course_model) == checks.count_params(torchvision_model) == 43_862_165
    assert not any(name.startswith("encoder.fc") for name, _ in course_model.named_parameters())


def test_decoder_concats_skip_and_upsampled_widths(course_model):
    ups = [course_model.up4, course_model.up3, course_model.up2, course_model.up1]
    assert [up.conv.double_conv[0].in_channels for up in ups] == [2048 + 1024, 512 + 512, 256 + 256, 128 + 64]
    assert course_model.head.conv.out_channels == 21


def test_full_model_output_has_the_input_size(torchvision_model):
    with torch.no_grad():
        logits = torchvision_model(torch.zeros(1, 3, 33, 47))
    assert isinstance(logits, torch.Tensor) and logits.shape == (1, 21, 33, 47)


def test_small_model_output_has_the_input_size():
    model = resnet_unet.ResNetUNet(width_div=8).eval()
    with torch.no_grad():
        for size in [(32, 32), (33, 47), (65, 40)]:
            assert model(torch.zeros(1, 3, *size)).shape == (1, 21, *size)


def test_decoder_climbs_back_to_half_the_input_size():
    model = resnet_unet.ResNetUNet(width_div=8).eval()
    shapes = []
    for up in [model.up4, model.up3, model.up2, model.up1]:
        up.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape)))
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 96))
    assert shapes == [(1, 64, 4, 6), (1, 32, 8, 12), (1, 16, 16, 24), (1, 8, 32, 48)]


def test_small_model_trains_on_odd_sizes():
    model = resnet_unet.ResNetUNet(num_classes=5, width_div=8).train()
    logits = model(torch.randn(2, 3, 45, 37))
    assert logits.shape == (2, 5, 45, 37)
    logits.mean().backward()
    assert model.encoder.conv1.weight.grad is not None


def test_below_32_pixels_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 32x32 pixels.*got 31x64"):
        resnet_unet.ResNetUNet(width_div=8)(torch.zeros(1, 3, 31, 64))


def test_wrong_input_says_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        resnet_unet.ResNetUNet(width_div=8)(torch.zeros(3, 32, 32))


@pytest.mark.parametrize("kwargs", [dict(encoder="vgg"), dict(encoder="course", pretrained=True),
                                    dict(encoder="torchvision", width_div=8)])
def test_impossible_options_are_errors(kwargs):
    with pytest.raises(ValueError):
        resnet_unet.ResNetUNet(**kwargs)


def test_offline_pretrained_prints_one_line_and_trains_from_scratch(monkeypatch, capsys):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models.ResNet50_Weights, "get_state_dict", offline)
    model = resnet_unet.ResNetUNet(encoder="torchvision", pretrained=True)
    out = capsys.readouterr().out
    assert out.startswith("ImageNet weights could not be downloaded (URLError")
    assert out.endswith("; training the encoder from scratch\n") and out.count("\n") == 1
    assert isinstance(model.encoder.layer4, nn.Sequential)
    assert model.encoder_pretrained is False  # so a lesson does not treat random weights as pretrained


def test_pretrained_loads_the_imagenet_weights(torchvision_model, monkeypatch, capsys):
    weights = dict(torchvision_model.encoder.state_dict(),  # stands in for the downloaded file
                   **{"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)})
    monkeypatch.setattr(torchvision.models.ResNet50_Weights, "get_state_dict", lambda self, **kw: weights)
    model = resnet_unet.ResNetUNet(encoder="torchvision", pretrained=True)
    assert torch.equal(model.encoder.layer4[2].conv3.weight, weights["layer4.2.conv3.weight"])
    assert capsys.readouterr().out == ""
    assert model.encoder_pretrained is True
    assert resnet_unet.ResNetUNet(width_div=8).encoder_pretrained is False


def test_freeze_encoder_freezes_only_the_encoder():
    model = resnet_unet.ResNetUNet(width_div=8)
    model.freeze_encoder()
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for name, p in model.named_parameters() if not name.startswith("encoder."))
    model.set_encoder_trainable(True)
    assert all(p.requires_grad for p in model.parameters())


def test_param_groups_split_encoder_and_decoder_once_each():
    model = resnet_unet.ResNetUNet(width_div=8)
    encoder_group, decoder_group = model.param_groups(encoder_lr=1e-4, decoder_lr=1e-3)
    assert (encoder_group["lr"], decoder_group["lr"]) == (1e-4, 1e-3)
    ids = [id(p) for p in encoder_group["params"] + decoder_group["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    assert {id(p) for p in encoder_group["params"]} == {id(p) for p in model.encoder.parameters()}
    torch.optim.SGD(model.param_groups(1e-4, 1e-3), lr=0.1)  # accepted as optimizer groups
