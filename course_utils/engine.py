"""The one training loop of the course: train an epoch, evaluate, fit, checkpoint.

torchvision ``references`` style: plain functions, every input an argument, the result returned,
no Trainer class and no globals. Each loop sets ``model.train()`` / ``model.eval()`` on its first
line. Losses and correct counts are summed ON THE DEVICE and read once per epoch: a ``.item()``
per batch would make the CPU wait for the GPU at every step.

Learning-rate schedulers are stepped once PER ITERATION (batch), not per epoch: build them with
steps, e.g. ``OneCycleLR(optimizer, max_lr, total_steps=epochs * len(train_loader))``, a poly
``LambdaLR(optimizer, lambda step: (1 - step / total_steps) ** 0.9)`` or
``CosineAnnealingLR(optimizer, T_max=epochs * len(train_loader))``.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from course_utils import checkpoint, distributed, reruns, runtime, validate
from course_utils.metrics import IGNORE_INDEX, ConfusionMatrix, scored
from course_utils.progress import bar as progress_bar

HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time")


def loss_for_segmentation() -> nn.Module:
    """Cross-entropy over pixels that skips the 255 border (it is neither object nor background)."""
    return nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """Autocast dtype: None (full precision) unless ``amp`` on CUDA; bf16 where the GPU has it, else fp16.

    Emulated bf16 does not count: on a T4 (Colab's free GPU) it is slower than fp32.
    """
    if not amp or torch.device(device).type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def make_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler | None:
    """A GradScaler when training in fp16 (its small range underflows gradients), else None."""
    return torch.amp.GradScaler("cuda") if amp_dtype(device, amp) == torch.float16 else None


def _progress(loader: Iterable, progress: bool, desc: str) -> Iterable:
    """``loader``'s batches, behind a progress bar when ``progress`` (none at all in ci).

    The bar gets an iterator made here, not the loader: ``tqdm.auto``'s bar calls ``iter()`` on
    what it is given, so a DataLoader would start its workers twice per epoch and leave one
    unused iterator behind, whose clean-up later runs inside a forked worker ("Exception ignored
    in ... _MultiProcessingDataLoaderIter.__del__ ... can only test a child process").
    """
    if not progress:
        return loader  # ci: no bars at all, not even a disabled one
    total = len(loader) if hasattr(loader, "__len__") else None
    return progress_bar(iter(loader), total=total, desc=desc, leave=False)  # stderr; cleared when done


def _place(model: nn.Module, device: torch.device) -> None:
    """Move the model in place (the optimizer keeps pointing at the same parameters)."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)  # matches the channels_last batches


def _to_device(images: torch.Tensor, targets: torch.Tensor, device: torch.device):
    images = images.to(device, non_blocking=True)
    targets = targets.to(device, non_blocking=True)
    if device.type == "cuda" and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)  # faster convs on tensor cores
    return images, targets


def train_one_epoch(model: nn.Module, loader: Iterable, criterion: nn.Module,
                    optimizer: torch.optim.Optimizer, device: torch.device | str, *,
                    scheduler=None, scaler: torch.amp.GradScaler | None = None, amp: bool = False,
                    progress: bool = True, epoch: int = 0, num_classes: int | None = None) -> dict:
    """One pass over ``loader``; returns ``{"loss", "accuracy"}`` of the epoch.

    ``scheduler`` (optional) is stepped after every batch (see the module docstring). The loss is
    the mean per image; accuracy counts the labels/pixels that ``metrics.scored`` counts, with the
    loss's ``ignore_index`` (255 without one), like ``evaluate``.
    """
    model.train()
    device = torch.device(device)
    validate.model_on_device(model, device)
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise TypeError("ReduceLROnPlateau steps once per epoch on a metric: call "
                        "scheduler.step(val_loss) yourself after evaluate(), not here.")
    dtype = amp_dtype(device, amp)
    if dtype == torch.float16 and scaler is None:
        scaler = make_scaler(device, amp)
    ignore_index = validate.ignored_label(criterion)
    loss_sum = torch.zeros((), device=device)  # summed on the device, read once at the end
    correct = torch.zeros((), dtype=torch.long, device=device)
    counted = torch.zeros((), dtype=torch.long, device=device)
    num_images = 0
    for i, (images, targets) in enumerate(_progress(loader, progress, f"epoch {epoch + 1} train")):
        labels = validate.labels_to_check(targets, i)  # before the copy: on the CPU, checking is free
        images, targets = _to_device(images, targets, device)
        validate.float_images(images)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(images)  # (N, C) or (N, C, H, W)
            validate.targets_fit(logits, targets, num_classes, criterion, labels,
                                 where=f"training batch {i + 1} of epoch {epoch + 1}")
            loss = criterion(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()  # per iteration
        with torch.no_grad():
            loss_sum += loss.detach().float() * images.shape[0]
            valid = scored(targets, logits.shape[1], ignore_index)  # the one rule (255 = ignore)
            correct += ((logits.argmax(1) == targets) & valid).sum()
            counted += valid.sum()
        num_images += images.shape[0]
    if distributed.is_distributed():  # under torchrun: add up all ranks' sums, so every rank reports the epoch
        loss_sum, correct, counted, num_images = _sum_over_ranks(loss_sum, correct, counted, num_images)
    if num_images == 0:
        raise ValueError("The training loader yielded no batches: is the dataset smaller than "
                         "batch_size with drop_last=True?")
    return {"loss": loss_sum.item() / num_images,  # the one sync of the epoch
            "accuracy": correct.item() / max(counted.item(), 1)}


def _sum_over_ranks(loss_sum: torch.Tensor, correct: torch.Tensor, counted: torch.Tensor,
                    num_images: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The four sums of an epoch added up over all ranks, in one all-reduce (float64 holds counts exactly)."""
    totals = torch.stack([loss_sum.double(), correct.double(), counted.double(),
                          torch.tensor(float(num_images), dtype=torch.float64, device=loss_sum.device)])
    distributed.all_reduce_sum(totals)
    return totals[0], totals[1].long(), totals[2].long(), int(totals[3].item())


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str, num_classes: int, *,
             criterion: nn.Module | None = None, progress: bool = True, max_batches: int | None = None,
             amp: bool = False) -> dict:
    """Score ``model`` on ``loader`` with one confusion matrix; leaves the model in ``eval()``.

    Returns ``accuracy`` (pixel accuracy for masks), ``per_class_accuracy``, ``confusion`` (on
    the CPU), ``loss`` when a criterion is given, and for segmentation ``miou`` and ``iou``.
    Targets count by ``metrics.scored`` with the criterion's ``ignore_index`` (255 without one),
    so ``metrics.pixel_accuracy(preds, targets, ignore_index=...)`` gives the same accuracy.
    Under torchrun, call it on EVERY rank: each scores its shard of the images (``max_batches``
    counts its own batches) and all of them get the totals (a rank-0-only call would wait forever).
    """
    model = distributed.unwrap(model)  # a DDP forward would wait for the other ranks at every batch
    loader = distributed.shard(loader)  # under torchrun: each rank scores its part of the images
    model.eval()
    device = torch.device(device)
    validate.model_on_device(model, device)
    dtype = amp_dtype(device, amp)
    matrix = ConfusionMatrix(num_classes, ignore_index=validate.ignored_label(criterion))
    loss_sum = torch.zeros((), device=device)
    num_images, segmentation = 0, False
    for i, (images, targets) in enumerate(_progress(loader, progress, "evaluate")):
        if max_batches is not None and i >= max_batches:
            break
        labels = validate.labels_to_check(targets, i)  # before the copy: on the CPU, checking is free
        images, targets = _to_device(images, targets, device)
        validate.float_images(images)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(images)  # (N, C) or (N, C, H, W)
            validate.targets_fit(logits, targets, num_classes, criterion, labels,
                                 where=f"evaluation batch {i + 1}")
            if criterion is not None:
                loss_sum += criterion(logits, targets).float() * images.shape[0]
        matrix.update(logits.argmax(1), targets)  # (N,) or (N, H, W)
        num_images += images.shape[0]
        segmentation = targets.dim() > 1
    if distributed.is_distributed():  # add up the ranks' confusion matrices: every rank reports the whole set
        counts = matrix.matrix if matrix.matrix is not None else torch.zeros(
            num_classes, num_classes, dtype=torch.long, device=device)  # a rank with no images
        sums = distributed.all_reduce_sum(torch.tensor([loss_sum.item(), num_images, segmentation],
                                                       dtype=torch.float64, device=device))
        matrix.matrix = distributed.all_reduce_sum(counts)
        loss_sum, num_images, segmentation = sums[0], int(sums[1].item()), bool(sums[2].item())
    if num_images == 0:
        raise ValueError("evaluate(): the loader yielded no batches.")
    scores = matrix.compute()
    result = {"accuracy": scores["accuracy"], "per_class_accuracy": scores["per_class_accuracy"],
              "confusion": scores["confusion"]}
    if criterion is not None:
        result["loss"] = loss_sum.item() / num_images
    if segmentation:
        result["miou"], result["iou"] = scores["miou"], scores["iou"]
    return result


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable, device: torch.device | str,
            max_batches: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Class predictions and targets for a whole loader, concatenated on the CPU: ``(preds, targets)``."""
    model.eval()
    device = torch.device(device)
    validate.model_on_device(model, device)
    all_preds, all_targets = [], []
    for i, (images, targets) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        images, _ = _to_device(images, targets, device)
        all_preds.append(model(images).argmax(1).cpu())  # (N,) or (N, H, W)
        all_targets.append(targets.cpu())  # a DeviceLoader's targets are on the GPU
    return torch.cat(all_preds), torch.cat(all_targets)


class History(dict):
    """``fit_or_load``'s result: the history (a dict of lists, as ``fit`` returns) that also says what
    happened, so a cell or a test can check it instead of reading the printed line.

    ``outcome``: ``"trained"`` (from scratch), ``"resumed"`` (a partial checkpoint, trained on to
    the end) or ``"loaded"`` (a finished checkpoint of the same plan: nothing was trained).
    ``checkpoint``: the file. ``replaced``: where an old run of another plan was set aside, or None.
    """

    OUTCOMES = ("trained", "resumed", "loaded")

    def __init__(self, history: dict, outcome: str, checkpoint: Path, replaced: Path | None = None) -> None:
        if outcome not in self.OUTCOMES:
            raise ValueError(f"outcome must be one of {self.OUTCOMES}, got {outcome!r}")
        super().__init__(history)
        self.outcome, self.checkpoint, self.replaced = outcome, checkpoint, replaced

    def __repr__(self) -> str:
        return f"History({self.outcome}, {len(self.get('epoch', []))} epochs, {dict.__repr__(self)})"


def new_history() -> dict:
    """An empty history: a plain dict of lists that ``viz.plot_history`` takes as is."""
    return {key: [] for key in HISTORY_KEYS}


def _loader_generator(loader: Iterable) -> torch.Generator | None:
    """The training loader's own generator (shuffling, augmentation, worker seeds), if it has one."""
    generator = getattr(loader, "generator", None)  # DataLoader(generator=...) and DeviceLoader
    return generator if isinstance(generator, torch.Generator) else None


def _rng_state(train_loader: Iterable) -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = _loader_generator(train_loader)
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def _set_rng_state(state: dict, train_loader: Iterable) -> None:
    """Restore the generators so a resumed run shuffles, augments and drops out exactly like an
    uninterrupted one: the global ones, and the training loader's own, which a re-run cell rebuilt
    from its seed (it would replay epoch 1's order)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator = _loader_generator(train_loader)
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


def fit(model: nn.Module, train_loader: Iterable, val_loader: Iterable, *, epochs: int,
        optimizer: torch.optim.Optimizer, criterion: nn.Module, device: torch.device | str,
        num_classes: int, scheduler=None, scaler: torch.amp.GradScaler | None = None,
        profile: runtime.Profile | None = None, checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 1, start_epoch: int = 0, history: dict | None = None,
        plan: dict | None = None) -> dict:
    """Train from ``start_epoch`` up to ``epochs`` (a total), evaluating after each epoch.

    Prints one line per epoch and returns the history (a dict of lists, one entry per epoch;
    ``lr`` is the rate at the end of the epoch, ``epoch_time`` the seconds of training + evaluation).
    With ``checkpoint_path``, saves every ``checkpoint_every`` epochs and after the last one.
    A loss that becomes NaN or infinite stops training with advice (``FloatingPointError``) before
    anything is saved, so the last good checkpoint stays. ``profile`` supplies ``amp`` and
    ``progress`` (default: no amp, progress bars on). ``plan`` (``checkpoint.training_plan``) is
    stored in each checkpoint; ``fit_or_load`` passes it.
    Under torchrun (``distributed.process_group``) the same call trains with DDP on every rank's
    shard of the data, and only rank 0 prints and saves.
    """
    device = torch.device(device)
    amp = profile.amp if profile is not None else False
    progress = profile.progress if profile is not None else True
    # Under torchrun (see distributed.py): train a DDP wrapper ``net`` of the plain ``model`` on this
    # rank's shard of the data; rank 0 alone prints and saves. Without a process group: net is model.
    model = distributed.unwrap(model)
    _place(model, device)
    net = distributed.wrap(model, device)
    train_loader, val_loader = distributed.shard(train_loader), distributed.shard(val_loader)
    scaler = scaler if scaler is not None else make_scaler(device, amp)
    history = {key: list(values) for key, values in (history or new_history()).items()}
    for epoch in range(start_epoch, epochs):
        start = time.perf_counter()
        distributed.set_epoch(train_loader, epoch)  # a DistributedSampler shuffles by epoch
        train = train_one_epoch(net, train_loader, criterion, optimizer, device, scheduler=scheduler,
                                scaler=scaler, amp=amp, progress=progress, epoch=epoch,
                                num_classes=num_classes)
        val = evaluate(model, val_loader, device, num_classes, criterion=criterion,
                       progress=progress, amp=amp)
        lr = optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch + 1, "train_loss": train["loss"], "train_acc": train["accuracy"],
               "val_loss": val["loss"], "val_acc": val["accuracy"], "lr": lr,
               "epoch_time": time.perf_counter() - start}
        if "miou" in val:
            row["val_miou"] = val["miou"]
        for key, value in row.items():
            history.setdefault(key, []).append(value)
        miou = f" miou {val['miou']:.3f}" if "miou" in val else ""
        _say(f"epoch {epoch + 1}/{epochs} | train loss {train['loss']:.3f} acc {train['accuracy']:.3f} | "
              f"val loss {val['loss']:.3f} acc {val['accuracy']:.3f}{miou} | lr {lr:.2e} | "
              f"{row['epoch_time']:.1f}s")
        if not (math.isfinite(train["loss"]) and math.isfinite(val["loss"])):
            raise _diverged(epoch + 1, train["loss"], val["loss"], lr, checkpoint_path)  # nothing saved
        finished = epoch + 1 == epochs
        if checkpoint_path is not None and (finished or (epoch + 1) % checkpoint_every == 0) and distributed.is_main():
            checkpoint.save(
                checkpoint_path, model=model.state_dict(), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict() if scheduler is not None else None,
                scaler=scaler.state_dict() if scaler is not None else None,
                epoch=epoch + 1, epochs=epochs, history=history,
                profile=profile.name if profile is not None else None, finished=finished,
                rng=_rng_state(train_loader), plan=plan)
        distributed.barrier()  # under torchrun: the other ranks wait until rank 0 has saved
    return history


def _say(message: str) -> None:
    """Print a progress line, on rank 0 only under torchrun (N identical lines would say nothing more)."""
    if distributed.is_main():
        print(message, flush=True)


def _diverged(epoch: int, train_loss: float, val_loss: float, lr: float,
              checkpoint_path: str | Path | None) -> FloatingPointError:
    """The error for a run whose loss became NaN or infinite: what happened, what was kept, what to try."""
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        kept = f"The checkpoint {checkpoint_path} still holds the last good epoch (this one was not saved). "
    else:
        kept = "Nothing was saved. "
    return FloatingPointError(
        f"Training stopped in epoch {epoch}: the loss is no longer a number (train loss {train_loss}, "
        f"val loss {val_loss}), so the weights have blown up and further epochs cannot repair them. {kept}"
        f"What to try: a lower learning rate (it is {lr:.2e} now: try 10x lower); check the inputs "
        f"(normalised images, no NaN or inf in the data); with amp, try amp=False. Then re-run the cell "
        f"that builds the model and optimizer, and this one.")


def _restore(state: dict, path: Path, model, optimizer, scheduler, scaler, device) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise RuntimeError(f"Checkpoint {path} does not fit this model (another architecture or "
                           f"width?). Delete it to train again.\n{str(error).splitlines()[0]}") from error
    _place(model, device)  # before the optimizer, whose state follows the parameters
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])


def fit_or_load(model: nn.Module, train_loader: Iterable, val_loader: Iterable, *, name: str,
                profile: runtime.Profile, optimizer: torch.optim.Optimizer, criterion: nn.Module,
                num_classes: int, epochs: int | None = None, device: torch.device | str | None = None,
                scheduler=None, checkpoint_dir: str | Path | None = None,
                checkpoint_every: int = 1) -> History:
    """Train with checkpoints, or reuse them: load a finished run, resume a partial one.

    The file is ``(checkpoint_dir or runtime.checkpoint_dir(profile)) / f"{name}.pt"``. A finished
    checkpoint of the same plan is loaded instead of training; a partial one is resumed from its
    last epoch (model, optimizer, scheduler, scaler, history, random state). The plan
    (``checkpoint.training_plan``) is the profile and its data settings, epochs, the model's
    structure (``repr(model)``: layers, dropout rates, activations, their order), the data's
    transforms, optimizer settings, schedule, loss and batches: change the learning rate or a
    dropout rate, say, and the old run does not answer the new question. It is then set aside as
    ``<name>.replaced-<time>.pt`` (never overwritten) and training starts from scratch, saying
    what changed; so is a checkpoint of an older course version that did not record the structure
    and transforms. Returns the history as a ``History``: a dict, whose ``outcome`` says whether
    it was ``"trained"``, ``"resumed"`` or ``"loaded"``.

    Two faults students hit are refused with a message instead of a wrong result: training from
    scratch with a model, optimizer or scheduler that an interrupted run already changed (re-run
    the cell that builds them), and a second notebook training the same checkpoint at the same
    time (``checkpoint.CheckpointBusyError``).
    """
    epochs = epochs if epochs is not None else profile.epochs
    device = torch.device(device) if device is not None else distributed.device()
    # under torchrun: the plain model (its structure is the plan) and this rank's shards of the data
    model = distributed.unwrap(model)
    train_loader, val_loader = distributed.shard(train_loader), distributed.shard(val_loader)
    path = Path(checkpoint_dir or runtime.checkpoint_dir(profile)) / f"{name}.pt"
    plan = checkpoint.training_plan(model, train_loader, optimizer, criterion, epochs=epochs,
                                    profile=profile, scheduler=scheduler)
    scaler = make_scaler(device, profile.amp)
    start_epoch, history, outcome, kept = 0, None, "trained", None
    # one trainer per checkpoint; under torchrun rank 0 holds the lock and reads the file for all ranks
    with checkpoint.locked(path) if distributed.is_main() else contextlib.nullcontext():
        if distributed.is_main():
            checkpoint.remove_temporary_files(path)  # left by a process killed while saving
        state = checkpoint.load(path) if distributed.is_main() and path.is_file() else None
        state = distributed.broadcast_object(state)  # under torchrun: rank 0's checkpoint on every rank
        if state is not None:
            if "plan" in state:
                changes = checkpoint.plan_differences(state["plan"], plan)
            else:  # written before plans were recorded: epochs and profile are all we know
                changes = [f"{key}: {state.get(key)} -> {value}" for key, value
                           in (("epochs", epochs), ("profile", profile.name)) if state.get(key) != value]
                changes.append(f"{' and '.join(checkpoint.RUN_KEYS)}: {checkpoint.NOT_RECORDED}")
            problem = None if changes else reruns.why_unusable(state, plan)
            if changes or problem:
                reason = problem or (f"comes from another plan ({'; '.join(changes[:4])}"
                                     f"{'; ...' if len(changes) > 4 else ''})")
                # before setting the old file aside: a refusal changes nothing on disk
                reruns.refuse_if_used(model, optimizer, scheduler, f"Checkpoint {path} {reason}")
                if distributed.is_main():
                    kept = checkpoint.set_aside(path)
                    _say(f"Checkpoint {path} {reason}: training from scratch. The old run is kept as {kept.name}.")
            else:
                _restore(state, path, model, optimizer, scheduler, scaler, device)  # overwrites any used state
                if state["finished"]:
                    _say(f"Loaded the finished checkpoint {path} ({state['epoch']} epochs). To train "
                         f"again, delete it, then re-run the cell that builds the model and optimizer, "
                         f"and this one.")
                    reruns.finished(model)
                    return History(state["history"], "loaded", path)
                _set_rng_state(state["rng"], train_loader)
                start_epoch, history, outcome = state["epoch"], state["history"], "resumed"
                _say(f"Resuming {path} after epoch {start_epoch} of {epochs}.")
        else:
            reruns.refuse_if_used(model, optimizer, scheduler, f"No checkpoint {path} yet")
        # used from the first step; Ctrl-C says what next, and so does a rank that died under torchrun
        with reruns.tracking(model, optimizer, path), distributed.explain_lost_rank(path):
            history = fit(model, train_loader, val_loader, epochs=epochs, optimizer=optimizer,
                          criterion=criterion, device=device, num_classes=num_classes, scheduler=scheduler,
                          scaler=scaler, profile=profile, checkpoint_path=path,
                          checkpoint_every=checkpoint_every, start_epoch=start_epoch, history=history, plan=plan)
        return History(history, outcome, path, replaced=kept)


def train_more(model: nn.Module, train_loader: Iterable, val_loader: Iterable, *, history: dict,
               optimizer: torch.optim.Optimizer, criterion: nn.Module, device: torch.device | str,
               num_classes: int, epochs: int = 1, lr: float | Sequence[float] | None = None,
               scheduler=None, profile: runtime.Profile | None = None) -> dict:
    """Fine-tune a trained (e.g. just loaded) model for ``epochs`` more; returns the longer history.

    The source course's "load the checkpoint, then train one more epoch". ``lr`` (optional) sets
    the learning rate, since the fit's schedule usually ended near zero: one number for every
    parameter group, or one per group (e.g. ``[1e-4, 1e-3]`` keeps an encoder's rate ten times
    lower than the decoder's). No checkpoint is written, so ``fit_or_load`` keeps loading the same
    finished run next time.
    """
    if lr is not None:
        rates = list(lr) if isinstance(lr, Sequence) else [lr] * len(optimizer.param_groups)
        if len(rates) != len(optimizer.param_groups):
            raise ValueError(f"train_more(lr=...) got {len(rates)} rates for the optimizer's "
                             f"{len(optimizer.param_groups)} parameter groups: give one number, or one per group.")
        for group, rate in zip(optimizer.param_groups, rates):
            group["lr"] = rate
    done = len(history.get("epoch", []))
    return fit(model, train_loader, val_loader, epochs=done + epochs, optimizer=optimizer,
               criterion=criterion, device=device, num_classes=num_classes, scheduler=scheduler,
               profile=profile, start_epoch=done, history=history)
