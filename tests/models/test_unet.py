import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import checks
from course_utils.models import unet


class UpConcatWrongOrder(unet.Up):
    """A common mistake: concatenate [upsampled, skip] instead of [skip, upsampled]."""

    def forward(self, x, skip):
        x = self.up(x)
        dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x, skip], dim=1))


@pytest.fixture(scope="module")
def full_unet():
    return unet.UNet(in_channels=3, num_classes=21)


def test_unet_has_31386133_parameters(full_unet):
    assert checks.count_params(full_unet) == 31_386_133


def test_decoder_concat_widths_are_1536_768_384_192(full_unet):
    model = full_unet
    ups = [model.up1, model.up2, model.up3, model.up4]
    assert [up.conv.double_conv[0].in_channels for up in ups] == [1536, 768, 384, 192]
    assert [up.conv.double_conv[3].out_channels for up in ups] == [512, 256, 128, 64]
    assert (model.outc.conv.in_channels, model.outc.conv.out_channels, model.outc.conv.kernel_size) == (64, 21, (1, 1))


def test_double_conv_is_conv_bn_relu_twice_without_bias():
    block = unet.DoubleConv(3, 8, mid_channels=4).double_conv
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2
    assert block[0].bias is None and block[3].bias is None
    assert (block[0].out_channels, block[3].in_channels, block[3].out_channels) == (4, 4, 8)


def test_skip_shapes_halve_four_times_and_leave_the_model_unchanged(full_unet):
    model = full_unet.train()
    before = model.inc.double_conv[1].running_mean.clone()
    shapes = model.skip_shapes(torch.randn(1, 3, 64, 64))
    assert shapes == [(1, 64, 64, 64), (1, 128, 32, 32), (1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4)]
    assert model.training and torch.equal(model.inc.double_conv[1].running_mean, before)


@pytest.mark.parametrize("bilinear", [True, False])
@pytest.mark.parametrize("size", [(16, 16), (17, 23), (33, 47), (64, 64), (100, 75)])
def test_output_has_the_input_size(size, bilinear):
    model = unet.UNet(base_width=8, bilinear=bilinear).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, *size)).shape == (1, 21, *size)


def test_trains_on_a_batch_of_two():
    model = unet.UNet(base_width=8).train()
    logits = model(torch.randn(2, 3, 33, 47))
    F.cross_entropy(logits, torch.zeros(2, 33, 47, dtype=torch.long)).backward()
    assert model.inc.double_conv[0].weight.grad is not None


def test_up_pads_the_upsampled_map_to_the_skip_size():
    up = unet.Up(4 + 2, 2).eval()
    with torch.no_grad():
        assert up(torch.zeros(1, 4, 2, 3), torch.zeros(1, 2, 5, 7)).shape == (1, 2, 5, 7)


def test_below_16_pixels_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 16x16 pixels.*got 15x40"):
        unet.UNet(base_width=8)(torch.zeros(1, 3, 15, 40))


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 1, 32, 32)])
def test_wrong_input_says_the_expected_shape(shape):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        unet.UNet(base_width=8)(torch.zeros(shape))


def test_check_same_as_passes_for_a_correct_unet(capsys):
    torch.manual_seed(1)
    mine = unet.UNet(base_width=8)  # different random weights: check_same_as copies them over
    torch.manual_seed(2)
    checks.check_same_as(mine, unet.UNet(base_width=8))
    assert capsys.readouterr().out == "PASS same parameters and output as reference\n"


def test_check_same_as_fails_for_the_wrong_concat_order(capsys):
    mine = unet.UNet(base_width=8)
    mine.up4 = UpConcatWrongOrder(8 * 2 + 8, 8)  # same parameter shapes, different wiring
    checks.check_same_as(mine, unet.UNet(base_width=8))
    assert capsys.readouterr().out.startswith("FAIL got different outputs")
