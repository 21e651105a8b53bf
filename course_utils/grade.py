"""Grade submitted notebooks against the reference: ``python -m course_utils.grade SUB.ipynb``.

For each submission (folders are searched recursively), the reference solution notebook with
the same ``NN_`` lesson number is found in ``--reference`` (default ``notebooks``); ``--lesson NN``
picks it for every file instead. A file without a lesson number is reported as not graded, and
the others are graded. A graded copy is built in a temporary folder, as ``submission.ipynb``
(pytest refuses file names with ``[]`` or ``::``):

- every check cell (``# NBVAL_CHECK_OUTPUT`` + ``# Question N``) of the submission is REPLACED by
  the reference's check cell of the same question: source and stored output come from the
  reference, so editing the expected answer changes nothing;
- a reference check cell the student deleted is RE-INSERTED: right after the question's previous
  check cell if there is one; else after the last cell that defines (``def``/``class`` at the
  start of a line) a name that the reference's solution cell of that question defines, else after
  the first code cell under the ``### Question N`` heading, else at the end, but always before
  the question's later check cells;
- a first cell changes the kernel's working directory to the reference folder, so relative paths
  behave as in the course.

The copy runs under nbval (``--nbval-lax``, one kernel, each cell's time bounded) with
``COURSE_PROFILE=ci``; after a cell times out, the later cells still run and report their own
result (``--runxfail``). A question scores its points (from the reference heading, e.g.
``### Question 2: make_layers (2 pts)``) when all its check cells pass. A failing non-check cell
scores nothing by itself, but later cells that need what it should have made fail too: this is why
check cells are self-contained. Such a failure is listed under the score table by its cell
number in the submitted file (0-based, counting every cell) and its first line. An odd file (a
cell without source, ...) scores 0 with the reason, and the batch goes on. ``--json``/``--csv``
are rewritten after each submission, so an interrupted run keeps what was graded. Student code
runs in the same kernel, so this grading is formative, not proof against a student who sets out
to cheat.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from course_utils.release import is_check_cell

# The same as course_utils.runtime's (a test checks it); importing runtime would load torch here.
PROFILE_ENV, PROFILE_NAMES = "COURSE_PROFILE", ("full", "quick", "ci")

_QUESTION_LINE = re.compile(r"^\s*#\s*Question\s+(\d+[a-z]?)\b", re.M)
_HEADING = re.compile(r"^#{1,6}\s*Question\s+(\d+[a-z]?)\b[:.\s]*(.*?)\s*(?:\((\d+(?:\.\d+)?)\s*pts?\))?\s*$", re.M)
_DEFINITION = re.compile(r"^(?:async\s+def|def|class)\s+(\w+)", re.M)
_LESSON_NUMBER = re.compile(r"(?:^|\D)(\d\d)_")
_ANSI = re.compile(r"(?:\x1b|#x1B)\[[0-9;]*m")


class GradeError(ValueError):
    """A usage error: a missing file, no reference notebook, or a reference without answers."""


AFTER_CRASH = "failed after an earlier cell timed out or crashed the kernel"


@dataclass
class Question:
    """One graded question of a reference notebook."""

    number: str
    title: str
    points: float
    checks: list[NotebookNode] = field(default_factory=list)  # the reference's check cells
    names: set[str] = field(default_factory=set)  # what its solution cells define


@dataclass
class QuestionResult:
    number: str
    title: str
    points: float
    score: float
    passed: bool
    reason: str = ""  # on failure: why, in one line
    notes: list[str] = field(default_factory=list)  # e.g. "check cell deleted, restored"


@dataclass
class Grade:
    submission: str
    reference: str  # "" when no reference notebook matched the submission
    questions: list[QuestionResult]
    # Every failing code cell: "cell" (its index in the submitted file, 0-based, counting every
    # cell; None for a check cell the student deleted), "source" (its first line), question, reason.
    failed_cells: list[dict]
    error: str = ""  # why the submission was not graded at all (every question then scores 0)

    @property
    def score(self) -> float:
        return float(sum(q.score for q in self.questions))

    @property
    def total(self) -> float:
        return float(sum(q.points for q in self.questions))


def question_of(cell: NotebookNode) -> str | None:
    """The ``N`` of a check cell's ``# Question N`` line (None for an ungraded check cell)."""
    match = _QUESTION_LINE.search(cell.source) if is_check_cell(cell) else None
    return match.group(1) if match else None


