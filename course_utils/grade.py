"""Grade submitted notebooks against the reference: ``python -m course_utils.grade SUB.ipynb``.

For each submission, the reference solution notebook with the same ``NN_`` lesson number is
found in ``--reference`` (default ``notebooks``). A graded copy is built in a temporary folder:

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
``COURSE_PROFILE=ci``. A question scores its points (from the reference heading, e.g.
``### Question 2: make_layers (2 pts)``) when all its check cells pass. A failing non-check cell
scores nothing by itself, but later cells that need what it should have made fail too: this is why
check cells are self-contained. Student code runs in the same kernel, so this grading is formative,
not proof against a student who sets out to cheat.
"""

from __future__ import annotations

import argparse
import csv
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
    reference: str
    questions: list[QuestionResult]
    failed_cells: list[dict]  # every failing code cell of the graded copy: cell, question, reason

    @property
    def score(self) -> float:
        return sum(q.score for q in self.questions)

    @property
    def total(self) -> float:
        return sum(q.points for q in self.questions)


def question_of(cell: NotebookNode) -> str | None:
    """The ``N`` of a check cell's ``# Question N`` line (None for an ungraded check cell)."""
    match = _QUESTION_LINE.search(cell.source) if is_check_cell(cell) else None
    return match.group(1) if match else None


def find_reference(submission: Path, reference_dir: Path) -> Path:
    """The reference notebook with the submission's name, else with its ``NN_`` lesson number."""
    if (reference_dir / submission.name).is_file():
        return reference_dir / submission.name
    match = _LESSON_NUMBER.search(submission.name)
    candidates = sorted(reference_dir.glob(f"{match.group(1)}_*.ipynb")) if match else []
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise GradeError(f"No single reference notebook for {submission} in {reference_dir} (found: {found}); "
                         "name the submission like its lesson (NN_topic.ipynb) or pass --reference DIR.")
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
    defines = [i for i, (cell, _) in enumerate(cells) if cell.cell_type == "code"
               and question.names & set(_DEFINITION.findall(cell.source))]
    if defines:
        return defines[-1]
    for i, (cell, _) in enumerate(cells):
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
    """The submission's cells as ``(cell, tag)``, each of its check cells swapped for the reference's.

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
    return [(questions[paired[i][0]].checks[paired[i][1]], paired[i]) if i in paired else (cell, None)
            for i, cell in enumerate(submission.cells) if paired.get(i, ()) is not None]


def _restore_deleted(cells: list[tuple], questions: dict[str, Question], notes: dict) -> None:
    """Insert the reference check cells missing from ``cells`` (the rule is in the module docstring)."""
    restored = set()
    for number, question in questions.items():
        for k, ref in enumerate(question.checks):
            tags = [tag for _, tag in cells]
            if (number, k) in tags:
                continue
            before = [tags.index((number, j)) for j in range(k) if (number, j) in tags]
            after = [tags.index((number, j)) for j in range(k + 1, len(question.checks)) if (number, j) in tags]
            position = before[-1] + 1 if before else min([_anchor(cells, question) + 1] + after)
            while not before and position < len(cells) and cells[position][1] in restored:
                position += 1  # cells restored at the same place stay in reference order
            cells.insert(position, (ref, (number, k)))
            restored.add((number, k))
            notes[(number, k)] = ["check cell deleted, restored"]


def build_graded_notebook(submission: NotebookNode, questions: dict[str, Question],
                          workdir: Path) -> tuple[NotebookNode, list, dict[tuple, list[str]]]:
    """The notebook to run: the submission with the reference's check cells in place.

    Returns the notebook, the tag of each of its code cells in nbval's order (``(question, k)``
    for the k-th reference check cell of a question, else None) and notes per tag.
    """
    notes: dict[tuple, list[str]] = {}
    cells = _replace_checks(submission, questions, notes)
    _restore_deleted(cells, questions, notes)
    setup = nbformat.v4.new_code_cell(f"# added by course_utils.grade: run where the course runs\n"
                                      f"import os\nos.chdir({str(workdir)!r})")
    graded = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
    tags = []
    for index, (cell, tag) in enumerate([(setup, None)] + cells):
        copy = nbformat.from_dict({**cell, "id": f"graded-{index}"})
        if cell.cell_type == "code" and tag is None:  # never compared in lax mode; avoids nbval's
            copy.outputs, copy.execution_count = [], None  # "unrun cell has outputs" error
        graded.cells.append(copy)
        if cell.cell_type == "code":
            tags.append(tag)
    return graded, tags, notes


def run_nbval(notebook: Path, *, timeout: int = 120, profile: str | None = "ci",
              cwd: Path | None = None) -> dict[int, tuple[str, str]]:
    """Run one notebook under nbval in a subprocess; return ``{code cell: (outcome, report)}``
    with outcome "passed", "failed" or "skipped" and nbval's report of a failure."""
    notebook = Path(notebook)
    env = dict(os.environ)
    if profile:
        env[PROFILE_ENV] = profile
    package_parent = str(Path(__file__).resolve().parents[1])  # the kernel imports this course_utils
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    num_cells = sum(cell.cell_type == "code" for cell in nbformat.read(notebook, as_version=4).cells)
    with tempfile.TemporaryDirectory(prefix="course-nbval-") as tmp:  # nothing lands next to the notebook
        xml, ini = Path(tmp) / "junit.xml", Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n")  # the course's own pytest settings must not apply here
        command = [sys.executable, "-m", "pytest", str(notebook.resolve()), "--nbval-lax",
                   "--nbval-current-env", f"--nbval-cell-timeout={timeout}", "-p", "no:cacheprovider",
                   f"--junitxml={xml}", "--color=no", "-q", "-c", str(ini), "--rootdir", str(notebook.resolve().parent)]
        # A session of its own, so that a stuck run is stopped with its kernel, not just pytest.
        with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=os.name == "posix") as run:
            try:
                output = run.communicate(timeout=timeout * (num_cells + 2) + 120)[0]
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL) if os.name == "posix" else run.kill()
                run.communicate()
                return {}  # every cell then reads "not run"
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
    return results


