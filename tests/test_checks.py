"""Tests for course_utils.checks: one PASS/FAIL line per check, never a raise, no floats or devices."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from course_utils import checks

FLOAT = re.compile(r"\d\.\d")  # e.g. 0.123: stored answers must not depend on rounding
FORBIDDEN = re.compile(r"\b(cpu|cuda|mps)\b|/|\\")  # device names and paths


def one_line(capsys, check, *args, **kwargs) -> str:
    """Run a check; it must return None and print exactly one line without floats, devices or paths."""
    assert check(*args, **kwargs) is None
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 1 and out.endswith("\n"), f"expected one line, got {out!r}"
    assert not FLOAT.search(lines[0]), lines[0]
    assert not FORBIDDEN.search(lines[0]), lines[0]
    return lines[0]


def passes(capsys, check, *args, **kwargs) -> bool:
    line = one_line(capsys, check, *args, **kwargs)
    assert line.startswith(("PASS ", "FAIL got ")), line
    if line.startswith("FAIL"):
        assert " expected " in line, line
    return line.startswith("PASS ")


def small_cnn(conv_bn_relu=("conv", "bn", "relu"), classes=10) -> nn.Sequential:
    """A tiny VGG-like block + head; the order of the first three layers is a parameter."""
    layers = {"conv": lambda: nn.Conv2d(3, 4, 3, padding=1), "bn": lambda: nn.BatchNorm2d(4), "relu": nn.ReLU}
    return nn.Sequential(*[layers[name]() for name in conv_bn_relu], nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.5), nn.Linear(4, classes))


def trained(model: nn.Module) -> nn.Module:
    """Give BatchNorm non-trivial statistics and affine weights, as after training."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if tensor.is_floating_point():
                noise = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(noise + 0.5 if name.endswith("running_var") else noise - 0.5)
    return model


class Raises(nn.Module):
    def __init__(self, error: Exception):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.error = error

    def forward(self, x):
        raise self.error


