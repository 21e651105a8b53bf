"""Run All on an untouched student copy reaches the last cell (issue 16.1).

A student who opens ``notebooks/student/NN_*.ipynb`` and runs everything before answering anything
must see the whole lesson run: training, plots, later checks. Colab ignores cell tags, so no tag
may be what keeps a stub's ``NotImplementedError`` from stopping the notebook: each check cell
reports it in one line (``checks.question``), and every other cell uses the reference models.

Each copy is executed as Run All does, cell after cell, in the ``ci`` profile, with checkpoints
and results in a temporary folder. One kernel serves every lesson (its namespace is reset between
lessons): a kernel start plus ``import torch`` costs seconds, and lessons share nothing else.
The browser test (``test_jupyterlab_browser``) covers JupyterLab itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

STUDENT = Path(__file__).resolve().parents[1] / "notebooks" / "student"
LESSONS = sorted(STUDENT.glob("[0-9][0-9]_*.ipynb"))
NOT_ANSWERED = re.compile(r"^Question (\d+): not answered yet \(\S+ raises NotImplementedError\)$", re.M)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One ci-profile kernel, started in the student folder, writing only to a temporary folder."""
    folder = tmp_path_factory.mktemp("run_all")
    env = {**os.environ, "COURSE_PROFILE": "ci", "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),  # tiny models: see tools/course.sh test
           "COURSE_CHECKPOINTS": str(folder / "checkpoints"), "COURSE_RESULTS": str(folder / "results")}
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(STUDENT), env=env)
    yield manager
    manager.shutdown_kernel(now=True)


def run_all(path: Path, manager: KernelManager) -> nbformat.NotebookNode:
    """Execute every cell of ``path`` in order, as Run All does, on a fresh namespace; keep going on
    errors (to report them all) and return the executed notebook."""
    nb = nbformat.read(path, as_version=4)
    reset = nbformat.v4.new_code_cell("%reset -f")
    nb.cells.insert(0, reset)
    client = NotebookClient(nb, km=manager, timeout=600, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(STUDENT)}})
    client.execute()
    nb.cells.remove(reset)
    return nb


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    return [f"cell {i}: {output.ename}: {output.evalue}" for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" for output in cell.outputs if output.output_type == "error"]


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


@pytest.mark.parametrize("path", LESSONS, ids=[p.name[:2] for p in LESSONS])
def test_untouched_student_copy_runs_to_the_last_cell(path, kernel):
    nb = run_all(path, kernel)
    assert _errors(nb) == [], f"{path.name}: Run All would stop here"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code[-1].execution_count is not None, f"{path.name}: the last cell did not run"
    for cell in code:
        question = re.search(r"^# Question (\d+)$", cell.source, re.M)
        if "NBVAL_CHECK_OUTPUT" in cell.source and question:
            printed = _stdout(cell)
            found = NOT_ANSWERED.findall(printed)
            assert found == [question.group(1)], (
                f"{path.name}: the check cell of Question {question.group(1)} printed {printed!r}, not one "
                f"'Question {question.group(1)}: not answered yet (... raises NotImplementedError)' line")