def _output_text(cell: NotebookNode) -> str:
    return "".join(out.get("text", "") or out.get("data", {}).get("text/plain", "") for out in cell.outputs)


def failure_reason(outcome: str, report: str, expected: str = "") -> str:
    """One line saying why a cell failed, from nbval's report and the expected output."""
    lines = [line.strip() for line in report.splitlines() if line.strip()]
    if outcome == "missing":
        return "not run: the grading run was stopped (too slow overall?)"
    if outcome == "skipped" or "Kernel dead" in report:
        return "failed after an earlier cell timed out or crashed the kernel"
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


def load_reference(submission: Path, reference_dir: Path) -> tuple[Path, dict[str, Question]]:
    """The submission's reference notebook and its graded questions; GradeError if unusable."""
    if not Path(submission).is_file():
        raise GradeError(f"Submission {submission} not found.")
    path = find_reference(Path(submission), Path(reference_dir))
    try:
        reference = nbformat.read(path, as_version=4)
    except Exception as error:
        raise GradeError(f"Reference {path} is not a readable notebook: {error}") from None
    questions = read_questions(reference, str(path))
    if not questions:
        raise GradeError(f"{path} has no graded check cells ('# NBVAL_CHECK_OUTPUT' and '# Question N').")
    return path, questions


def grade(submission: Path, reference_dir: Path = Path("notebooks"), *, timeout: int = 120,
          profile: str | None = "ci") -> Grade:
    """Grade one submitted notebook against its reference (see the module docstring)."""
    submission = Path(submission)
    reference_path, questions = load_reference(submission, reference_dir)
    results, tags, notes, unreadable = {}, [], {}, None
    try:
        submitted = nbformat.read(submission, as_version=4)
    except Exception as error:  # a broken file is a zero for this student, not the end of the batch
        unreadable = f"not a readable notebook ({type(error).__name__})"
    if unreadable is None:
        with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
            graded, tags, notes = build_graded_notebook(submitted, questions, reference_path.parent.resolve())
            path = Path(tmp) / submission.name
            nbformat.write(graded, path)
            results = run_nbval(path, timeout=timeout, profile=profile, cwd=reference_path.parent)
    rows = []
    for number, question in questions.items():
        reasons = [unreadable] if unreadable else []
        for k, check in enumerate(question.checks if not unreadable else []):
            outcome, report = results.get(tags.index((number, k)), ("missing", ""))
            if outcome != "passed":
                where = f"check {k + 1} of {len(question.checks)}: " if len(question.checks) > 1 else ""
                reasons.append(where + failure_reason(outcome, report, _output_text(check)))
        row_notes = [note for k in range(len(question.checks)) for note in notes.get((number, k), [])]
        rows.append(QuestionResult(number, question.title, question.points, 0 if reasons else question.points,
                                   not reasons, reasons[0] if reasons else "", row_notes))
    failed = [{"cell": i, "question": tags[i][0] if tags[i] else None, "reason": failure_reason(outcome, report)}
              for i, (outcome, report) in sorted(results.items()) if outcome != "passed" and i < len(tags)]
    return Grade(str(submission), str(reference_path), rows, failed)


