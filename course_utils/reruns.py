"""Running a training cell again: what an interrupted run leaves behind, and what may follow it.

A notebook keeps its objects between cells. A training cell stopped in its first epoch (Ctrl-C,
"Interrupt the kernel") has already changed the model's weights, the optimizer's momentum and the
scheduler's position. Running that cell again would train on from there rather than from scratch,
and its checkpoints could never be resumed (a one-cycle schedule would step past its end).
``engine.fit_or_load`` asks this module before it trains:

- ``refuse_if_used(...)`` / ``why_used(...)``: whether these objects can still start a run from scratch;
- ``why_unusable(state, plan)``: why a checkpoint of this very plan, written by an older course
  version, can still not be loaded or resumed;
- ``tracking(model, optimizer, path)``: marks both as used from their first step until the run
  finishes, and on Ctrl-C says which cell to run next.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

# Objects a fit_or_load of this kernel has stepped. An optimizer keeps the mark: it can only go on with
# its own run (which the checkpoint restores), never start a new one. A model loses it when its run
# finishes: a finished model may start another run (lesson 05 fine-tunes the warmed-up model).
_STEPPED_OPTIMIZERS: weakref.WeakSet = weakref.WeakSet()
_UNFINISHED_MODELS: weakref.WeakSet = weakref.WeakSet()


def why_used(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> str | None:
    """Why these objects cannot start a run from scratch (a run already changed them), or None."""
    if model in _UNFINISHED_MODELS:
        return "the model's weights were changed by a run of this cell that stopped before its first checkpoint"
    if optimizer in _STEPPED_OPTIMIZERS or optimizer.state:
        return "the optimizer has already taken training steps"
    if scheduler is not None and getattr(scheduler, "last_epoch", 0) > 0:
        return f"the scheduler has already been stepped {scheduler.last_epoch} times"
    return None


def refuse_if_used(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, why_from_scratch: str) -> None:
    """Raise when a run must start from scratch (``why_from_scratch``) but these objects were used."""
    used = why_used(model, optimizer, scheduler)
    if used:
        raise RuntimeError(
            f"{why_from_scratch}, so this run starts from scratch, but {used} (an interrupted run of this "
            f"cell?). Training on would not give the result of a clean run, and its checkpoints could never "
            f"be resumed. Re-run the cell that builds the model, optimizer and scheduler, then this one.")


def why_unusable(state: dict, plan: dict) -> str | None:
    """Why a checkpoint of this very plan can still not be loaded or resumed, or None.

    Both come from runs of older course versions, which saved them: a diverged run (NaN loss),
    or a run that started on a scheduler an interrupted run had already stepped (its schedule ends
    too early: OneCycleLR fails with "Tried to step 129 times" on every resume).
    """
    history = state.get("history") or {}
    if not all(math.isfinite(x) for key in ("train_loss", "val_loss") for x in history.get(key, [])):
        return "its loss became NaN or infinite (the run diverged)"
    steps = (state.get("scheduler") or {}).get("last_epoch")
    batches = plan.get("batches_per_epoch")
    if steps is not None and batches and steps != state["epoch"] * batches:
        return (f"its scheduler took {steps} steps in {state['epoch']} epochs of {batches} batches: the run "
                f"started on a scheduler that an interrupted run had already stepped")
    return None


def finished(model: nn.Module) -> None:
    """The model holds a finished run (trained to the end, or loaded): it may start another run."""
    _UNFINISHED_MODELS.discard(model)


@contextmanager
def tracking(model: nn.Module, optimizer: torch.optim.Optimizer, path: Path) -> Iterator[None]:
    """Around a run: from the optimizer's first step both objects count as used; a run that ends
    normally frees the model; Ctrl-C prints which cell to run next (``path`` is its checkpoint)."""
    def stepped(*_) -> None:  # an optimizer step hook: from now on the objects are changed
        _UNFINISHED_MODELS.add(model)
        _STEPPED_OPTIMIZERS.add(optimizer)

    hook = optimizer.register_step_post_hook(stepped)
    try:
        yield
    except KeyboardInterrupt:
        if path.is_file():
            print(f"Interrupted. {path} holds the last completed epoch: run this cell again to resume "
                  f"from it (the result equals an uninterrupted run).", flush=True)
        elif model in _UNFINISHED_MODELS:
            print("Interrupted before the first epoch was saved, after the model, optimizer and scheduler "
                  "had been changed by it: re-run the cell that builds them, then this one.", flush=True)
        else:
            print("Interrupted before the first training step: nothing was changed, run this cell again.",
                  flush=True)
        raise
    finally:
        hook.remove()
    finished(model)
