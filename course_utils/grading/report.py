"""Step 3 of grading: each question's score from the cells' results, the table, the result files.

A question scores its points (from the reference heading, e.g. ``### Question 2: make_layers
(2 pts)``) when every one of its check cells ran without error and printed exactly the stored
answer (a ``Question 1: not answered yet (...)`` line differs from it, so it scores 0). A
failing non-check cell scores nothing by itself, but later cells that need what it should have
made fail too; it is listed under the table by its cell number in the submitted file (0-based,
counting every cell) and its first line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbformat import NotebookNode

from course_utils.files import write_atomically
from course_utils.grading.build import Graded, GradeError, Question, defined_later

AFTER_CRASH = "failed after an earlier cell timed out or crashed the kernel"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NOT_DEFINED = re.compile(r"^NameError: name '(\w+)' is not defined")


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
    warnings: list[str] = field(default_factory=list)  # e.g. course files changed while it ran

    @classmethod
    def from_dict(cls, data: dict) -> "Grade":
        """A grade read back from ``--json`` (to merge shards)."""
        return cls(data["submission"], data["reference"], [QuestionResult(**q) for q in data["questions"]],
                   data["failed_cells"], data.get("error", ""), data.get("warnings", []))

    @property
    def score(self) -> float:
        return float(sum(q.score for q in self.questions))

    @property
    def total(self) -> float:
        return float(sum(q.points for q in self.questions))


def ungraded(submission: Path | str, reference: str, questions: dict[str, Question], reason: str) -> Grade:
    """The result of a submission that could not be graded: every question scores 0 for ``reason``."""
    rows = [QuestionResult(q.number, q.title, q.points, 0.0, False, reason) for q in questions.values()]
    return Grade(str(submission), reference, rows, [], error=reason)


def output_lines(outputs: list) -> tuple[list[str], list[str]]:
    """What a cell printed: (stdout and results, stderr), as lines without colour codes or trailing blanks."""
    out, err = [], []
    for output in outputs:
        if output.get("output_type") == "stream":
            (err if output.get("name") == "stderr" else out).append(output.get("text", ""))
        elif output.get("output_type") in ("execute_result", "display_data"):
            out.append(output.get("data", {}).get("text/plain", "") + "\n")
    return tuple([line.rstrip() for line in _ANSI.sub("", "".join(text)).rstrip().splitlines()]
                 for text in (out, err))


def _mismatch(got: list, expected: list) -> str:
    """One line saying how a check cell's output differs from the answer ("" if it does not)."""
    (out, err), (want, want_err) = output_lines(got), output_lines(expected)
    if (out, err) == (want, want_err):
        return ""
    first = repr(want[0]) if want else "no output"
    for line in out:
        if line.strip() and line not in want:
            line = line.strip()
            return (line if re.match(r"(FAIL\b|Question \S+: )", line) else f"printed {line!r}, expected {first}")[:160]
    if err != want_err:
        return "unexpected output on stderr (a warning or an error message?)"
    return f"printed nothing, expected {first}" if not out else "output differs from the reference answer"


def cell_reason(record: dict | None, stopped: str, cell_seconds: int, expected: list | None = None) -> str:
    """Why a code cell failed ("" if it passed); ``expected``: the stored answer of a check cell."""
    if record is None:
        return stopped or "not run"
    status = record["status"]
    if status == "dead":
        return AFTER_CRASH
    if status == "died":
        return "the kernel died in this cell (os._exit, a crash, or out of memory?)"
    if status in ("timeout", "stopped"):
        deaf = "; it ignored the interrupt, so the kernel was stopped" if status == "stopped" else ""
        return f"Timeout of {cell_seconds} seconds exceeded executing cell{deaf}"
    if status == "error":
        return f"raised {' '.join(record['error'].split())}"[:160]
    return _mismatch(record["outputs"], expected) if expected is not None else ""


def _first_line(cell: NotebookNode) -> str:
    """The first line of a cell that says what it does (not an ``# NBVAL_...`` marker)."""
    lines = [line.strip() for line in cell.source.splitlines() if line.strip()]
    lines = [line for line in lines if not line.lstrip("# ").startswith("NBVAL_")] or lines or [""]
    return lines[0][:60]


def _hint(graded: Graded, code_index: int, record: dict | None, reason: str) -> str:
    """``reason``, plus where the missing name is defined when a cell runs before its definition."""
    match = _NOT_DEFINED.match(record.get("error", "")) if record else None
    later = defined_later(graded.notebook, code_index, match.group(1)) if match else None
    if later is None:
        return reason
    where = graded.origins[later]
    where = f"cell {where}" if where is not None else "a later cell"
    return f"{reason} ({match.group(1)} is defined below, in {where}: cells out of order?)"[:200]


def score(graded: Graded, questions: dict[str, Question], records: list[dict], stopped: str,
          cell_seconds: int, submission: str, reference: str) -> Grade:
    """The grade of a run graded copy, from its cells' records."""
    code_cells = [cell for cell in graded.notebook.cells if cell.cell_type == "code"]
    reasons = []
    for i, (cell, tag) in enumerate(zip(code_cells, graded.tags)):
        record = records[i] if i < len(records) else None
        expected = questions[tag[0]].checks[tag[1]].outputs if tag else None
        reasons.append(_hint(graded, i, record, cell_reason(record, stopped, cell_seconds, expected)))
    rows = []
    for number, question in questions.items():
        failed = []
        for k in range(len(question.checks)):
            reason = reasons[graded.tags.index((number, k))]
            if reason:
                where = f"check {k + 1} of {len(question.checks)}: " if len(question.checks) > 1 else ""
                failed.append(where + reason)
        notes = [note for k in range(len(question.checks)) for note in graded.notes.get((number, k), [])]
        rows.append(QuestionResult(number, question.title, question.points, 0.0 if failed else question.points,
                                   not failed, failed[0] if failed else "", notes))
    failed_cells = [{"cell": graded.origins[i], "source": _first_line(code_cells[i]),
                     "question": graded.tags[i][0] if graded.tags[i] else None, "reason": reason}
                    for i, reason in enumerate(reasons) if reason]
    return Grade(submission, reference, rows, failed_cells)


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
    lines += [f"  warning: {warning}" for warning in result.warnings]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    """A CSV field on one line: a raw newline (an error message, a file name) would split the row."""
    return " ".join(str(text).split())


def write_results(grades: list[Grade], json_path: Path | None, csv_path: Path | None) -> None:
    """Write ``--json`` (everything) and ``--csv`` (one row per submission), each in one rename."""
    outputs = []
    if json_path:
        outputs.append((json_path, json.dumps([{**asdict(g), "score": g.score, "total": g.total} for g in grades],
                                              indent=1, ensure_ascii=False) + "\n"))
    if csv_path:
        numbers = list(dict.fromkeys(q.number for g in grades for q in g.questions))
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["submission", "score", "total"] + [f"Q{n}" for n in numbers] + ["error"])
        for g in grades:
            scores = {q.number: f"{q.score:g}" for q in g.questions}
            writer.writerow([_one_line(g.submission), f"{g.score:g}", f"{g.total:g}"]
                            + [scores.get(n, "") for n in numbers] + [_one_line(g.error)])
        outputs.append((csv_path, rows.getvalue()))
    for path, text in outputs:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda f, text=text: f.write(text), text=True)
        except OSError as error:
            raise GradeError(f"Cannot write {path}: {error.strerror or error}") from None