def format_table(result: Grade) -> str:
    """The score table of one submission: one row per question, then the total."""
    lines = [f"{result.submission}  (reference: {result.reference})"]
    width = max(len(q.title) for q in result.questions)
    for q in result.questions:
        why = "; ".join(filter(None, [q.reason] + q.notes))
        lines.append(f"  Question {q.number:<3} {q.title:<{width}}  {q.score:g}/{q.points:g}  "
                     f"{'PASS' if q.passed else 'FAIL'}  {why}".rstrip())
    lines.append(f"Total: {result.score:g} / {result.total:g}")
    return "\n".join(lines)


def _submissions(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.ipynb")))
        elif path.is_file():
            files.append(path)
        else:
            raise GradeError(f"Submission {path} not found.")
    if not files:
        raise GradeError("No notebooks to grade in " + ", ".join(map(str, paths)))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.grade", description=__doc__.split("\n")[0])
    parser.add_argument("submissions", nargs="+", type=Path, help="submitted notebooks, or folders of them")
    parser.add_argument("--reference", type=Path, default=Path("notebooks"), help="solution notebooks folder")
    parser.add_argument("--timeout", type=int, default=120, help="seconds allowed per cell (default 120)")
    parser.add_argument("--profile", choices=PROFILE_NAMES, default="ci", help="COURSE_PROFILE of the run")
    parser.add_argument("--json", type=Path, help="write every result, per question and per cell, here")
    parser.add_argument("--csv", type=Path, help="write one row per submission (score, total, each question)")
    args = parser.parse_args(argv)
    try:
        files = _submissions(args.submissions)
        for path in files:  # every usage error before any grading starts
            load_reference(path, args.reference)
        grades = []
        for path in files:
            grades.append(grade(path, args.reference, timeout=args.timeout, profile=args.profile))
            print(format_table(grades[-1]) + "\n", flush=True)
    except GradeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if len(grades) > 1:
        print("Summary:\n" + "\n".join(f"  {g.submission}: {g.score:g} / {g.total:g}" for g in grades))
    if args.json:
        args.json.write_text(json.dumps([{**asdict(g), "score": g.score, "total": g.total} for g in grades],
                                        indent=1) + "\n")
    if args.csv:
        numbers = list(dict.fromkeys(q.number for g in grades for q in g.questions))
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["submission", "score", "total"] + [f"Q{n}" for n in numbers])
            for g in grades:
                scores = {q.number: f"{q.score:g}" for q in g.questions}
                writer.writerow([g.submission, f"{g.score:g}", f"{g.total:g}"] + [scores.get(n, "") for n in numbers])
    return 0


if __name__ == "__main__":
    sys.exit(main())
