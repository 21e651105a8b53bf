"""Tiny toy lesson notebooks for the release and grade tests, built with nbformat.

The toy lesson looks like a real one: a title with a Colab badge, an import cell, an ungraded
shape-probe check cell, then four questions, each a ``### Question N: name (P pts)`` heading,
a typed function with ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` inside, and check cells
(``# NBVAL_CHECK_OUTPUT`` / ``# Question N``) whose stored output is the answer.
Question 2 has two check cells with a non-check cell between them.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_utils import release

# The course's own badge (repository and branch from pyproject.toml), with {name} to fill in.
BADGE = release.colab_badge("notebooks/{name}", Path(__file__).resolve().parents[1])

# Full marks of the toy lesson: Q1 1 pt, Q2 2 pts, Q3 1 pt, Q4 1 pt.
TOTAL_POINTS = 5


def stdout(text: str) -> NotebookNode:
    """A stored ``print`` output."""
    return new_output("stream", name="stdout", text=text)


def code(cell_id: str, source: str, outputs: list | None = None,
         execution_count: int | None = None) -> NotebookNode:
    return new_code_cell(source, id=cell_id, outputs=outputs or [], execution_count=execution_count)


def markdown(cell_id: str, source: str) -> NotebookNode:
    return new_markdown_cell(source, id=cell_id)


def check(cell_id: str, question: str | None, body: str, answer: str, execution_count: int) -> NotebookNode:
    """A check cell: the nbval marker, the question line, the body and its stored answer."""
    lines = ["# NBVAL_CHECK_OUTPUT"] + ([f"# Question {question}"] if question else []) + [body]
    return code(cell_id, "\n".join(lines), [stdout(answer + "\n")], execution_count)


ADD = '''def add(a: int, b: int) -> int:
    """Sum of two ints."""
    ### BEGIN SOLUTION
    return a + b
    ### END SOLUTION'''

SCALE = '''def scale(xs: list[int], k: int) -> list[int]:
    """Each element of xs times k: (n,) -> (n,)."""
    out = []
    for x in xs:
        ### BEGIN SOLUTION
        out.append(k * x)
        ### END SOLUTION
    return out'''

GREET = '''def greet(name: str) -> str:
    """A greeting for name."""
    ### BEGIN SOLUTION
    return f"hello {name}"
    ### END SOLUTION'''

SQUARE = '''def square(x: int) -> int:
    """x squared."""
    ### BEGIN SOLUTION
    return x * x
    ### END SOLUTION'''


def toy_solution(name: str = "01_toy.ipynb") -> NotebookNode:
    """The solution notebook of the toy lesson, saved as if executed (outputs everywhere)."""
    cells = [
        markdown("title", f"# 01 Toy lesson\n\n{BADGE.format(name=name)}\n\n![diagram](../assets/toy.png)"),
        code("imports", 'from course_utils import checks\nprint("imported")', [stdout("imported\n")], 1),
        check("probe", None, 'print(len("abc"))', "3", 2),
        markdown("q1", "### Question 1: add (1 pt)\n\nReturn the sum."),
        code("add", ADD, [], 3),
        check("check-add", "1", 'checks.check_equal(add(2, 3), 5, "add(2, 3)")', "PASS add(2, 3) 5", 4),
        markdown("q2", "### Question 2: scale (2 pts)"),
        code("scale", SCALE, [], 5),
        check("check-scale", "2", 'checks.check_equal(scale([1, 2], 3), [3, 6], "scale([1, 2], 3)")',
              "PASS scale([1, 2], 3) [3, 6]", 6),
        code("train", 'history = [1, 2, 3]\nhistory', [new_output(
            "execute_result", data={"text/plain": "[1, 2, 3]"}, execution_count=7)], 7),
        check("check-scale-len", "2", 'checks.check_equal(len(scale([0] * 4, 1)), 4, "length")',
              "PASS length 4", 8),
        markdown("q3", "### Question 3: greet (1 pt)"),
        code("greet", GREET, [], 9),
        check("check-greet", "3", 'checks.check_equal(greet("Ada"), "hello Ada", "greet")',
              "PASS greet 'hello Ada'", 10),
        markdown("q4", "### Question 4: square (1 pt)"),
        code("square", SQUARE, [], 11),
        check("check-square", "4", 'checks.check_equal(square(7), 49, "square(7)")', "PASS square(7) 49", 12),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "version": "3.11.7", "mimetype": "text/x-python"},
        "widgets": {"state": {}},
    }
    return nb


# A torch-free stand-in for course_utils.checks.check_equal, printing the same PASS/FAIL lines:
# its kernel starts in a second, so that a test can bound each cell to a few seconds.
LIGHT_CHECKS = '''class checks:  # stands in for course_utils.checks (no torch import)
    @staticmethod
    def check_equal(got, expected, name="value"):
        ok = got == expected
        print(f"PASS {name} {expected!r}" if ok else f"FAIL got {name} {got!r} expected {name} {expected!r}")
print("imported")'''


def light_solution(name: str = "01_toy.ipynb") -> NotebookNode:
    """The toy solution notebook with ``LIGHT_CHECKS`` in place of its import cell."""
    nb = toy_solution(name)
    cell(nb, "imports").source = LIGHT_CHECKS
    return nb


def cell(nb: NotebookNode, cell_id: str) -> NotebookNode:
    """The cell of ``nb`` with this id."""
    return next(c for c in nb.cells if c.get("id") == cell_id)


def write(nb: NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def answer(nb: NotebookNode, cell_id: str, code: str) -> None:
    """Fill in the stub of a student copy's cell (``code`` replaces the stub's two lines)."""
    cell_ = cell(nb, cell_id)
    lines = cell_.source.split("\n")
    start = next(i for i, line in enumerate(lines) if line.strip() == "# YOUR CODE HERE")
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    cell_.source = "\n".join(lines[:start] + [indent + code] + lines[start + 2:])


def delete(nb: NotebookNode, cell_id: str) -> None:
    nb.cells.remove(cell(nb, cell_id))
