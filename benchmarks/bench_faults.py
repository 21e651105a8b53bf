"""Fault injection: kill training at random moments, re-run, and compare with an uninterrupted run.

    python -m benchmarks.bench_faults [--kills 5] [--epochs 6] [--seed 0]
        [--json results/benchmarks/bench_faults.json]

What a class of students does to ``engine.fit_or_load``: the kernel dies (a killed
process, a Colab disconnect) in the middle of an epoch or in the middle of writing a checkpoint,
and the cell is run again; two notebooks train the same checkpoint at once. Each training runs in
its own process (a tiny CNN with batch norm on synthetic 24x24 images, one torch thread, so that
two processes compute bit for bit the same), and is stopped with SIGKILL: no ``finally`` and no
clean-up runs, the harshest way to stop.

- **kill in training**: SIGKILL at a random moment of a randomly chosen epoch;
- **kill in a save**: saves are slowed down (the file is written in 4 chunks, 0.1 s apart) and the
  process is killed at a random moment of a randomly chosen save: often with a half-written
  temporary file on disk;
- **two trainers at once**: two processes start the same run together; the second must be told
  the checkpoint is busy, and the first must finish normally.

After each kill the checkpoint must load, and hold at least every epoch the process reported as
saved (else it counts as lost or unreadable). Then the same run is started again, as a student
re-runs the cell, until it finishes; its final weights and history (without timings) must equal
those of an uninterrupted run. Nothing is timed: the figures are counts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import checkpoint, engine, runtime

from benchmarks.report import write_json

NAME = "faults"
BUSY_EXIT = 3  # the worker's exit code when another process holds the checkpoint
SAVE_CHUNKS, CHUNK_PAUSE = 4, 0.1  # a slowed-down save takes about 0.4 s


# ------------------------------------------------------------------ the worker: one training process
def tiny_run(epochs: int):
    """Model, loaders, optimizer and per-step scheduler of one run, all from seed 0 (like a lesson cell)."""
    torch.manual_seed(0)
    images = torch.randn(1280, 3, 24, 24)
    labels = (images[:, 0].mean((1, 2)) > 0).long() + 2 * (images[:, 1].mean((1, 2)) > 0).long()  # 4 classes
    train = DataLoader(TensorDataset(images[:1024], labels[:1024]), batch_size=32, shuffle=True, drop_last=True,
                       generator=torch.Generator().manual_seed(0))  # 32 steps per epoch
    val = DataLoader(TensorDataset(images[1024:], labels[1024:]), batch_size=128)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=epochs * len(train))
    return model, train, val, optimizer, scheduler


def slow_saves() -> None:
    """Make each checkpoint write take ~0.4 s (4 chunks) and announce it, so a kill can land inside."""
    real_save, real_checkpoint_save = torch.save, checkpoint.save
    count = [0]

    def chunked_save(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        step = -(-len(data) // SAVE_CHUNKS)
        for start in range(0, len(data), step):
            f.write(data[start:start + step])
            f.flush()
            time.sleep(CHUNK_PAUSE)

    def announced_save(path, **state):
        count[0] += 1
        print(f"SAVE {count[0]} START", flush=True)
        return real_checkpoint_save(path, **state)

    torch.save, checkpoint.save = chunked_save, announced_save


def worker(folder: Path, epochs: int, slow: bool) -> int:
    """Train (or resume, or load) the run in ``folder``; print what was saved as it goes."""
    torch.set_num_threads(1)
    if slow:
        slow_saves()
    real_save = checkpoint.save

    def reported_save(path, **state):
        result = real_save(path, **state)
        print(f"SAVED epoch {state['epoch']}", flush=True)
        return result

    checkpoint.save = reported_save
    model, train, val, optimizer, scheduler = tiny_run(epochs)
    print("TRAINING", flush=True)
    try:
        engine.fit_or_load(model, train, val, name=NAME, profile=runtime.default_profile("ci"), epochs=epochs,
                           optimizer=optimizer, criterion=nn.CrossEntropyLoss(), num_classes=4, device="cpu",
                           scheduler=scheduler, checkpoint_dir=folder)
    except checkpoint.CheckpointBusyError as error:
        print(f"BUSY {error}", flush=True)
        return BUSY_EXIT
    print("DONE", flush=True)
    return 0


# ------------------------------------------------------------------ the parent: kill, re-run, compare
def start(folder: Path, epochs: int, slow: bool = False) -> subprocess.Popen:
    command = [sys.executable, "-m", "benchmarks.bench_faults", "--worker", str(folder), "--epochs", str(epochs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command + (["--slow-save"] if slow else []), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=Path(__file__).resolve().parents[1])


def note_saved(line: str, saved: list[int]) -> None:
    if line.startswith("SAVED epoch"):
        saved.append(int(line.split()[-1]))


def wait_for(process: subprocess.Popen, prefix: str, saved: list[int]) -> bool:
    """Read the worker's lines until one starts with ``prefix`` (True) or it exits (False)."""
    for line in process.stdout:
        note_saved(line, saved)
        if line.startswith(prefix):
            return True
    return False