class Warns(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        warnings.warn("a warning from the student's forward", UserWarning)
        return self.fc(x)


# check_shape ------------------------------------------------------------------------------------

def test_check_shape_passes_tensor_and_shape(capsys):
    assert passes(capsys, checks.check_shape, torch.zeros(2, 3, 4), (2, 3, 4))
    assert passes(capsys, checks.check_shape, torch.Size([2, 3]), [2, 3])
    assert one_line(capsys, checks.check_shape, torch.zeros(2, 10), (2, 10)) == "PASS shape (2, 10)"


@pytest.mark.parametrize("x", [torch.zeros(2, 3, 5), torch.zeros(3, 4), None, "abc",
                               [torch.zeros(2), torch.zeros(2)]])
def test_check_shape_fails_wrong_shape_or_non_tensor(capsys, x):
    assert not passes(capsys, checks.check_shape, x, (2, 3, 4))


def test_check_shape_fail_line_names_both_shapes(capsys):
    line = one_line(capsys, checks.check_shape, torch.zeros(2, 5), (2, 10), name="logits")
    assert line == "FAIL got logits (2, 5) expected logits (2, 10)"


# check_param_count ------------------------------------------------------------------------------

def test_check_param_count_passes_exact_count(capsys):
    model = nn.Linear(3, 4)  # 12 weights + 4 biases
    assert one_line(capsys, checks.check_param_count, model, 16) == "PASS 16 parameters"


def test_check_param_count_fails_other_count(capsys):
    assert not passes(capsys, checks.check_param_count, small_cnn(classes=9), checks.count_params(small_cnn()))


def test_check_param_count_trainable_only(capsys):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    assert passes(capsys, checks.check_param_count, model, 10, trainable_only=True)
    assert not passes(capsys, checks.check_param_count, model, 26, trainable_only=True)


@pytest.mark.parametrize("model", [None, "model"])
def test_check_param_count_fails_non_module(capsys, model):
    assert not passes(capsys, checks.check_param_count, model, 16)


# check_equal ------------------------------------------------------------------------------------

def test_check_equal_pass_and_fail(capsys):
    assert one_line(capsys, checks.check_equal, (2, 3), (2, 3), "size") == "PASS size (2, 3)"
    assert one_line(capsys, checks.check_equal, 3, 4, "stages") == "FAIL got stages 3 expected stages 4"
    assert not passes(capsys, checks.check_equal, None, 4)
    assert not passes(capsys, checks.check_equal, torch.tensor([1, 2]), [1, 2])


def test_check_equal_fails_array_answer(capsys):
    assert not passes(capsys, checks.check_equal, np.array([1, 2]), (1, 2))


# check_close ------------------------------------------------------------------------------------

def test_check_close_passes_within_tolerance(capsys):
    expected = torch.linspace(-1, 1, 6)
    assert one_line(capsys, checks.check_close, expected + 1e-6, expected, "logits") == "PASS logits match"


def test_check_close_fails_other_values_without_printing_them(capsys):
    expected = torch.tensor([0.123, 0.456, 0.789])
    line = one_line(capsys, checks.check_close, torch.tensor([0.123, 0.5, 0.789]), expected)
    assert line == "FAIL got 1 of 3 values different expected all within tolerance"


def test_check_close_fails_other_shape(capsys):
    assert not passes(capsys, checks.check_close, torch.zeros(2, 3), torch.zeros(3, 2))


def test_check_close_nan_fails(capsys):
    assert not passes(capsys, checks.check_close, torch.tensor([float("nan")]), torch.tensor([0.0]))


def test_check_close_fails_none(capsys):
    assert not passes(capsys, checks.check_close, None, torch.zeros(2))


# check_same_as ----------------------------------------------------------------------------------

def test_check_same_as_passes_same_architecture(capsys):
    torch.manual_seed(0)  # different initial weights: check_same_as copies the reference's in
    line = one_line(capsys, checks.check_same_as, small_cnn(), trained(small_cnn()))
    assert line == "PASS same parameters and output as reference"


def test_check_same_as_parameters_only(capsys):
    line = one_line(capsys, checks.check_same_as, small_cnn(), small_cnn(), input_shape=None)
    assert line == f"PASS same parameters as reference ({checks.count_params(small_cnn()):,})"


def test_check_same_as_fails_other_parameter_count(capsys):
    line = one_line(capsys, checks.check_same_as, small_cnn(classes=9), small_cnn())
    assert line == "FAIL got parameter #4 of shape (9, 4) expected (10, 4)"


def test_check_same_as_fails_missing_layer(capsys):
    without_bn = small_cnn(("conv", "relu"))
    assert not passes(capsys, checks.check_same_as, without_bn, small_cnn())


def test_check_same_as_fails_missing_relu(capsys):
    without_relu = small_cnn(("conv", "bn"))  # same parameters, different forward
    line = one_line(capsys, checks.check_same_as, without_relu, trained(small_cnn()))
    assert line.startswith("FAIL got different outputs")


def test_check_same_as_fails_other_layer_order_on_trained_reference(capsys):
    relu_before_bn = small_cnn(("conv", "relu", "bn"))
    assert not passes(capsys, checks.check_same_as, relu_before_bn, trained(small_cnn()))


def test_check_same_as_fails_other_layer_order_on_fresh_reference(capsys):
    relu_before_bn = small_cnn(("conv", "relu", "bn"))
    assert not passes(capsys, checks.check_same_as, relu_before_bn, small_cnn())


def test_check_same_as_fails_other_output_shape(capsys):
    class Pair(nn.Module):  # same parameters, but returns (N, 10, 1, 1) instead of (N, 10)
        def __init__(self):
            super().__init__()
            self.body = small_cnn()

        def forward(self, x):
            return self.body(x)[:, :, None, None]

    line = one_line(capsys, checks.check_same_as, Pair(), small_cnn())
    assert line == "FAIL got output shape (2, 10, 1, 1) expected (2, 10)"


class Merge(nn.Module):
    """A two-input module, like U-Net's Up: a 1x1 conv over the concatenation of x and skip."""

    def __init__(self, skip_first=False):
        super().__init__()
        self.conv, self.skip_first = nn.Conv2d(6, 2, 1), skip_first

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, x] if self.skip_first else [x, skip], dim=1))


def test_check_same_as_feeds_one_input_per_shape(capsys):
    from course_utils.models import unet

    shapes = [(2, 64, 8, 12), (2, 32, 17, 25)]  # Up(x, skip): x is upsampled, then padded to skip's size
    assert passes(capsys, checks.check_same_as, unet.Up(96, 32), unet.Up(96, 32), input_shape=shapes)
    assert passes(capsys, checks.check_same_as, Merge(), Merge(), input_shape=[(2, 3, 4, 4), (2, 3, 4, 4)])
    line = one_line(capsys, checks.check_same_as, Merge(skip_first=True), Merge(), input_shape=[(2, 3, 4, 4)] * 2)
    assert line.startswith("FAIL got different outputs")  # same parameters, inputs concatenated the other way
    assert not passes(capsys, checks.check_same_as, Merge(), Merge(), input_shape=(2, 3, 4, 4))  # one input: an error


