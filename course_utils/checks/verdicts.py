"""One-line verdicts for graded notebook cells.

Each helper prints exactly one line, ``PASS ...`` or ``FAIL got ... expected ...``, and returns
``None``. The line holds shapes, counts and verdicts only (never raw floats, timings, devices or
paths), so a check cell's stored output is the same in every profile and on every device.
A wrong model never raises here: it prints FAIL, and nbval marks the cell as failed because its
text differs from the stored answer.
"""

from __future__ import annotations

import collections
import contextlib
import io
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from course_utils.measure import count_params  # re-exported: checks.count_params in the lessons


def _verdict(ok: bool, passed: str, got: str, expected: str) -> None:
    print(f"PASS {passed}" if ok else f"FAIL got {got} expected {expected}", flush=True)


def _shape(x: torch.Tensor | Sequence[int]) -> tuple[int, ...]:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(int(d) for d in x)


def check_shape(x: torch.Tensor | Sequence[int], expected: Sequence[int], name: str = "shape") -> None:
    """PASS when ``x`` (a tensor or a shape) has the expected shape."""
    try:
        got = _shape(x)
    except Exception as error:  # e.g. the student returned None
        _verdict(False, "", f"{type(x).__name__} ({error})", f"{name} {tuple(expected)}")
        return
    expected = tuple(expected)
    _verdict(got == expected, f"{name} {expected}", f"{name} {got}", f"{name} {expected}")


def check_param_count(model: nn.Module, expected: int, trainable_only: bool = False) -> None:
    """PASS when the model has exactly ``expected`` parameters."""
    what = "trainable parameters" if trainable_only else "parameters"
    if not isinstance(model, nn.Module):
        _verdict(False, "", f"{type(model).__name__}", f"an nn.Module with {expected:,} {what}")
        return
    got = count_params(model, trainable_only)
    _verdict(got == expected, f"{expected:,} {what}", f"{got:,} {what}", f"{expected:,} {what}")


def check_equal(got: object, expected: object, name: str = "value") -> None:
    """PASS when two plain values (ints, strings, tuples of them) are equal."""
    try:
        ok = bool(got == expected)
    except Exception:  # e.g. an array: its == is elementwise
        ok = False
    _verdict(ok, f"{name} {expected!r}", f"{name} {got!r}", f"{name} {expected!r}")