def find_reference(submission: Path, reference_dir: Path, lesson: str | None = None) -> Path:
    """The reference notebook of lesson ``lesson`` if given, else the one with the submission's
    name, else the one with its ``NN_`` lesson number."""
    submission, reference_dir = Path(submission), Path(reference_dir)
    if lesson is None and (reference_dir / submission.name).is_file():
        return reference_dir / submission.name
    match = _LESSON_NUMBER.search(submission.name)
    number = lesson or (match.group(1) if match else None)
    if number is None:
        raise GradeError(f"{submission.name} has no lesson number: rename it like its lesson "
                         "(NN_topic.ipynb, e.g. 00_setup.ipynb) or pass --lesson NN.")
    candidates = sorted(reference_dir.glob(f"{number}_*.ipynb"))
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise GradeError(f"No single reference notebook for lesson {number} ({submission}) in {reference_dir} "
                         f"(found: {found}); name the submission like its lesson (NN_topic.ipynb) "
                         "or pass --lesson NN or --reference DIR.")
    return candidates[0]


def read_questions(reference: NotebookNode, name: str = "reference") -> dict[str, Question]:
    """The graded questions of a reference notebook, in order, with points and check cells."""
    questions: dict[str, Question] = {}
    current = None  # the question whose heading we are under
    for index, cell in enumerate(reference.cells):
        heading = _HEADING.search(cell.source) if cell.cell_type == "markdown" else None
        if heading:
            number, title, points = heading.groups()
            current = questions.setdefault(number, Question(number, title, float(points) if points else -1))
        elif cell.cell_type == "code" and question_of(cell):
            number = question_of(cell)
            if number not in questions or questions[number].points < 0:
                raise GradeError(f"{name}, cell {index}: check cell of Question {number} has no heading "
                                 f"'### Question {number}: title (N pts)' above it to give its points.")
            if cell.execution_count is None or not cell.outputs:
                raise GradeError(f"{name}, cell {index}: check cell of Question {number} has no stored "
                                 "output; run the reference notebook and save it with its outputs.")
            questions[number].checks.append(cell)
        elif cell.cell_type == "code" and current and not current.checks and "BEGIN SOLUTION" in cell.source:
            current.names.update(_DEFINITION.findall(cell.source))
    return {number: q for number, q in questions.items() if q.checks}


def _anchor(cells: list[tuple], question: Question) -> int:
    """Index in ``cells`` after which a deleted check cell of ``question`` is re-inserted."""
    defines = [i for i, (cell, *_) in enumerate(cells) if cell.cell_type == "code"
               and question.names & set(_DEFINITION.findall(cell.source))]
    if defines:
        return defines[-1]
    for i, (cell, *_) in enumerate(cells):
        heading = _HEADING.search(cell.source) if cell.cell_type == "markdown" else None
        if heading and heading.group(1) == question.number:
            for j in range(i + 1, len(cells)):
                if cells[j][0].cell_type == "markdown" and _HEADING.search(cells[j][0].source):
                    break
                if cells[j][0].cell_type == "code":
                    return j
            return i
    return len(cells) - 1


def _replace_checks(submission: NotebookNode, questions: dict[str, Question], notes: dict) -> list[tuple]:
    """The submission's cells as ``(cell, tag, index)``, each of its check cells swapped for the
    reference's; ``index`` is the cell's index in the submission.

    Within a question, an unchanged copy of a reference cell pairs with it first, the others pair
    in order; extra copies are dropped. ``tag`` is ``(question, k)`` for the k-th reference check.
    """
    paired = {}  # submission cell index -> tag, None to drop it
    for number, question in questions.items():
        free = [i for i, cell in enumerate(submission.cells) if question_of(cell) == number]
        todo = list(range(len(question.checks)))
        for k in list(todo):
            same = [i for i in free if submission.cells[i].source.strip() == question.checks[k].source.strip()]
            if same:
                free.remove(same[0]), todo.remove(k)
                paired[same[0]] = (number, k)
        for k, i in zip(todo, list(free)):
            free.remove(i)
            paired[i] = (number, k)
            notes[(number, k)] = ["check cell edited, reference used"]
        paired.update({i: None for i in free})
    return [(questions[paired[i][0]].checks[paired[i][1]], paired[i], i) if i in paired else (cell, None, i)
            for i, cell in enumerate(submission.cells) if paired.get(i, ()) is not None]


