"""Grading throughput: a synthetic class graded with 1 job, then with N, side by side.

    python -m benchmarks.bench_grade [--submissions 40] [--lessons 01,02,03,04,05,06] [--jobs N]
        [--json results/benchmarks/bench_grade.json]

The class is made from the course's own notebooks: for each lesson in turn, an untouched student
copy, the solution, and a partly solved copy (the student copy with the solution's cells of its
first question), until there are ``--submissions`` files. ``python -m course_utils.grade`` grades
the class twice, in a subprocess (as an instructor runs it): ``--jobs 1``, then ``--jobs N``
(default: the number of cores). The two result files must be identical; the report gives the
wall time, submissions per minute and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from benchmarks.report import write_json
from course_utils import grade

ROOT = Path(__file__).resolve().parents[1]


def partly_solved(student: nbformat.NotebookNode, solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student copy with the solution's version of the cells of its first question."""
    from course_utils.grading.build import HEADING
    nb = nbformat.from_dict(student)
    solved = {cell.get("id"): cell for cell in solution.cells}
    heading = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown" and HEADING.search(cell.source))
    for i in range(heading + 1, len(nb.cells)):
        if nb.cells[i].cell_type == "markdown" and HEADING.search(nb.cells[i].source):
            break
        if "NotImplementedError" in nb.cells[i].source and nb.cells[i].get("id") in solved:
            nb.cells[i].source = solved[nb.cells[i].id].source
    return nb


def make_class(folder: Path, count: int, lessons: list[str]) -> list[str]:
    """Write ``count`` submissions to ``folder``; returns the kind of each, in order."""
    kinds = []
    for i in range(count):
        lesson = lessons[(i // 3) % len(lessons)]
        solution_path = next((ROOT / "notebooks").glob(f"{lesson}_*.ipynb"))
        solution = nbformat.read(solution_path, as_version=4)
        student = nbformat.read(ROOT / "notebooks" / "student" / solution_path.name, as_version=4)
        kind = ("untouched", "solved", "partly solved")[i % 3]
        nb = {"untouched": student, "solved": solution}.get(kind) or partly_solved(student, solution)
        nbformat.write(nb, folder / f"student{i:03d}_{solution_path.name}")
        kinds.append(kind)
    return kinds


def grade_class(folder: Path, reference: Path, jobs: int, out: Path) -> float:
    """Seconds taken by ``python -m course_utils.grade`` on ``folder`` with ``jobs``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "course_utils.grade", str(folder), "--reference", str(reference),
                    "--jobs", str(jobs), "--json", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions", type=int, default=40)
    parser.add_argument("--lessons", default="01,02,03,04,05,06")
    parser.add_argument("--jobs", type=int, default=grade.cores())
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "benchmarks" / "bench_grade.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as tmp:
        folder, reference = Path(tmp) / "class", Path(tmp) / "notebooks"
        folder.mkdir()
        reference.mkdir()
        for path in (ROOT / "notebooks").glob("*.ipynb"):  # both runs grade against the same references
            shutil.copy(path, reference / path.name)
        kinds = make_class(folder, args.submissions, args.lessons.split(","))
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        rows = {}
        for jobs in (1, args.jobs):
            seconds = grade_class(folder, reference, jobs, Path(tmp) / f"jobs{jobs}.json")
            rows[jobs] = {"jobs": jobs, "seconds": round(seconds, 1),
                          "per_minute": round(60 * args.submissions / seconds, 2)}
        results = [(Path(tmp) / f"jobs{jobs}.json").read_text() for jobs in rows]
        scores = [r["score"] for r in json.loads(results[0])]
        runs = [{Path(r["submission"]).name: r for r in json.loads(text)} for text in results]
        differ = sorted(name for name in runs[0] if runs[0][name] != runs[-1].get(name))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        for jobs, text in zip(rows, results):  # kept, to read the differences
            args.json.with_name(f"{args.json.stem}_jobs{jobs}.json").write_text(text)
    report = {"benchmark": "bench_grade", "submissions": args.submissions, "lessons": args.lessons,
              "kinds": {k: kinds.count(k) for k in dict.fromkeys(kinds)}, "load_before": round(load, 2),
              "rows": list(rows.values()), "ratio": round(rows[1]["seconds"] / rows[args.jobs]["seconds"], 2),
              "identical": len(set(results)) == 1, "differ": differ, "total_score": sum(scores)}
    print(f"{args.submissions} submissions (lessons {args.lessons}; {report['kinds']}), load {load:.2f} before")
    print(f"{'jobs':>5} {'seconds':>9} {'per minute':>11}")
    for row in rows.values():
        print(f"{row['jobs']:>5} {row['seconds']:>9.1f} {row['per_minute']:>11.2f}")
    print(f"speed-up {report['ratio']}x; results identical: {report['identical']}"
          + (f" (differ: {', '.join(differ)})" if differ else ""))
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