def check_close(actual: torch.Tensor, expected: torch.Tensor, name: str = "values",
                atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """PASS when two tensors have the same shape and values within tolerance (floats never printed)."""
    expected = torch.as_tensor(expected)
    try:
        actual = torch.as_tensor(actual)
    except Exception:  # e.g. a stub returned None
        _verdict(False, "", f"{name} of type {type(actual).__name__}", f"a tensor of shape {tuple(expected.shape)}")
        return
    if actual.shape != expected.shape:
        _verdict(False, "", f"{name} of shape {tuple(actual.shape)}", f"shape {tuple(expected.shape)}")
        return
    close = torch.isclose(actual.detach().double().cpu(), expected.detach().double().cpu(), atol=atol, rtol=rtol)
    bad = int((~close).sum())
    _verdict(bad == 0, f"{name} match", f"{bad} of {expected.numel()} {name} different",
             "all within tolerance")


def check_same_as(mine: nn.Module, reference: nn.Module,
                  input_shape: Sequence[int] | Sequence[Sequence[int]] | None = (2, 3, 32, 32),
                  seed: int = 0, atol: float = 1e-4, input_scale: float = 1.0) -> None:
    """PASS when ``mine`` has the reference's parameters (same order and shapes) and, with the
    reference's weights copied in, gives the same output for the same seeded input.

    Both models are put in ``eval()`` (dropout off, BatchNorm uses running statistics) on the CPU.
    For a module with several inputs, give one shape per input, e.g. ``Up``'s ``(x, skip)``:
    ``input_shape=[(2, 64, 8, 12), (2, 32, 17, 25)]``. Pass ``input_shape=None`` to compare
    parameters only. ``input_scale=100`` multiplies the inputs: large values show a clipping
    activation (``ReLU6``, ``Hardtanh``) that inputs of size 1 never reach.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning printed in a check cell fails nbval
        try:
            message = _compare(mine, reference, input_shape, seed, atol, input_scale)
        except Exception as error:  # a broken model is a FAIL, never a stack trace
            text = " ".join(str(error).split())  # one line, whatever the message holds
            message = f"FAIL got an error ({type(error).__name__}: {text}) expected the reference's output"
    print(message, flush=True)


def _float_buffers(model: nn.Module) -> list[torch.Tensor]:
    return [b for b in model.buffers() if b.is_floating_point()]  # BatchNorm's running statistics


@torch.no_grad()
def _copy_reference(mine: nn.Module, reference: nn.Module, seed: int) -> None:
    """Seeded BatchNorm statistics in the reference (a fresh BatchNorm is the identity in eval():
    its place would not matter), then the reference's parameters and buffers copied into ``mine``
    (same order and shapes: checked by ``_compare`` first)."""
    randomize_batchnorm(reference, seed)
    for p, q in zip([*mine.parameters(), *_float_buffers(mine)], [*reference.parameters(), *_float_buffers(reference)]):
        p.copy_(q)


def _compare(mine: nn.Module, reference: nn.Module, input_shape, seed: int, atol: float,
             input_scale: float = 1.0) -> str:
    if not isinstance(mine, nn.Module):
        return f"FAIL got {type(mine).__name__} expected an nn.Module"
    mine, reference = mine.cpu().eval(), reference.cpu().eval()
    ours, theirs = list(mine.parameters()), list(reference.parameters())
    if len(ours) != len(theirs):
        return f"FAIL got {len(ours)} parameter tensors expected {len(theirs)}"
    for i, (p, q) in enumerate(zip(ours, theirs)):
        if p.shape != q.shape:
            return f"FAIL got parameter #{i} of shape {tuple(p.shape)} expected {tuple(q.shape)}"
    our_buffers, their_buffers = _float_buffers(mine), _float_buffers(reference)
    if [b.shape for b in our_buffers] != [b.shape for b in their_buffers]:
        return (f"FAIL got {len(our_buffers)} float buffers (BatchNorm statistics) "
                f"expected {len(their_buffers)} of the reference's shapes")
    if input_shape is None:
        return f"PASS same parameters as reference ({sum(p.numel() for p in ours):,})"
    _copy_reference(mine, reference, seed)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        several = isinstance(input_shape[0], Sequence)  # [(N, C, H, W), (N, C2, H2, W2)]: one per input
        inputs = [torch.randn(*shape, generator=generator) * input_scale
                  for shape in (input_shape if several else [input_shape])]
        got, expected = mine(*inputs), reference(*inputs)
    if not isinstance(got, torch.Tensor):
        return f"FAIL got output of type {type(got).__name__} expected a tensor"
    if got.shape != expected.shape:
        return f"FAIL got output shape {tuple(got.shape)} expected {tuple(expected.shape)}"
    if not torch.allclose(got, expected, atol=atol * input_scale, rtol=1e-3):
        return "FAIL got different outputs expected the reference's output for the same weights and input"
    return "PASS same parameters and output as reference" + (f" (inputs x{input_scale:g})" if input_scale != 1 else "")


def check_same_training(mine: nn.Module, reference: nn.Module, input_shape: Sequence[int] = (2, 3, 32, 32),
                        seed: int = 0, rtol: float = 1e-3) -> None:
    """PASS when, in ``train()`` mode with the reference's weights copied in, ``mine`` gives the
    reference's output, parameter gradients, input gradient and updated BatchNorm statistics.

    An ``eval()`` forward under ``no_grad`` cannot see BatchNorm's batch statistics or momentum,
    dropout, or a gradient that never flows (``.detach()``, ``torch.no_grad()``); this can.
    Dropout draws the same masks in both models (the same seed before each forward); the
    notebook's random state is left as it was.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning printed in a check cell fails nbval
        try:
            message = _compare_training(mine, reference, input_shape, seed, rtol)
        except Exception as error:  # a broken model is a FAIL, never a stack trace
            text = " ".join(str(error).split())
            message = (f"FAIL got an error in train() ({type(error).__name__}: {text}) "
                       "expected the reference's training step")
    print(message, flush=True)


def _close(got: torch.Tensor, expected: torch.Tensor, rtol: float) -> bool:
    """Equal within ``rtol`` of the larger magnitude in ``expected`` (gradients span many scales)."""
    if got.shape != expected.shape:
        return False
    if not expected.numel():
        return True
    scale = float(expected.detach().abs().max())
    return float((got.detach() - expected.detach()).abs().max()) <= rtol * scale + 1e-7  # NaN: False


def _compare_training(mine: nn.Module, reference: nn.Module, input_shape, seed: int, rtol: float) -> str:
    same = _compare(mine, reference, None, seed, 0.0)  # parameters and buffers in the same order and shapes
    if not same.startswith("PASS"):
        return same
    mine, reference = mine.cpu().train(), reference.cpu().train()
    ours, theirs = list(mine.parameters()), list(reference.parameters())
    _copy_reference(mine, reference, seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*input_shape, generator=generator)
    outputs, input_grads = [], []
    for model in (mine, reference):
        model.zero_grad(set_to_none=True)
        x_model = x.clone().requires_grad_(True)
        with torch.random.fork_rng(devices=[]):  # same dropout masks; the notebook's RNG untouched
            torch.manual_seed(seed)
            out = model(x_model)
        if not isinstance(out, torch.Tensor):
            return f"FAIL got output of type {type(out).__name__} in train() expected a tensor"
        if not out.requires_grad:
            return "FAIL got an output without gradient in train() expected gradients to reach the parameters"
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1))
        (out * weights).sum().backward()
        outputs.append(out)
        input_grads.append(x_model.grad)
    got, expected = outputs
    if got.shape != expected.shape:
        return f"FAIL got output shape {tuple(got.shape)} in train() expected {tuple(expected.shape)}"
    if not _close(got, expected, rtol):
        return "FAIL got different outputs in train() expected the reference's (BatchNorm batch statistics, dropout)"
    for i, (p, q) in enumerate(zip(ours, theirs)):
        if q.grad is not None and p.grad is None:
            return f"FAIL got no gradient for parameter #{i} of shape {tuple(p.shape)} expected one (is it detached?)"
        if q.grad is not None and not _close(p.grad, q.grad, rtol):
            return (f"FAIL got a different gradient for parameter #{i} of shape {tuple(p.shape)} "
                    "expected the reference's")
    if input_grads[1] is not None and (input_grads[0] is None or not _close(input_grads[0], input_grads[1], rtol)):
        return "FAIL got a different gradient for the input expected the reference's"
    for i, (b, c) in enumerate(zip(_float_buffers(mine), _float_buffers(reference))):
        if not _close(b, c, rtol):
            return (f"FAIL got different BatchNorm running statistics after a train() step (buffer #{i}) "
                    "expected the reference's (check BatchNorm's momentum)")
    return "PASS same output, gradients and BatchNorm statistics as reference in train()"