def _restore_deleted(cells: list[tuple], questions: dict[str, Question], notes: dict) -> None:
    """Insert the reference check cells missing from ``cells`` (the rule is in the module docstring)."""
    restored = set()
    for number, question in questions.items():
        for k, ref in enumerate(question.checks):
            tags = [tag for _, tag, _ in cells]
            if (number, k) in tags:
                continue
            before = [tags.index((number, j)) for j in range(k) if (number, j) in tags]
            after = [tags.index((number, j)) for j in range(k + 1, len(question.checks)) if (number, j) in tags]
            position = before[-1] + 1 if before else min([_anchor(cells, question) + 1] + after)
            while not before and position < len(cells) and cells[position][1] in restored:
                position += 1  # cells restored at the same place stay in reference order
            cells.insert(position, (ref, (number, k), None))
            restored.add((number, k))
            notes[(number, k)] = ["check cell deleted, restored"]


def build_graded_notebook(submission: NotebookNode, questions: dict[str, Question],
                          workdir: Path) -> tuple[NotebookNode, list, list, dict[tuple, list[str]]]:
    """The notebook to run: the submission with the reference's check cells in place.

    Returns the notebook; for each of its code cells in nbval's order, its tag (``(question, k)``
    for the k-th reference check cell of a question, else None) and its index in the submission
    (None for the added setup cell and restored check cells); and notes per tag.
    """
    for index, cell in enumerate(submission.cells):
        if not isinstance(cell.get("source"), str):
            raise ValueError(f"cell {index} has no source text (source: {cell.get('source')!r})")
    notes: dict[tuple, list[str]] = {}
    cells = _replace_checks(submission, questions, notes)
    _restore_deleted(cells, questions, notes)
    setup = nbformat.v4.new_code_cell(f"# added by course_utils.grade: run where the course runs\n"
                                      f"import os\nos.chdir({str(workdir)!r})")
    graded = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
    tags, origins = [], []
    for index, (cell, tag, origin) in enumerate([(setup, None, None)] + cells):
        copy = nbformat.from_dict({**cell, "id": f"graded-{index}"})
        if cell.cell_type == "code" and tag is None:  # never compared in lax mode; avoids nbval's
            copy.outputs, copy.execution_count = [], None  # "unrun cell has outputs" error
        graded.cells.append(copy)
        if cell.cell_type == "code":
            tags.append(tag)
            origins.append(origin)
    return graded, tags, origins, notes


