"""Step 1 of grading: the graded copy of a submission, with the reference's check cells in place.

Student copies are made from the solutions by ``course_utils.release`` and keep their cell ids,
so each reference check cell (``# NBVAL_CHECK_OUTPUT`` + ``# Question N``) is found in the
submission **by its id**:

- found: it is graded where the student put it, with the reference's source and stored output
  (editing the expected answer changes nothing; an edited cell is noted);
- a check cell without a known id (a submission saved by nbformat < 4.5 has no ids, or a cell the
  student re-typed) pairs by its ``# Question N`` line with a reference check of that question
  still unmatched; extra copies are dropped;
- deleted: the reference's cell is re-inserted after the nearest cell above it in the reference
  that the submission still has (by id); without ids, at the end of its question's section
  (before the next ``### Question`` heading), else at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import nbformat
from nbformat import NotebookNode

from course_utils.release import is_check_cell

QUESTION_LINE = re.compile(r"^\s*#\s*Question\s+(\d+[a-z]?)\b", re.M)
HEADING = re.compile(r"^#{1,6}\s*Question\s+(\d+[a-z]?)\b[:.\s]*(.*?)\s*(?:\((\d+(?:\.\d+)?)\s*pts?\))?\s*$", re.M)
DEFINITION = re.compile(r"^(?:async\s+def|def|class)\s+(\w+)|^(\w+)\s*(?::[^=\n]*)?=(?!=)", re.M)

EDITED, DELETED = "check cell edited, reference used", "check cell deleted, restored"


class GradeError(ValueError):
    """A usage error: a missing file, no reference notebook, or a reference without answers."""


@dataclass
class Question:
    """One graded question of a reference notebook."""

    number: str
    title: str
    points: float
    checks: list[NotebookNode] = field(default_factory=list)  # the reference's check cells


@dataclass
class Graded:
    """A graded copy and where its code cells come from."""

    notebook: NotebookNode
    tags: list[tuple[str, int] | None]  # per code cell: (question, k) for its k-th reference check
    origins: list[int | None]  # per code cell: its index in the submission (None: re-inserted)
    notes: dict[tuple[str, int], list[str]]  # per (question, k): "check cell edited, ..." notes


def question_of(cell: NotebookNode) -> str | None:
    """The ``N`` of a check cell's ``# Question N`` line (None for an ungraded check cell)."""
    match = QUESTION_LINE.search(cell.source) if is_check_cell(cell) else None
    return match.group(1) if match else None


def read_questions(reference: NotebookNode, name: str = "reference") -> dict[str, Question]:
    """The graded questions of a reference notebook, in order, with points and check cells."""
    questions: dict[str, Question] = {}
    for index, cell in enumerate(reference.cells):
        heading = HEADING.search(cell.source) if cell.cell_type == "markdown" else None
        if heading:
            number, title, points = heading.groups()
            questions.setdefault(number, Question(number, title, float(points) if points else -1))
        elif question_of(cell):
            number = question_of(cell)
            if number not in questions or questions[number].points < 0:
                raise GradeError(f"{name}, cell {index}: check cell of Question {number} has no heading "
                                 f"'### Question {number}: title (N pts)' above it to give its points.")
            if cell.execution_count is None or not cell.outputs:
                raise GradeError(f"{name}, cell {index}: check cell of Question {number} has no stored "
                                 "output; run the reference notebook and save it with its outputs.")
            if not cell.get("id"):
                raise GradeError(f"{name}, cell {index}: check cell of Question {number} has no cell id; "
                                 "save the reference with nbformat >= 4.5 (Jupyter does).")
            questions[number].checks.append(cell)
    return {number: q for number, q in questions.items() if q.checks}


def check_sources(submission: NotebookNode) -> None:
    """ValueError for a cell without source text (the file is odd: it scores 0 with this reason)."""
    for index, cell in enumerate(submission.cells):
        if not isinstance(cell.get("source"), str):
            raise ValueError(f"cell {index} has no source text (source: {cell.get('source')!r})")


