"""One-line verdicts for graded notebook cells.

Each helper prints exactly one line, ``PASS ...`` or ``FAIL got ... expected ...``, and returns
``None``. The line holds shapes, counts and verdicts only (never raw floats, timings, devices or
paths), so a check cell's stored output is the same in every profile and on every device.
A wrong model never raises here: it prints FAIL, and nbval marks the cell as failed because its
text differs from the stored answer.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode


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


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


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
    ok = torch.allclose(actual.detach().double().cpu(), expected.detach().double().cpu(), atol=atol, rtol=rtol)
    bad = int((~torch.isclose(actual.detach().double().cpu(), expected.detach().double().cpu(),
                              atol=atol, rtol=rtol)).sum())
    _verdict(ok, f"{name} match", f"{bad} of {expected.numel()} {name} different",
             "all within tolerance")


def check_same_as(mine: nn.Module, reference: nn.Module,
                  input_shape: Sequence[int] | Sequence[Sequence[int]] | None = (2, 3, 32, 32),
                  seed: int = 0, atol: float = 1e-4) -> None:
    """PASS when ``mine`` has the reference's parameters (same order and shapes) and, with the
    reference's weights copied in, gives the same output for the same seeded input.

    Both models are put in ``eval()`` (dropout off, BatchNorm uses running statistics) on the CPU.
    For a module with several inputs, give one shape per input, e.g. ``Up``'s ``(x, skip)``:
    ``input_shape=[(2, 64, 8, 12), (2, 32, 17, 25)]``. Pass ``input_shape=None`` to compare
    parameters only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning printed in a check cell fails nbval
        try:
            message = _compare(mine, reference, input_shape, seed, atol)
        except Exception as error:  # a broken model is a FAIL, never a stack trace
            text = " ".join(str(error).split())  # one line, whatever the message holds
            message = f"FAIL got an error ({type(error).__name__}: {text}) expected the reference's output"
    print(message, flush=True)


def _compare(mine: nn.Module, reference: nn.Module, input_shape, seed: int, atol: float) -> str:
    if not isinstance(mine, nn.Module):
        return f"FAIL got {type(mine).__name__} expected an nn.Module"
    mine, reference = mine.cpu().eval(), reference.cpu().eval()
    ours, theirs = list(mine.parameters()), list(reference.parameters())
    if len(ours) != len(theirs):
        return f"FAIL got {len(ours)} parameter tensors expected {len(theirs)}"
    for i, (p, q) in enumerate(zip(ours, theirs)):
        if p.shape != q.shape:
            return f"FAIL got parameter #{i} of shape {tuple(p.shape)} expected {tuple(q.shape)}"
    our_buffers = [b for b in mine.buffers() if b.is_floating_point()]
    their_buffers = [b for b in reference.buffers() if b.is_floating_point()]
    if [b.shape for b in our_buffers] != [b.shape for b in their_buffers]:
        return (f"FAIL got {len(our_buffers)} float buffers (BatchNorm statistics) "
                f"expected {len(their_buffers)} of the reference's shapes")
    if input_shape is None:
        return f"PASS same parameters as reference ({sum(p.numel() for p in ours):,})"
    with torch.no_grad():
        randomize_batchnorm(reference, seed)  # a fresh BatchNorm is the identity in eval(): order would not matter
        for p, q in zip(ours + our_buffers, theirs + their_buffers):
            p.copy_(q)
        generator = torch.Generator().manual_seed(seed)
        several = isinstance(input_shape[0], Sequence)  # [(N, C, H, W), (N, C2, H2, W2)]: one per input
        inputs = [torch.randn(*shape, generator=generator) for shape in (input_shape if several else [input_shape])]
        got, expected = mine(*inputs), reference(*inputs)
    if not isinstance(got, torch.Tensor):
        return f"FAIL got output of type {type(got).__name__} expected a tensor"
    if got.shape != expected.shape:
        return f"FAIL got output shape {tuple(got.shape)} expected {tuple(expected.shape)}"
    if not torch.allclose(got, expected, atol=atol, rtol=1e-3):
        return "FAIL got different outputs expected the reference's output for the same weights and input"
    return "PASS same parameters and output as reference"


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