def _settings(model: nn.Module) -> tuple[list[str], list[str]]:
    """What a forward pass in eval() cannot see: BatchNorm and dropout settings, activation types."""
    layers, activations = [], []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            layers.append(f"{type(module).__name__}({module.num_features}, eps={module.eps:g}, "
                          f"momentum={module.momentum}, affine={module.affine}, "
                          f"track_running_stats={module.track_running_stats})")
        elif isinstance(module, nn.modules.dropout._DropoutNd):
            layers.append(f"{type(module).__name__}(p={module.p:g})")
        elif type(module).__module__ == nn.modules.activation.__name__:
            activations.append(type(module).__name__)
    return layers, activations


def check_same_settings(mine: nn.Module, reference: nn.Module) -> None:
    """PASS when ``mine`` has the reference's BatchNorm settings (eps, momentum, ...) and dropout
    probabilities, in order, and only the reference's kinds of activation modules.

    These never show in an ``eval()`` forward: momentum only moves the running statistics in
    training, and dropout does nothing in ``eval()``. An activation used as a function in
    ``forward`` (``F.relu``) is fine: only activation modules are compared.
    """
    if not isinstance(mine, nn.Module):
        _verdict(False, "", type(mine).__name__, "an nn.Module")
        return
    (ours, our_activations), (theirs, their_activations) = _settings(mine), _settings(reference)
    wrong_activations = sorted(set(our_activations) - set(their_activations))
    if wrong_activations:
        _verdict(False, "", f"activation {', '.join(wrong_activations)}",
                 f"{', '.join(sorted(set(their_activations))) or 'no activation modules'}")
    elif len(ours) != len(theirs):
        _verdict(False, "", f"{len(ours)} BatchNorm/dropout layers", f"{len(theirs)}")
    else:
        bad = next(((i, a, b) for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
        if bad is None:
            _verdict(True, "same BatchNorm, dropout and activation settings as reference", "", "")
        else:
            _verdict(False, "", f"layer {bad[1]}", bad[2])


def check_same_shapes(mine: nn.Module, reference: nn.Module) -> None:
    """PASS when ``mine`` has the reference's parameter shapes, in order; prints the last one.

    Works on models built on the ``meta`` device (shapes without memory or initialisation: a
    ResNet-50 builds in a tenth of the time), e.g. to check that ``num_classes=7`` reaches the head.
    """
    if not isinstance(mine, nn.Module):
        _verdict(False, "", type(mine).__name__, "an nn.Module")
        return
    ours = [tuple(p.shape) for p in mine.parameters()]
    theirs = [tuple(p.shape) for p in reference.parameters()]
    if len(ours) != len(theirs):
        _verdict(False, "", f"{len(ours)} parameter tensors", f"{len(theirs)}")
        return
    bad = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    if bad is None:
        _verdict(True, f"same parameter shapes as reference (last {theirs[-1]})", "", "")
    else:
        _verdict(False, "", f"parameter #{bad} of shape {ours[bad]}", f"{theirs[bad]}")


@contextlib.contextmanager
def labelled(label: str):
    """Append `` (label)`` to every line printed inside the block, e.g. ``PASS ... (num_classes=7)``,
    so that two calls of the same check on different cases print lines that say which case."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            print(f"{line} ({label})", flush=True)


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm seeded scale, shift and statistics near 1 and 0 (as after training).

    A fresh BatchNorm in ``eval()`` is the identity, so a check on a fresh model cannot tell
    whether a BatchNorm was applied, or in which order; after this call it can. Returns the model.
    """
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            for name in ("weight", "bias", "running_mean", "running_var"):
                tensor = getattr(module, name, None)
                if tensor is not None:
                    draw = torch.rand(tensor.shape, generator=generator)
                    tensor.copy_(draw + 0.5 if name in ("weight", "running_var") else draw - 0.5)
    return model


class CountTorchCalls(TorchFunctionMode):
    """Counts, by name, the torch functions and tensor methods called inside a ``with`` block.

    ``with checks.CountTorchCalls() as calls: confusion_matrix(preds, masks, 21)``, then
    ``calls["bincount"]`` counts ``torch.bincount(t)`` and ``t.bincount()`` alike (patching
    ``torch.bincount`` with ``unittest.mock`` would miss the method form).
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __enter__(self) -> collections.Counter[str]:
        super().__enter__()
        return self.calls

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls[getattr(func, "__name__", repr(func))] += 1
        return func(*args, **(kwargs or {}))