def _match(submission: NotebookNode, questions: dict[str, Question],
           notes: dict) -> dict[int, tuple[str, int] | None]:
    """Submission cell index -> the reference check it is, (question, k); None: an extra copy, dropped."""
    tag_of_id = {check.id: (q.number, k) for q in questions.values() for k, check in enumerate(q.checks)}
    matched: dict[int, tuple[str, int] | None] = {}
    for i, cell in enumerate(submission.cells):
        tag = tag_of_id.get(cell.get("id"))
        if tag and tag not in matched.values() and cell.cell_type == "code":
            matched[i] = tag
    for number, question in questions.items():  # the fallback: by the "# Question N" line
        todo = [k for k in range(len(question.checks)) if (number, k) not in matched.values()]
        for i, cell in enumerate(submission.cells):
            if i not in matched and question_of(cell) == number:
                matched[i] = (number, todo.pop(0)) if todo else None
    for i, tag in matched.items():
        if tag and submission.cells[i].source.strip() != questions[tag[0]].checks[tag[1]].source.strip():
            notes[tag] = [EDITED]
    return matched


def _insert_position(cells: list[tuple], submission: NotebookNode, reference: NotebookNode,
                     check: NotebookNode, later: list[str]) -> int:
    """Where a deleted check cell goes in ``cells`` (``(cell, tag, origin)`` triples)."""
    ids = [submission.cells[origin].get("id") if origin is not None else None for _, _, origin in cells]
    ref_ids = [cell.get("id") for cell in reference.cells]
    if check.id in ref_ids:
        for ref_id in reversed(ref_ids[:ref_ids.index(check.id)]):
            if ref_id and ref_id in ids:
                position = ids.index(ref_id) + 1
                while position < len(cells) and cells[position][2] is None:
                    position += 1  # cells restored at the same place stay in reference order
                return position
    for position, (cell, _, _) in enumerate(cells):  # no ids: before the next question's heading
        heading = HEADING.search(cell.source) if cell.cell_type == "markdown" else None
        if heading and heading.group(1) in later:
            return position
    return len(cells)


def build_graded_notebook(submission: NotebookNode, questions: dict[str, Question],
                          reference: NotebookNode | None = None) -> Graded:
    """The notebook to run: the submission with the reference's check cells in place (module docstring)."""
    check_sources(submission)
    reference = reference or nbformat.v4.new_notebook()
    notes: dict[tuple[str, int], list[str]] = {}
    matched = _match(submission, questions, notes)
    cells = [(questions[matched[i][0]].checks[matched[i][1]] if matched.get(i) else cell, matched.get(i), i)
             for i, cell in enumerate(submission.cells) if not (i in matched and matched[i] is None)]
    numbers = list(questions)
    for n, (number, question) in enumerate(questions.items()):
        for k, check in enumerate(question.checks):
            if (number, k) not in matched.values():
                position = _insert_position(cells, submission, reference, check, numbers[n + 1:])
                cells.insert(position, (check, (number, k), None))
                notes[(number, k)] = [DELETED]
    graded = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
    tags, origins = [], []
    for index, (cell, tag, origin) in enumerate(cells):
        copy = nbformat.from_dict({**cell, "id": f"graded-{index}"})
        if copy.cell_type == "code":
            if tag is None:
                copy.outputs, copy.execution_count = [], None
            tags.append(tag)
            origins.append(origin)
        graded.cells.append(copy)
    return Graded(graded, tags, origins, notes)


def defined_later(graded: NotebookNode, code_index: int, name: str) -> int | None:
    """The index (among code cells) of the first cell after ``code_index`` that defines ``name``."""
    code_cells = [cell for cell in graded.cells if cell.cell_type == "code"]
    for j in range(code_index + 1, len(code_cells)):
        if name in {a or b for a, b in DEFINITION.findall(code_cells[j].source)}:
            return j
    return None