def run_nbval(notebook: Path, *, timeout: int = 120, profile: str | None = "ci",
              cwd: Path | None = None) -> tuple[dict[int, tuple[str, str]], str]:
    """Run one notebook under nbval in a subprocess.

    Returns ``{code cell: (outcome, report)}``, with outcome "passed", "failed" or "skipped" and
    nbval's report of a failure, and one line saying why some cells have no result ("" if all do).
    """
    notebook = Path(notebook)
    env = dict(os.environ)
    if profile:
        env[PROFILE_ENV] = profile
    package_parent = str(Path(__file__).resolve().parents[1])  # the kernel imports this course_utils
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    num_cells = sum(cell.cell_type == "code" for cell in nbformat.read(notebook, as_version=4).cells)
    limit = timeout * (num_cells + 2) + 120
    with tempfile.TemporaryDirectory(prefix="course-nbval-") as tmp:  # nothing lands next to the notebook
        xml, ini = Path(tmp) / "junit.xml", Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n")  # the course's own pytest settings must not apply here
        # --runxfail: nbval marks every cell after a timeout "expected to fail"; we want its real result.
        command = [sys.executable, "-m", "pytest", str(notebook.resolve()), "--nbval-lax", "--runxfail",
                   "--nbval-current-env", f"--nbval-cell-timeout={timeout}", "-p", "no:cacheprovider",
                   f"--junitxml={xml}", "--color=no", "-q", "-c", str(ini), "--rootdir", str(notebook.resolve().parent)]
        # A session of its own, so that a stuck run is stopped with its kernel, not just pytest.
        with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=os.name == "posix") as run:
            try:
                output = run.communicate(timeout=limit)[0]
            except BaseException as error:  # too slow overall, or Ctrl-C: stop pytest and its kernel
                os.killpg(run.pid, signal.SIGKILL) if os.name == "posix" else run.kill()
                run.communicate()
                if not isinstance(error, subprocess.TimeoutExpired):
                    raise
                return {}, f"not run: the grading run was stopped after {limit} s (too slow overall?)"
        if not xml.exists():
            raise GradeError(f"nbval did not run (is nbval installed in {sys.executable}?):\n{output[-2000:]}")
        cases = list(ET.parse(xml).iter("testcase"))
    results = {}
    for case in cases:
        match = re.fullmatch(r"Cell (\d+)", case.get("name", ""))
        problems = [child for child in case if child.tag in ("failure", "error", "skipped")]
        if match:
            problem = next((p for p in problems if p.tag != "skipped"), problems[0] if problems else None)
            outcome = {None: "passed", "skipped": "skipped"}.get(getattr(problem, "tag", None), "failed")
            report = "" if problem is None else _ANSI.sub("", problem.text or problem.get("message", ""))
            results[int(match.group(1))] = (outcome, report)
    if len(results) >= num_cells:
        return results, ""
    lines = [line.strip() for line in _ANSI.sub("", output).splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "no output")
    return results, f"not run: pytest stopped: {last}"[:200]


def _output_text(cell: NotebookNode) -> str:
    return "".join(out.get("text", "") or out.get("data", {}).get("text/plain", "") for out in cell.outputs)


def _first_line(cell: NotebookNode) -> str:
    """The first line of a cell that says what it does (not an ``# NBVAL_...`` marker)."""
    lines = [line.strip() for line in cell.source.splitlines() if line.strip()]
    lines = [line for line in lines if not line.lstrip("# ").startswith("NBVAL_")] or lines or [""]
    return lines[0][:60]


def failure_reason(outcome: str, report: str, expected: str = "") -> str:
    """One line saying why a cell failed, from nbval's report and the expected output.

    For outcome "missing" (the cell has no result), ``report`` is the line saying why.
    """
    lines = [line.strip() for line in report.splitlines() if line.strip()]
    if outcome == "missing":
        return report or "not run"
    if "Kernel dead" in report or "Previous cell timed out" in report:
        return AFTER_CRASH
    if outcome == "skipped":
        return "skipped by nbval (an # NBVAL_SKIP comment?)"
    if "Timeout of" in report:
        return re.search(r"Timeout of [^\n]*", report).group(0).rstrip(".")
    if "Cell execution caused an exception" in report:
        error = lines[-1].rstrip(": ") if lines else "an exception"
        return f"raised {error}"[:160]
    if "Cell outputs differ" in report:
        detail = report.split("Traceback:", 1)[-1]
        wanted = [line.strip() for line in expected.splitlines() if line.strip()]
        first = repr(wanted[0]) if wanted else "no output"
        for line in re.findall(r"^\s*[-+] (.*)$", detail, re.M):
            if line.strip() and line.strip() not in wanted:
                line = line.strip()
                return (line if line.startswith("FAIL") else f"printed {line!r}, expected {first}")[:160]
        fields = re.search(r"(Missing|Unexpected) output fields from running code: (.*)", detail)
        if fields and fields.group(1) == "Unexpected":
            return f"unexpected output {fields.group(2)} (a warning or an error message?)"
        if fields:
            return f"printed nothing, expected {first}"
        return "output differs from the reference answer"
    return (lines[0] if lines else "failed")[:160]


def read_reference(path: Path) -> dict[str, Question]:
    """The graded questions of a reference notebook file; GradeError if it is unusable."""
    try:
        reference = nbformat.read(path, as_version=4)
    except Exception as error:
        raise GradeError(f"Reference {path} is not a readable notebook: {error}") from None
    questions = read_questions(reference, str(path))
    if not questions:
        raise GradeError(f"{path} has no graded check cells ('# NBVAL_CHECK_OUTPUT' and '# Question N').")
    return questions


