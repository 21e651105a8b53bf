"""What a laptop student sees: the lessons' own notebooks, unchanged, in ``quick`` on real data.

    python -m benchmarks.bench_quick_real (--cifar DIR | --sample-tool PATH) [--voc DIR]
        [--lessons 01,02,06] [--json results/benchmarks/bench_quick_real.json]

Executes each lesson notebook top to bottom in a Jupyter kernel (nbclient, as "Run All" does)
with ``COURSE_PROFILE=quick``, on a real CIFAR-format folder, in fresh checkpoint and results
folders (so every lesson trains; nothing is loaded from an earlier run). Per lesson it prints the
training wall time (the cells that train: ``fit_or_load``, ``train_more``, lesson 06's ``train``),
the whole notebook's time, the result the lesson prints (test accuracy, validation accuracy or
mIoU) and, beside it, the promise in the lesson's header.

Data: ``--cifar DIR`` holds ``cifar-10-batches-py/`` (the official download, or a copy with its
own ``checksums.md5``). Or ``--sample-tool PATH`` (default: the environment variable
``CIFAR_SAMPLE_TOOL``): an external script, not part of this repository, that is called as
``python PATH OUT`` and writes a CIFAR-format sample with its ``checksums.md5`` into ``OUT`` (the
figures in benchmarks/README.md used a sample of 8,000 training + 2,000 held-back test images of
the real CIFAR-10); it is written into a temporary folder. Lessons 03-05 run when ``--voc DIR``
holds ``VOCdevkit/VOC2012`` (real VOC).
The load average is printed with the table: on 2 busy cores times swing 2-3x.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from benchmarks.report import choose, write_json

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TOOL_ENV = "CIFAR_SAMPLE_TOOL"  # optional: an external script that writes a real CIFAR sample
LESSONS = {"01": "01_vgg16_cifar10.ipynb", "02": "02_resnet50_cifar10.ipynb",
           "03": "03_voc_segmentation_data.ipynb", "04": "04_unet_voc.ipynb",
           "05": "05_resnet_unet_voc.ipynb", "06": "06_custom_dataset_classifier.ipynb"}
VOC_LESSONS = ("03", "04", "05")
TRAINING_CALLS = ("fit_or_load(", "train_more(", "= train(")
# The lines a lesson prints with its result, e.g. "test accuracy: 52.3% on 1,000 images".
RESULT_PATTERNS = (r"epoch (\d+)/\1 \|[^\n]*", r"test accuracy:? [\d.]+%", r"validation accuracy [\d.]+%", r"with augmentation: .*?validation [\d.]+%",
                   r"without augmentation: .*?validation [\d.]+%", r"mIoU[^\n]*?[\d.]+ ?%", r"miou [\d.]+")


def promise(notebook: dict) -> str:
    """The ``quick`` row of the lesson's header table: its expected time and result."""
    for line in "".join(notebook.cells[0].source).splitlines():
        if line.startswith("| `quick`"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            return " | ".join(cells[2:])  # expected time | expected result
    return "(no quick row in the header)"


def run_lesson(path: Path, env: dict[str, str], timeout: float) -> dict:
    """Execute one notebook in quick; returns times, printed results and errors."""
    notebook = nbformat.read(path, as_version=4)
    old_env = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    start = time.perf_counter()
    error = ""
    try:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=True,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    except Exception as failure:  # the notebook stopped: report it, keep the other lessons
        last_line = (str(failure).strip().splitlines() or [""])[-1]
        error = f"{type(failure).__name__}: {last_line[:300]}"
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    total = time.perf_counter() - start
    training, results, worker_messages = 0.0, [], 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        worker_messages += text.count("can only test a child process")
        timing = cell.metadata.get("execution", {})
        if any(call in cell.source for call in TRAINING_CALLS) and "iopub.status.idle" in timing:
            training += seconds_between(timing["iopub.execute_input"], timing["iopub.status.idle"])
        for pattern in RESULT_PATTERNS:
            results += [match.group(0) for match in re.finditer(pattern, text)]
    return {"lesson": path.name, "training_s": round(training, 1), "notebook_s": round(total, 1),
            "results": results, "promise": promise(notebook), "error": error,
            "worker_messages": worker_messages}


def saved_runs(folder: Path, number: str) -> dict[str, dict]:
    """Per checkpoint the lesson wrote: epochs, first and last training loss, last validation score."""
    from course_utils import checkpoint

    runs = {}
    for path in sorted(folder.glob(f"{number}_*.pt")):
        history = checkpoint.load(path)["history"]
        runs[path.stem] = {"epochs": len(history["epoch"]),
                           "first_train_loss": round(history["train_loss"][0], 3),
                           "last_train_loss": round(history["train_loss"][-1], 3),
                           "val_acc": round(history["val_acc"][-1], 4),
                           **({"val_miou": round(history["val_miou"][-1], 4)} if "val_miou" in history else {}),
                           "train_s": round(sum(history["epoch_time"]), 1)}
    return runs


def seconds_between(start: str, end: str) -> float:
    from datetime import datetime

    parse = lambda stamp: datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar", type=Path, help="folder holding cifar-10-batches-py/")
    parser.add_argument("--sample-tool", type=Path, default=os.environ.get(SAMPLE_TOOL_ENV) or None,
                        help=f"instead of --cifar: an external script that writes a CIFAR-format sample "
                             f"(python PATH OUT); default ${SAMPLE_TOOL_ENV}")
    parser.add_argument("--voc", type=Path, help="folder holding VOCdevkit/VOC2012 (real VOC): also runs 03-05")
    parser.add_argument("--lessons", default="01,02,06", help="comma-separated lesson numbers")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per cell")
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "benchmarks" / "bench_quick_real.json")
    args = parser.parse_args()
    lessons = choose(parser, args.lessons, LESSONS)
    if args.cifar is None and (args.sample_tool is None or not Path(args.sample_tool).is_file()):
        parser.error(f"give --cifar DIR (holding cifar-10-batches-py/), or --sample-tool PATH (or "
                     f"${SAMPLE_TOOL_ENV}) naming a script that writes a CIFAR-format sample; got {args.sample_tool}")
    work = Path(tempfile.mkdtemp(prefix="bench_quick_real-"))
    data = work / "data"
    data.mkdir()
    if args.cifar is None:
        subprocess.run([sys.executable, str(args.sample_tool), str(data)], check=True)
        source = f"the CIFAR-10 sample written by {args.sample_tool}"
    else:
        (data / "cifar-10-batches-py").symlink_to((args.cifar / "cifar-10-batches-py").resolve())
        source = f"CIFAR-10 from {args.cifar}"
    if args.voc is not None:
        (data / "VOCdevkit").symlink_to((args.voc / "VOCdevkit").resolve())
    skipped = [n for n in lessons if n in VOC_LESSONS and args.voc is None]
    env = {"COURSE_PROFILE": "quick", "COURSE_DATA": str(data), "COURSE_CHECKPOINTS": str(work / "checkpoints"),
           "COURSE_RESULTS": str(work / "results"), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    print(f"work folder (data, checkpoints, results; delete it when done): {work}")
    print(f"data: {source}; profile quick; cores: {os.cpu_count()}; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows = []
    for number in lessons:
        if number in skipped:
            print(f"{LESSONS[number]}: skipped (no real VOC: pass --voc DIR)")
            continue
        row = run_lesson(ROOT / "notebooks" / LESSONS[number], env, args.timeout)
        row["load_after"] = round(os.getloadavg()[0], 2)
        row["runs"] = saved_runs(work / "checkpoints" / "quick", number)
        rows.append(row)
        print(f"\n{row['lesson']}: training {row['training_s'] / 60:.1f} min, notebook {row['notebook_s'] / 60:.1f} min, "
              f"load {row['load_after']}{'  ERROR ' + row['error'] if row['error'] else ''}\n"
              f"  measured: {'; '.join(row['results']) or '(no result line)'}\n"
              f"  header:   {row['promise']}\n"
              f"  DataLoader worker messages: {row['worker_messages']}", flush=True)
        for name, run in row["runs"].items():
            print(f"  {name}: {run}", flush=True)
    print("\n| lesson | training (min) | notebook (min) | measured | header (quick) | load |")
    print("|---|---:|---:|---|---|---:|")
    for row in rows:
        measured = "; ".join(row["results"]).replace("|", "/")  # epoch lines hold "|"
        print(f"| {row['lesson']} | {row['training_s'] / 60:.1f} | {row['notebook_s'] / 60:.1f} | "
              f"{measured} | {row['promise']} | {row['load_after']} |")
    write_json(args.json, {"data": source, "cores": os.cpu_count(), "rows": rows, "skipped": skipped})
    if any(row["error"] for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
