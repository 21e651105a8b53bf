"""Grade submitted notebooks against the reference: ``python -m course_utils.grade SUB.ipynb``.

For each submission (folders are searched recursively), the reference solution notebook with
the same ``NN_`` lesson number is found in ``--reference`` (default: ``notebooks`` in the current
folder, else the course checkout's ``notebooks``, wherever the command is run); ``--lesson NN``
picks it for every file instead. A notebook without a lesson number, and any other file (a
``.py`` export, ...), is listed as not graded; the others are graded in three steps
(``course_utils/grading/``):

1. ``build``: the graded copy, with the reference's check cells found by cell id (edited ones
   replaced, deleted ones re-inserted; by ``# Question N`` for files without ids);
2. ``sandbox``: the copy runs in a temporary folder of its own, on copies of the references and
   of ``course_utils`` taken when grading started, with ``COURSE_PROFILE=ci``, a time limit per
   cell and per submission, a memory limit, no network and a read-only checkout (Linux);
3. ``report``: each question scores its points when all its check cells print the stored answer.

``--jobs N`` grades N submissions at once (default: the number of cores), with the same results
as one at a time. ``--shard K/N`` grades every N-th file from the K-th (so N machines or CI jobs
share a class) and ``--merge`` joins their ``--json`` files into the report of a single run.
``--json``/``--csv`` are written by the grader only, each in one rename, after every submission
(an interrupted run keeps what was graded). Student code runs in one kernel with the checks, so
this grading is formative: see the README for what is and is not protected.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import os
import re
import sys
import threading
from pathlib import Path

import nbformat

from course_utils.grading import sandbox
from course_utils.grading.build import (GradeError, Question, build_graded_notebook, question_of,  # noqa: F401
                                        read_questions)
from course_utils.grading.report import (AFTER_CRASH, Grade, QuestionResult, cell_reason,  # noqa: F401
                                         format_table, score, ungraded, write_results)

# The same as course_utils.runtime's (a test checks it); importing runtime would load torch here.
PROFILE_ENV, PROFILE_NAMES = "COURSE_PROFILE", ("full", "quick", "ci")

# "01_vgg16.ipynb", "bob_01_vgg16.ipynb", "bob-01_x": a lesson number; "vgg16_homework.ipynb": none.
_LESSON_NUMBER = re.compile(r"(?:^|[^0-9A-Za-z])(\d\d)_")
_CHANGES = threading.Lock()


def find_reference(submission: Path, reference_dir: Path, lesson: str | None = None,
                   course: sandbox.Course | None = None) -> Path:
    """The reference notebook of lesson ``lesson`` if given, else the one with the submission's
    name, else the one with its ``NN_`` lesson number (among ``course``'s if given, else on disk)."""
    submission, reference_dir = Path(submission), Path(reference_dir)
    names = course.reference_names() if course else sorted(p.name for p in reference_dir.glob("*.ipynb"))
    if lesson is None and submission.name in names:
        return reference_dir / submission.name
    match = _LESSON_NUMBER.search(submission.name)
    number = lesson or (match.group(1) if match else None)
    if number is None:
        raise GradeError(f"{submission.name} has no lesson number: rename it like its lesson "
                         "(NN_topic.ipynb, e.g. 00_setup.ipynb) or pass --lesson NN.")
    candidates = [reference_dir / name for name in names if name.startswith(f"{number}_")]
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise GradeError(f"No single reference notebook for lesson {number} ({submission}) in {reference_dir} "
                         f"(found: {found}); name the submission like its lesson (NN_topic.ipynb) "
                         "or pass --lesson NN or --reference DIR.")
    return candidates[0]


def read_reference(path: Path, course: sandbox.Course | None = None) -> dict[str, Question]:
    """The graded questions of a reference notebook (from ``course``'s snapshot if given)."""
    try:
        reference = course.reference(Path(path).name) if course else nbformat.read(path, as_version=4)
    except Exception as error:
        raise GradeError(f"Reference {path} is not a readable notebook: {error}") from None
    questions = read_questions(reference, str(path))
    if not questions:
        raise GradeError(f"{path} has no graded check cells ('# NBVAL_CHECK_OUTPUT' and '# Question N').")
    return questions


def grade(submission: Path, reference_dir: Path = Path("notebooks"), *, timeout: int = 120,
          profile: str | None = "ci", lesson: str | None = None, course: sandbox.Course | None = None,
          limits: sandbox.Limits | None = None) -> Grade:
    """Grade one submitted notebook against its reference (see the module docstring).

    ``course``: the snapshot of the references and package to use (default: taken now);
    ``limits``: what the submission may use (default: ``timeout`` seconds per cell, ``profile``).
    """
    submission = Path(submission)
    if not submission.is_file():
        raise GradeError(f"Submission {submission} not found.")
    course = course or sandbox.Course.snapshot(Path(reference_dir))
    reference_path = find_reference(submission, Path(reference_dir), lesson, course)
    questions = read_reference(reference_path, course)
    limits = limits or sandbox.Limits(cell_seconds=timeout, profile=profile)
    try:
        submitted = nbformat.read(submission, as_version=4)
    except Exception as error:  # a broken file is a zero for this student, not the end of the batch
        return ungraded(submission, str(reference_path), questions,
                        f"not a readable notebook ({type(error).__name__})")
    try:
        graded = build_graded_notebook(submitted, questions, course.reference(reference_path.name))
        records, stopped = sandbox.run(graded.notebook, course, limits)
        result = score(graded, questions, records, stopped, limits.cell_seconds, str(submission),
                       str(reference_path))
    except Exception as error:  # an odd file is a zero with the reason, not the end of the batch
        result = ungraded(submission, str(reference_path), questions,
                          f"not graded: {type(error).__name__}: {error}"[:200])
    with _CHANGES:
        changed = course.changed()
    if changed:
        result.warnings.append("reference notebooks changed while it ran (later submissions still use the copy "
                               "taken at the start): " + ", ".join(changed))
    return result


def _submissions(paths: list[Path], skip: set[Path]) -> list[Path]:
    """The files to list: files as given, and everything under a folder except hidden files and
    folders and the grader's own outputs (files other than notebooks are listed as not graded)."""
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            found = [path]
        else:
            raise GradeError(f"Submission {path} not found.")
        files.extend(file for file in found if file.resolve() not in skip)
    if not any(file.suffix == ".ipynb" for file in files):
        raise GradeError("No notebooks to grade in " + ", ".join(map(str, paths)))
    return files


def _lesson(text: str) -> str:
    if not re.fullmatch(r"\d\d", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a two-digit lesson number like 00 or 04")
    return text


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N with 1 <= K <= N, like 1/4")
    return int(match.group(1)), int(match.group(2))


def cores() -> int:
    """CPUs this process may use: the default number of submissions graded at once."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _default_reference() -> Path:
    """``notebooks`` here if it exists, else the checkout's that this package belongs to."""
    here, checkout = Path("notebooks"), Path(__file__).resolve().parents[1] / "notebooks"
    return here if here.is_dir() or not checkout.is_dir() else checkout


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_utils.grade", description=__doc__.split("\n")[0])
    parser.add_argument("submissions", nargs="+", type=Path, help="submitted notebooks, or folders of them")
    parser.add_argument("--reference", type=Path, default=_default_reference(),
                        help="solution notebooks folder (default: ./notebooks, else the course checkout's)")
    parser.add_argument("--lesson", type=_lesson, help="grade every file against lesson NN (default: from the name)")
    parser.add_argument("--timeout", type=_positive, default=120, help="seconds allowed per cell (default 120)")
    parser.add_argument("--max-seconds", type=_positive, default=900,
                        help="seconds allowed per submission, all cells together (default 900)")
    parser.add_argument("--memory-gb", type=float, default=6.0,
                        help="address space allowed to a submission's kernel, in GiB (default 6)")
    parser.add_argument("--jobs", type=_positive, default=cores(),
                        help=f"submissions graded at once (default: the number of cores, {cores()} here)")
    parser.add_argument("--shard", type=_shard, help="grade only the K-th of N shares of the files (K/N, e.g. 1/4)")
    parser.add_argument("--merge", action="store_true",
                        help="the arguments are --json files of shards: write their joined --json/--csv")
    parser.add_argument("--profile", choices=PROFILE_NAMES, default="ci", help="COURSE_PROFILE of the run")
    parser.add_argument("--json", type=Path, help="write every result, per question and per cell, here")
    parser.add_argument("--csv", type=Path, help="write one row per submission (score, total, each question)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if sys.platform == "win32":  # the sandbox needs process groups, resource limits and fcntl
        print("Error: the grader runs on Linux or macOS; on Windows, run it in WSL.", file=sys.stderr)
        return 2
    if args.merge:
        return _merge(args.submissions, args.json, args.csv)
    grades: dict[int, Grade] = {}
    todo: list[Path] = []
    try:  # every usage error before any grading starts
        outputs = [p for p in (args.json, args.csv) if p]
        todo = _submissions(args.submissions, {p.resolve() for p in outputs})
        unmatched = {}  # file -> why it is not graded: listed with 0, the others still graded
        for path in todo:
            try:
                if path.suffix != ".ipynb":
                    raise GradeError(f"{path.name} is not a notebook: submit the .ipynb file")
                find_reference(path, args.reference, args.lesson)
            except GradeError as error:
                unmatched[path] = f"not graded: {error}"
        if len(unmatched) == len(todo):
            raise GradeError(next(p for p in unmatched.values() if p).removeprefix("not graded: "))
        if args.shard:  # every N-th file of the whole class, in its order: the same split on every machine
            todo = todo[args.shard[0] - 1::args.shard[1]]
        for module in ("nbclient", "ipykernel"):  # the worker and the kernel need them
            if importlib.util.find_spec(module) is None:
                raise GradeError(f"{module} is not installed in {sys.executable}: pip install -e . installs it.")
        course = sandbox.Course.snapshot(args.reference)
        for reference in sorted({find_reference(p, args.reference, args.lesson) for p in todo if p not in unmatched}):
            read_reference(reference, course)
        write_results([], args.json, args.csv)  # can we write there? Better to know before grading
        limits = sandbox.Limits(cell_seconds=args.timeout, submission_seconds=args.max_seconds,
                                memory_bytes=int(args.memory_gb * (1 << 30)), profile=args.profile)
        _grade_all(todo, unmatched, grades, args, course, limits)
    except GradeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        sandbox.kill_all()
        done = [grades[i] for i in sorted(grades)]
        write_results(done, args.json, args.csv)
        saved = f"; saved in {', '.join(str(p) for p in (args.json, args.csv) if p)}" if args.json or args.csv else ""
        print(f"\ninterrupted: {len(done)} of {len(todo)} submissions graded{saved}", file=sys.stderr)
        return 130
    if len(grades) > 1:
        print("Summary:\n" + "\n".join(f"  {g.submission}: {g.score:g} / {g.total:g}"
                                       + ("  (not graded)" if g.error else "") for g in grades.values()))
    return 0


def _merge(paths: list[Path], json_path: Path | None, csv_path: Path | None) -> int:
    """Join the ``--json`` files of shards into one ``--json``/``--csv``, as a single run orders them."""
    try:
        if not json_path and not csv_path:
            raise GradeError("--merge needs --json and/or --csv to write the joined results to.")
        grades = []
        for path in paths:
            try:
                grades += [Grade.from_dict(data) for data in json.loads(Path(path).read_text(encoding="utf-8"))]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise GradeError(f"{path} is not a --json file of the grader: {error}") from None
        seen = [g.submission for g in grades]
        twice = sorted({s for s in seen if seen.count(s) > 1})
        if twice:
            raise GradeError(f"{len(twice)} submissions are in more than one shard (e.g. {twice[0]}): "
                             "merge the shards of one class, each once.")
        grades.sort(key=lambda g: Path(g.submission))  # the order a single run over the folder uses
        write_results(grades, json_path, csv_path)
    except GradeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"merged {len(grades)} submissions from {len(paths)} shards")
    return 0


def _grade_all(todo: list[Path], unmatched: dict[Path, str], grades: dict[int, Grade], args,
               course: sandbox.Course, limits: sandbox.Limits) -> None:
    """Grade ``todo`` with ``args.jobs`` at once; print each table in order, write the files as we go."""
    from tqdm.auto import tqdm

    def one(path: Path) -> Grade:
        if path in unmatched:
            return ungraded(path, "", {}, unmatched[path])
        return grade(path, args.reference, lesson=args.lesson, course=course, limits=limits)

    printed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool, \
            tqdm(total=len(todo), desc="grading", unit="notebook", file=sys.stderr, leave=False,
                 disable=None) as bar:  # a bar with the time left, in a terminal only
        futures = {pool.submit(one, path): i for i, path in enumerate(todo)}
        try:
            for future in concurrent.futures.as_completed(futures):
                grades[futures[future]] = future.result()
                bar.update()
                while printed in grades:  # tables in the order of the files, whatever finished first
                    bar.write(format_table(grades[printed]) + "\n", file=sys.stdout)
                    printed += 1
                write_results([grades[i] for i in sorted(grades)], args.json, args.csv)
        except BaseException:  # Ctrl-C: stop the running submissions now, keep what was graded
            pool.shutdown(wait=False, cancel_futures=True)
            sandbox.kill_all()
            raise
    sys.stdout.flush()
    grades_in_order = {i: grades[i] for i in sorted(grades)}
    grades.clear()
    grades.update(grades_in_order)


if __name__ == "__main__":
    sys.exit(main())