@pytest.mark.parametrize("mine", [None, "model", small_cnn])  # small_cnn: the class, not an instance
def test_check_same_as_fails_non_module(capsys, mine):
    assert not passes(capsys, checks.check_same_as, mine, small_cnn())


def test_check_same_as_fails_when_forward_raises(capsys):
    reference = nn.Linear(3, 2)
    line = one_line(capsys, checks.check_same_as, Raises(RuntimeError("boom")), reference, input_shape=(2, 3))
    assert line.startswith("FAIL got an error (RuntimeError: boom)")
    stub = Raises(NotImplementedError())  # a student copy's bare `raise NotImplementedError`
    assert not passes(capsys, checks.check_same_as, stub, reference, input_shape=(2, 3))


def test_check_same_as_fails_when_forward_returns_none(capsys):
    class ReturnsNothing(nn.Linear):
        def forward(self, x):
            super().forward(x)  # forgot `return`

    line = one_line(capsys, checks.check_same_as, ReturnsNothing(3, 2), nn.Linear(3, 2), input_shape=(2, 3))
    assert line == "FAIL got output of type NoneType expected a tensor"


def test_check_same_as_error_with_newline_stays_one_line(capsys):
    one_line(capsys, checks.check_same_as, Raises(RuntimeError("first\nsecond")), nn.Linear(3, 2),
             input_shape=(2, 3))


def test_check_same_as_silences_warnings(capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert passes(capsys, checks.check_same_as, Warns(), nn.Linear(3, 2), input_shape=(2, 3))
    assert caught == []


def test_check_same_as_puts_both_models_in_eval(capsys):
    mine, reference = small_cnn().train(), small_cnn().train()
    checks.check_same_as(mine, reference)
    capsys.readouterr()
    assert not any(module.training for module in [*mine.modules(), *reference.modules()])


def test_count_torch_calls_sees_functions_and_methods_alike():
    x = torch.tensor([0, 2, 2])
    with checks.CountTorchCalls() as calls:
        torch.bincount(x, minlength=3)
        x.bincount()
        x.sum()
    assert calls["bincount"] == 2 and calls["sum"] == 1
    with checks.CountTorchCalls() as calls:
        pass
    assert calls["bincount"] == 0


# check_same_settings, check_same_training, input_scale, labelled (issue 19.1: what an eval() forward misses)

def block(bn=None, act=nn.ReLU, p=0.5) -> nn.Sequential:
    """A conv, BatchNorm, activation, dropout and linear head; BatchNorm settings as keyword arguments."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, **(bn or {})), act(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(p), nn.Linear(4, 3))


class FunctionalRelu(nn.Module):
    """The same network with F.relu in forward instead of an activation module: a right answer."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.drop, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Linear(4, 3)

    def forward(self, x):
        x = torch.nn.functional.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(x.mean(dim=(2, 3))))


@pytest.mark.parametrize("mine", [block(), block(act=lambda: nn.ReLU(inplace=True)), FunctionalRelu()])
def test_check_same_settings_passes_right_answers(capsys, mine):
    assert passes(capsys, checks.check_same_settings, mine, block())


@pytest.mark.parametrize("mine", [block(bn={"momentum": 0.9}), block(bn={"eps": 1e-3}), block(act=nn.ReLU6),
                                  block(act=nn.LeakyReLU), block(p=0.2)])
def test_check_same_settings_fails_what_eval_cannot_see(capsys, mine):
    out = checks.check_same_settings(mine, block())
    line = capsys.readouterr().out
    assert out is None and line.startswith("FAIL got ") and " expected " in line and line.count("\n") == 1, line


def test_check_same_training_passes_same_and_functional_relu(capsys):
    torch.manual_seed(0)
    assert passes(capsys, checks.check_same_training, block(), block(), input_shape=(4, 3, 6, 6))
    assert passes(capsys, checks.check_same_training, FunctionalRelu(), block(), input_shape=(4, 3, 6, 6))


class Detached(nn.Sequential):
    def forward(self, x):
        return super().forward(x).detach() + 0 * x.sum()  # no gradient reaches the parameters


@pytest.mark.parametrize("mine", [block(bn={"momentum": 0.9}), block(p=0.2), Detached(*block())])
def test_check_same_training_fails_momentum_dropout_and_detached(capsys, mine):
    assert not passes(capsys, checks.check_same_training, mine, block(), input_shape=(4, 3, 6, 6))


def test_check_same_training_leaves_the_random_state_and_never_raises(capsys):
    mine, reference = block(), block()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    checks.check_same_training(mine, reference, input_shape=(4, 3, 6, 6))
    assert torch.equal(torch.rand(3), expected)  # dropout masks drawn under their own seed
    capsys.readouterr()
    assert not passes(capsys, checks.check_same_training, Raises(RuntimeError("boom")), nn.Linear(3, 2), input_shape=(2, 3))


