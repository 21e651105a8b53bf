"""Training throughput on 1 process vs N processes (torchrun + DDP), side by side in one run.

    python -m benchmarks.bench_ddp [--model vgg16] [--profile ci|quick|full] [--epochs 1]
        [--data DIR] [--json results/benchmarks/bench_ddp.json]

Each row is one real run of ``python -m course_utils.train`` (the lessons' recipe) from scratch,
into a temporary checkpoint folder: one plain process with PyTorch's default threads (one per
core), one with a single thread, then torchrun with 2 processes (or one per GPU) of one thread
each, so the first and the last use the same cores. The figure is the run's own: training images per second over
``fit_or_load`` (per-epoch evaluation included), all processes together; the wall time adds the
start of the processes. The ratio is against the plain single process.

That N processes train like one is the test suite's job (tests/test_distributed.py: weights
within 1e-5, identical metrics on every rank); here each run must train the same number of images
and end above chance. On a 2-core CPU, expect no speed-up: the processes share the two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.report import write_json


def _run(launcher: str, processes: int, threads: int | None, args: argparse.Namespace, work: Path) -> dict:
    name = f"{launcher}_{processes}_{threads}"
    train = ["-m", "course_utils.train", "--model", args.model, "--profile", args.profile, "--name", name,
             "--checkpoint-dir", str(work / "checkpoints"), "--results", str(work / f"{name}.json")]
    if args.epochs is not None:
        train += ["--epochs", str(args.epochs)]
    if launcher == "python":
        command = [sys.executable, *train]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *train]
    env = {**os.environ, "COURSE_RESULTS": str(work / "results")}
    env.pop("OMP_NUM_THREADS", None)  # PyTorch's default: one thread per core
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)  # torchrun sets 1 itself, but only for 2 processes or more
    if args.data:
        env["COURSE_DATA"] = str(args.data)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    report = json.loads((work / f"{name}.json").read_text())
    return {"launcher": launcher, "processes": processes, "threads_per_process": str(threads or f"all {os.cpu_count()}"),
            "backend": report["backend"], "images_per_second": report["images_per_second"],
            "seconds_training": report["seconds"], "seconds_wall": wall,
            "test_accuracy": report["test_accuracy"], "epochs": report["epochs"],
            "batch_size": report["batch_size"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--profile", default="ci", choices=("ci", "quick", "full"))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--data", type=Path, default=None, help="COURSE_DATA for the runs (real CIFAR-10)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", type=Path, default=Path("results/benchmarks/bench_ddp.json"))
    args = parser.parse_args(argv)
    many = torch.cuda.device_count() if torch.cuda.is_available() else 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_ddp_") as tmp:
        # one process with all cores' threads; one with one thread; N processes of one thread each
        for launcher, processes, threads in [("python", 1, None), ("python", 1, 1), ("torchrun", many, 1)]:
            rows.append(_run(launcher, processes, threads, args, Path(tmp)))
    base = rows[0]["images_per_second"]
    for row in rows:
        if row["epochs"] != rows[0]["epochs"] or row["batch_size"] != rows[0]["batch_size"]:
            raise SystemExit(f"the runs trained different work: {rows}")
        if row["test_accuracy"] <= 0.1:
            raise SystemExit(f"a run ended at chance ({row['test_accuracy']:.1%}): {row}")
        row["ratio"] = row["images_per_second"] / base
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.model}, profile {args.profile}, {rows[0]['epochs']} epoch(s), effective batch "
          f"{rows[0]['batch_size']}; {os.cpu_count()} CPUs, load {load:.1f}, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    print(f"{'launcher':<10}{'processes':>10}{'threads':>9}{'images/s':>10}{'ratio':>7}{'train s':>9}{'wall s':>8}{'test acc':>10}")
    for row in rows:
        print(f"{row['launcher']:<10}{row['processes']:>10}{row['threads_per_process']:>9}"
              f"{row['images_per_second']:>10.0f}{row['ratio']:>7.2f}{row['seconds_training']:>9.1f}"
              f"{row['seconds_wall']:>8.1f}{row['test_accuracy']:>10.1%}")
    report = {"benchmark": "bench_ddp", "model": args.model, "profile": args.profile, "load": load,
              "cpus": os.cpu_count(), "cuda_devices": torch.cuda.device_count(), "rows": rows}
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