def load_reference(submission: Path, reference_dir: Path,
                   lesson: str | None = None) -> tuple[Path, dict[str, Question]]:
    """The submission's reference notebook and its graded questions; GradeError if unusable."""
    if not Path(submission).is_file():
        raise GradeError(f"Submission {submission} not found.")
    path = find_reference(Path(submission), Path(reference_dir), lesson)
    return path, read_reference(path)


def ungraded(submission: Path, reference: str, questions: dict[str, Question], reason: str) -> Grade:
    """The result of a submission that could not be graded: every question scores 0 for ``reason``."""
    rows = [QuestionResult(q.number, q.title, q.points, 0.0, False, reason) for q in questions.values()]
    return Grade(str(submission), reference, rows, [], error=reason)


def grade(submission: Path, reference_dir: Path = Path("notebooks"), *, timeout: int = 120,
          profile: str | None = "ci", lesson: str | None = None) -> Grade:
    """Grade one submitted notebook against its reference (see the module docstring)."""
    submission = Path(submission)
    reference_path, questions = load_reference(submission, reference_dir, lesson)
    try:
        submitted = nbformat.read(submission, as_version=4)
    except Exception as error:  # a broken file is a zero for this student, not the end of the batch
        return ungraded(submission, str(reference_path), questions,
                        f"not a readable notebook ({type(error).__name__})")
    try:
        return _grade_notebook(submitted, submission, reference_path, questions, timeout, profile)
    except GradeError:
        raise  # nbval itself did not run: the same for every submission
    except Exception as error:  # an odd file is a zero with the reason, not the end of the batch
        return ungraded(submission, str(reference_path), questions,
                        f"not graded: {type(error).__name__}: {error}"[:200])


def _grade_notebook(submitted: NotebookNode, submission: Path, reference_path: Path,
                    questions: dict[str, Question], timeout: int, profile: str | None) -> Grade:
    """Build the graded copy of a read submission, run it and score each question."""
    graded, tags, origins, notes = build_graded_notebook(submitted, questions, reference_path.parent.resolve())
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        path = Path(tmp) / "submission.ipynb"  # a safe name: pytest refuses paths with [] or ::
        nbformat.write(graded, path)
        results, stopped = run_nbval(path, timeout=timeout, profile=profile, cwd=reference_path.parent)
    rows = []
    for number, question in questions.items():
        reasons = []
        for k, check in enumerate(question.checks):
            outcome, report = results.get(tags.index((number, k)), ("missing", stopped))
            if outcome != "passed":
                where = f"check {k + 1} of {len(question.checks)}: " if len(question.checks) > 1 else ""
                reasons.append(where + failure_reason(outcome, report, _output_text(check)))
        row_notes = [note for k in range(len(question.checks)) for note in notes.get((number, k), [])]
        rows.append(QuestionResult(number, question.title, question.points, 0.0 if reasons else question.points,
                                   not reasons, reasons[0] if reasons else "", row_notes))
    code_cells = [cell for cell in graded.cells if cell.cell_type == "code"]
    failed = [{"cell": origins[i], "source": _first_line(code_cells[i]), "question": tags[i][0] if tags[i] else None,
               "reason": failure_reason(outcome, report)}
              for i, (outcome, report) in sorted(results.items()) if outcome != "passed" and i < len(tags)]
    return Grade(str(submission), str(reference_path), rows, failed)


def format_table(result: Grade) -> str:
    """The score table of one submission: one row per question, the total, then the failing
    non-question cells (whose failure may have cost later questions)."""
    lines = [f"{result.submission}  (reference: {result.reference or 'none'})"]
    if result.error and not result.questions:
        lines.append(f"  {result.error}")
    width = max((len(q.title) for q in result.questions), default=0)
    for q in result.questions:
        why = "; ".join(filter(None, [q.reason] + q.notes))
        lines.append(f"  Question {q.number:<3} {q.title:<{width}}  {q.score:g}/{q.points:g}  "
                     f"{'PASS' if q.passed else 'FAIL'}  {why}".rstrip())
    lines.append(f"Total: {result.score:g} / {result.total:g}" + ("  (not graded)" if result.error else ""))
    for cell in result.failed_cells:
        if cell["question"] is None and cell["cell"] is not None and cell["reason"] != AFTER_CRASH:
            lines.append(f"  cell {cell['cell']} (0-based) `{cell['source']}`: {cell['reason']}; "
                         "later questions may be affected")
    return "\n".join(lines)