def test_check_same_as_large_inputs_catch_a_clipping_activation(capsys):
    clipped = block(act=nn.ReLU6)
    assert passes(capsys, checks.check_same_as, clipped, block(), input_shape=(2, 3, 6, 6))  # small inputs: no clip
    line = one_line(capsys, checks.check_same_as, clipped, block(), input_shape=(2, 3, 6, 6), input_scale=100)
    assert line.startswith("FAIL got different outputs")
    line = one_line(capsys, checks.check_same_as, block(), block(), input_shape=(2, 3, 6, 6), input_scale=100)
    assert line == "PASS same parameters and output as reference (inputs x100)"


def test_labelled_appends_the_case_to_each_line(capsys):
    with checks.labelled("num_classes=7"):
        checks.check_equal(1, 1, "a")
        checks.check_equal(1, 2, "b")
    assert capsys.readouterr().out == "PASS a 1 (num_classes=7)\nFAIL got b 1 expected b 2 (num_classes=7)\n"


# question(N): Run All never stops at an unanswered or crashing question ------------------------

def run_cell(source: str, namespace: dict, number: int) -> None:
    """Run ``source`` as a notebook cell would: compiled under a file name outside the package."""
    exec(compile(source, f"/tmp/ipykernel_0/{number}.py", "exec"), namespace)


def test_question_reports_a_stub_in_one_line(capsys):
    namespace = {"checks": checks}
    run_cell("def make_layers(cfg):\n    raise NotImplementedError()\n", namespace, 1)
    run_cell("with checks.question(1):\n    checks.check_param_count(make_layers([64]), 10)\n", namespace, 2)
    assert capsys.readouterr().out == "Question 1: not answered yet (make_layers raises NotImplementedError)\n"


def test_question_tells_a_missing_cell_from_a_typo_inside_the_answer(capsys):
    namespace = {"checks": checks}
    run_cell("with checks.question(2):\n    make_stage(1)\n", namespace, 3)
    assert capsys.readouterr().out == (
        "Question 2: FAIL make_stage is not defined: run the cell that defines it (above this one) first\n")
    run_cell("def make_stage(n):\n    return nn.Sequential()\n", namespace, 4)  # `nn` was never imported
    run_cell("with checks.question(2):\n    make_stage(1)\n", namespace, 5)
    line = capsys.readouterr().out
    assert line.startswith("Question 2: FAIL your code raised NameError: name 'nn' is not defined (in make_stage, line 2")


def test_question_reports_a_crash_with_where_it_happened(capsys):
    namespace = {"checks": checks}
    run_cell("def f(x):\n    return x[3]\n", namespace, 6)
    run_cell("with checks.question(3):\n    f([1])\n", namespace, 7)
    out = capsys.readouterr().out
    assert out.startswith("Question 3: FAIL your code raised IndexError: list index out of range (in f, line 2")
    assert out.count("\n") == 1


def test_check_same_shapes_works_on_meta_models(capsys):
    with torch.device("meta"):
        mine, reference, other = small_cnn(classes=7), small_cnn(classes=7), small_cnn()
    assert one_line(capsys, checks.check_same_shapes, mine, reference) == "PASS same parameter shapes as reference (last (7,))"
    assert one_line(capsys, checks.check_same_shapes, other, reference) == "FAIL got parameter #4 of shape (10, 4) expected (7, 4)"


def test_question_leaves_the_random_state_as_it_found_it(capsys):
    """Checks draw random weights: the cells after a check cell (training) must get the same random
    numbers whether or not the question was answered (or checked at all)."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with checks.question(1):
        torch.randn(100)  # what a check does
        raise NotImplementedError
    assert torch.equal(torch.rand(3), expected)
    assert "not answered yet" in capsys.readouterr().out


def test_question_blames_the_course_for_a_name_error_in_its_own_code(capsys):
    """A check that names something undefined is the course's bug: it must not tell the student
    to run a cell (lesson 01 Q4's check once lost its import of ``engine``)."""
    import course_utils.checks as package
    namespace = {"checks": checks}
    broken = Path(package.__file__).with_name("broken_check.py")  # a file name inside the package
    exec(compile("def check(f):\n    return engine.fit(f)\n", str(broken), "exec"), namespace)
    run_cell("with checks.question(4):\n    check(len)\n", namespace, 8)
    out = capsys.readouterr().out
    assert out.startswith("Question 4: FAIL the check itself raised NameError: name 'engine' is not defined")
    assert "please report it" in out and "run the cell" not in out
