"""Wall time of the lesson notebooks under nbval in the ci profile: the whole suite, and per notebook.

    python -m benchmarks.bench_notebooks [--paths notebooks] [--separate] [--threads N]
        [--json results/benchmarks/bench_notebooks.json]

Runs exactly the suite's command, in a fresh process, from the repository root:

    COURSE_PROFILE=ci python -m pytest notebooks --nbval-lax --nbval-current-env --ignore=notebooks/student

and reads the per-cell times (setup + call + teardown, so kernel start-up counts) from pytest's
JUnit XML report; summed per notebook they give the table. ``--separate`` also runs each notebook
in its own pytest process, the way one lesson is checked alone (one more interpreter and kernel
start per notebook). Goal (the suite stays within a few minutes): <= 5 minutes for the solution
notebooks on a 2-core machine. The load average is printed: timings on a shared machine swing 2-3x,
and far more when torch's threads compete with other jobs for the cores; ``--threads 1`` sets
``OMP_NUM_THREADS=1`` for the kernels to measure that.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from benchmarks.report import write_json

ROOT = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 300


def nbval_command(paths: list[str], junit: Path | None = None) -> list[str]:
    """The suite's pytest command (plus a JUnit report and no cache writes)."""
    command = [sys.executable, "-m", "pytest", *paths, "--nbval-lax", "--nbval-current-env",
               "--ignore=notebooks/student", "-q", "-p", "no:cacheprovider"]
    return command + ([f"--junitxml={junit}"] if junit else [])


def run_nbval(paths: list[str], junit: Path | None, timeout: float,
              threads: int | None = None) -> tuple[float, int, str]:
    """Run the command in the ci profile; returns (wall seconds, exit code, last lines of output)."""
    env = {**os.environ, "COURSE_PROFILE": "ci", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads in every kernel
    start = time.perf_counter()
    done = subprocess.run(nbval_command(paths, junit), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.perf_counter() - start
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
    return seconds, done.returncode, tail


def notebook_of(testcase: ET.Element) -> str:
    """'notebooks.01_vgg16_cifar10.ipynb' (JUnit's dotted class name) -> '01_vgg16_cifar10.ipynb'."""
    stem, _, extension = testcase.get("classname", "").rpartition(".")
    return f"{stem.rpartition('.')[2]}.{extension}"


def per_notebook(junit: Path) -> dict[str, dict]:
    """Cells, seconds (summed over cells) and failed cells of each notebook in a JUnit report."""
    table: dict[str, dict] = defaultdict(lambda: {"cells": 0, "seconds": 0.0, "failed": 0})
    for case in ET.parse(junit).getroot().iter("testcase"):
        row = table[notebook_of(case)]
        row["cells"] += 1
        row["seconds"] += float(case.get("time", 0))
        row["failed"] += int(case.find("failure") is not None or case.find("error") is not None)
    return dict(sorted(table.items()))


def load_line() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_table(notebooks: dict[str, dict], suite_seconds: float, separate: bool) -> float:
    """One row per notebook, then the time spent outside cells and the suite; returns the former."""
    print(f"{'notebook':36} {'cells':>5} {'cells s':>8}" + (f" {'alone s':>8}" if separate else "") + "  status")
    for name, row in notebooks.items():
        alone = f" {row.get('separate_seconds', float('nan')):8.1f}" if separate else ""
        status = "passed" if row["failed"] == 0 else f"{row['failed']} cell(s) FAILED"
        print(f"{name:36} {row['cells']:5d} {row['seconds']:8.1f}{alone}  {status}")
    outside_cells = suite_seconds - sum(r["seconds"] for r in notebooks.values())
    met = suite_seconds <= GOAL_SECONDS
    print(f"{'(pytest start-up, collection)':36} {'':5} {outside_cells:8.1f}")
    print(f"{'whole suite (one process)':36} {sum(r['cells'] for r in notebooks.values()):5d} "
          f"{suite_seconds:8.1f}  goal <= {GOAL_SECONDS} s{'' if met else ' (goal not met)'}")
    return outside_cells


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="+", default=["notebooks"], help="notebooks or folders to run")
    parser.add_argument("--separate", action="store_true", help="also run each notebook in its own process")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a run is stopped")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the kernels (default: unset)")
    parser.add_argument("--json", type=Path, default=Path("results/benchmarks/bench_notebooks.json"))
    args = parser.parse_args(argv)

    before = load_line()
    threads = args.threads or os.environ.get("OMP_NUM_THREADS") or "torch default"
    print(f"cores {os.cpu_count()}, torch threads in the kernels: {threads}, load average (1/5/15 min) {before}")
    print("$ COURSE_PROFILE=ci " + " ".join(nbval_command(args.paths)[2:]))
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "nbval.xml"
        suite_seconds, returncode, tail = run_nbval(args.paths, junit, args.timeout, args.threads)
        notebooks = per_notebook(junit) if junit.is_file() else {}
    if returncode != 0:
        print(f"the suite FAILED (exit code {returncode}):\n{tail}")

    if args.separate:
        for name, row in notebooks.items():
            path = next((p for p in _notebook_files(args.paths) if p.name == name), None)
            if path is None:
                continue
            row["separate_seconds"], row["separate_returncode"], _ = run_nbval([str(path)], None, args.timeout,
                                                                               args.threads)

    met = suite_seconds <= GOAL_SECONDS
    outside_cells = print_table(notebooks, suite_seconds, args.separate)
    after = load_line()
    print(f"load average after: {after}")

    report = {"benchmark": "bench_notebooks", "command": " ".join(nbval_command(args.paths)[2:]),
              "profile": "ci", "cores": os.cpu_count(), "threads": str(threads), "load_before": before,
              "load_after": after,
              "suite_seconds": suite_seconds, "outside_cells_seconds": outside_cells,
              "goal_seconds": GOAL_SECONDS, "met": met,
              "passed": returncode == 0, "returncode": returncode, "notebooks": notebooks}
    write_json(args.json, report)
    return report


def _notebook_files(paths: list[str]) -> list[Path]:
    """The .ipynb files the suite collects from ``paths`` (student copies excluded)."""
    files = []
    for given in paths:
        path = Path(given) if Path(given).is_absolute() else ROOT / given
        found = [path] if path.is_file() else sorted(path.rglob("*.ipynb"))
        files += [p for p in found if "student" not in p.relative_to(path.parent).parts
                  and ".ipynb_checkpoints" not in p.parts]
    return files


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