def _submissions(paths: list[Path]) -> list[Path]:
    """The notebooks to grade: files as given, and every ``.ipynb`` under a folder (not hidden ones)."""
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob("*.ipynb"))  # submissions/<student>/00_setup.ipynb too
            files.extend(f for f in found if not any(part.startswith(".") for part in f.relative_to(path).parts))
        elif path.is_file():
            files.append(path)
        else:
            raise GradeError(f"Submission {path} not found.")
    if not files:
        raise GradeError("No notebooks to grade in " + ", ".join(map(str, paths)))
    return files


def _write(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file, so that an interrupted run never leaves half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(partial, path)
    except OSError as error:
        raise GradeError(f"Cannot write {path}: {error.strerror or error}") from None


def write_results(grades: list[Grade], json_path: Path | None, csv_path: Path | None) -> None:
    """Write the results so far to ``--json`` (everything) and ``--csv`` (one row per submission)."""
    if json_path:
        _write(json_path, json.dumps([{**asdict(g), "score": g.score, "total": g.total} for g in grades],
                                     indent=1) + "\n")
    if csv_path:
        numbers = list(dict.fromkeys(q.number for g in grades for q in g.questions))
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["submission", "score", "total"] + [f"Q{n}" for n in numbers] + ["error"])
        for g in grades:
            scores = {q.number: f"{q.score:g}" for q in g.questions}
            writer.writerow([g.submission, f"{g.score:g}", f"{g.total:g}"] + [scores.get(n, "") for n in numbers]
                            + [g.error])
        _write(csv_path, rows.getvalue())


def _lesson(text: str) -> str:
    if not re.fullmatch(r"\d\d", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a two-digit lesson number like 00 or 04")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.grade", description=__doc__.split("\n")[0])
    parser.add_argument("submissions", nargs="+", type=Path, help="submitted notebooks, or folders of them")
    parser.add_argument("--reference", type=Path, default=Path("notebooks"), help="solution notebooks folder")
    parser.add_argument("--lesson", type=_lesson, help="grade every file against lesson NN (default: from the name)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds allowed per cell (default 120)")
    parser.add_argument("--profile", choices=PROFILE_NAMES, default="ci", help="COURSE_PROFILE of the run")
    parser.add_argument("--json", type=Path, help="write every result, per question and per cell, here")
    parser.add_argument("--csv", type=Path, help="write one row per submission (score, total, each question)")
    args = parser.parse_args(argv)
    files: list[Path] = []
    grades: list[Grade] = []
    try:  # every usage error before any grading starts
        files = _submissions(args.submissions)
        unmatched = {}  # file -> why no reference matches it: graded 0, the others still graded
        for path in files:
            try:
                find_reference(path, args.reference, args.lesson)
            except GradeError as error:
                unmatched[path] = str(error)
        if len(unmatched) == len(files):
            raise GradeError(unmatched[files[0]])
        for reference in sorted({find_reference(p, args.reference, args.lesson) for p in files if p not in unmatched}):
            read_reference(reference)
        write_results([], args.json, args.csv)  # can we write there? Better to know before grading
        for path in files:
            if path in unmatched:
                grades.append(ungraded(path, "", {}, f"not graded: {unmatched[path]}"))
            else:
                grades.append(grade(path, args.reference, timeout=args.timeout, profile=args.profile,
                                    lesson=args.lesson))
            print(format_table(grades[-1]) + "\n", flush=True)
            write_results(grades, args.json, args.csv)
    except GradeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        saved = f"; saved in {', '.join(str(p) for p in (args.json, args.csv) if p)}" if args.json or args.csv else ""
        print(f"interrupted: {len(grades)} of {len(files)} submissions graded{saved}", file=sys.stderr)
        return 130
    if len(grades) > 1:
        print("Summary:\n" + "\n".join(f"  {g.submission}: {g.score:g} / {g.total:g}"
                                       + ("  (not graded)" if g.error else "") for g in grades))
    return 0


if __name__ == "__main__":
    sys.exit(main())
