import pytest
import torch
from torch import nn

from course_utils import checks
from course_utils.models import baseline


def test_is_one_3x3_conv_with_one_filter_per_class():
    model = baseline.SingleConvSegmenter()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (3, 3) and convs[0].out_channels == 21
    assert checks.count_params(model) == 3 * 21 * 3 * 3 + 21  # 588


@pytest.mark.parametrize("size", [(1, 1), (17, 23), (64, 64)])
def test_logits_have_the_input_size(size):
    logits = baseline.SingleConvSegmenter()(torch.zeros(2, 3, *size))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 21, *size)


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 1, 32, 32)])
def test_wrong_input_says_the_expected_shape(shape):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        baseline.SingleConvSegmenter()(torch.zeros(shape))


def test_check_same_as_passes_for_a_plain_conv(capsys):
    mine = nn.Sequential(nn.Conv2d(3, 21, kernel_size=3, padding=1))
    checks.check_same_as(mine, baseline.SingleConvSegmenter())
    assert capsys.readouterr().out == "PASS same parameters and output as reference\n"


def test_check_same_as_fails_without_padding(capsys):
    mine = nn.Conv2d(3, 21, kernel_size=3)  # output shrinks by 2 pixels
    checks.check_same_as(mine, baseline.SingleConvSegmenter())
    assert capsys.readouterr().out == "FAIL got output shape (2, 21, 30, 30) expected (2, 21, 32, 32)\n"