def finish(process: subprocess.Popen, saved: list[int]) -> tuple[int, str]:
    """Wait for the worker to end; the epochs it reported saved go to ``saved``."""
    out = process.stdout.read()
    for line in out.splitlines():
        note_saved(line, saved)
    return process.wait(), out


def kill(process: subprocess.Popen, saved: list[int]) -> None:
    """SIGKILL the worker; what it printed before dying (already in the pipe) still counts."""
    process.send_signal(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
    finish(process, saved)


def result(folder: Path) -> tuple[dict, dict]:
    state = checkpoint.load(folder / f"{NAME}.pt")
    history = {key: values for key, values in state["history"].items() if key != "epoch_time"}
    return state["model"], history


def same(a: tuple[dict, dict], b: tuple[dict, dict]) -> bool:
    return a[1] == b[1] and a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])


def uninterrupted(folder: Path, epochs: int) -> float:
    """The reference run, in this process with one torch thread like the workers; returns its seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start_time = time.perf_counter()
        model, train, val, optimizer, scheduler = tiny_run(epochs)
        with contextlib.redirect_stdout(io.StringIO()):  # its epoch lines
            engine.fit_or_load(model, train, val, name=NAME, profile=runtime.default_profile("ci"), epochs=epochs,
                               optimizer=optimizer, criterion=nn.CrossEntropyLoss(), num_classes=4,
                               device="cpu", scheduler=scheduler, checkpoint_dir=folder)
        return time.perf_counter() - start_time
    finally:
        torch.set_num_threads(threads)


def rerun_to_the_end(folder: Path, epochs: int, counts: dict) -> None:
    """What the student does next: run the cell again (and again, if it fails) until it finishes."""
    for _ in range(3):
        code, out = finish(start(folder, epochs), [])
        if code == 0:
            return
        counts["re-runs that failed"] += 1
        counts["busy after a kill"] += code == BUSY_EXIT
        print(f"    re-run failed (exit {code}): {out.strip().splitlines()[-1] if out.strip() else ''}")


def check_after_kill(folder: Path, saved: list[int], counts: dict) -> None:
    """The checkpoint right after a kill: readable, and no epoch reported saved is missing."""
    path = folder / f"{NAME}.pt"
    counts["half-written temporary files left by a kill"] += any(folder.glob(f"{NAME}.pt.*.tmp"))
    if not path.exists():
        counts["checkpoints lost"] += bool(saved)
        return
    try:
        epoch = checkpoint.load(path)["epoch"]
    except Exception:  # noqa: BLE001 - any failure to read counts
        counts["checkpoints unreadable"] += 1
        return
    counts["checkpoints lost"] += bool(saved) and epoch < max(saved)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="kills of each kind (in training, in a save)")
    parser.add_argument("--concurrent", type=int, default=2, help="trials with two trainers at once")
    parser.add_argument("--kinds", default="training,save", help="where to kill: training, save, or both")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("results/benchmarks/bench_faults.json"))
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--slow-save", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        sys.exit(worker(args.worker, args.epochs, args.slow_save))

    rng = random.Random(args.seed)
    began = time.perf_counter()
    counts = {key: 0 for key in (
        "kills", "runs finished before their kill", "re-runs that failed", "busy after a kill",
        "checkpoints lost", "checkpoints unreadable", "half-written temporary files left by a kill",
        "temporary or lock files left at the end", "results equal to the uninterrupted run",
        "second trainer told 'busy'", "concurrent runs equal to the uninterrupted run")}
    trials = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train_seconds = uninterrupted(root / "reference", args.epochs)
        expected = result(root / "reference")
        print(f"uninterrupted run: {args.epochs} epochs, {train_seconds:.2f} s of training")

        for kind in args.kinds.split(","):
            for i in range(args.kills):
                folder, saved = root / f"{kind}-{i}", []
                process = start(folder, args.epochs, slow=kind == "save")
                assert wait_for(process, "TRAINING", saved)
                if kind == "training":  # a random epoch, a random moment of it
                    which, delay = rng.randint(1, args.epochs), rng.uniform(0, 0.9 * train_seconds / args.epochs)
                    moment = f"epoch {which}, after {delay:.2f} s"
                    if which == 1 or wait_for(process, f"SAVED epoch {which - 1}", saved):
                        time.sleep(delay)
                else:
                    which, delay = rng.randint(1, args.epochs), rng.uniform(0, SAVE_CHUNKS * CHUNK_PAUSE)
                    moment = f"save {which}, after {delay:.2f} s"
                    if wait_for(process, f"SAVE {which} START", saved):
                        time.sleep(delay)
                if process.poll() is None:
                    kill(process, saved)
                    counts["kills"] += 1
                else:
                    counts["runs finished before their kill"] += 1
                    finish(process, saved)
                check_after_kill(folder, saved, counts)
                rerun_to_the_end(folder, args.epochs, counts)
                equal = same(result(folder), expected)
                counts["results equal to the uninterrupted run"] += equal
                counts["temporary or lock files left at the end"] += len(
                    [p for p in folder.iterdir() if p.name != f"{NAME}.pt"])
                trials.append({"kind": kind, "moment": moment, "saved_before_kill": max(saved, default=0),
                               "equal": equal})
                print(f"  kill in {kind:8} at {moment:28} epochs saved before: {max(saved, default=0)}  "
                      f"re-run result equal: {equal}")

        for i in range(args.concurrent):
            folder = root / f"concurrent-{i}"
            first, second = start(folder, args.epochs, slow=True), start(folder, args.epochs, slow=True)
            codes = sorted([finish(first, [])[0], finish(second, [])[0]])
            counts["second trainer told 'busy'"] += codes == [0, BUSY_EXIT]
            equal = same(result(folder), expected)
            counts["concurrent runs equal to the uninterrupted run"] += equal
            trials.append({"kind": "concurrent", "exit_codes": codes, "equal": equal})
            print(f"  two trainers at once: exit codes {codes}, result equal: {equal}")

    kinds = args.kinds.split(",")
    print(f"\n{len(kinds) * args.kills} runs, {counts['kills']} killed with SIGKILL ({args.kills} aimed at each of: "
          f"{', '.join(kinds)}), torch threads 1, load average {os.getloadavg()[0]:.1f}, {time.perf_counter() - began:.0f} s")
    for key, value in counts.items():
        print(f"  {key:48} {value}")
    report = {"benchmark": "bench_faults", "torch": torch.__version__, "epochs": args.epochs,
              "kills_per_kind": args.kills, "counts": counts, "trials": trials,
              "seconds": time.perf_counter() - began}
    write_json(args.json, report)
    assert counts["checkpoints lost"] == counts["checkpoints unreadable"] == 0, counts
    return report


if __name__ == "__main__":
    main()
