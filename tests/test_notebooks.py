"""The lesson notebooks as a set: shared first cells, fresh student copies, checks that bite.

The solution notebooks themselves run under nbval (``pytest notebooks --nbval-lax``); these tests
cover what nbval cannot see: that every lesson starts the same way, that the committed student
copies are what ``release`` makes today, and that each student copy fails exactly its check cells.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from course_utils import grade, release

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STUDENT = NOTEBOOKS / "student"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _ids(paths):
    return [p.name for p in paths]


def test_there_are_lessons():
    assert LESSONS, "no lesson notebooks found"


@pytest.mark.parametrize("path", LESSONS, ids=_ids(LESSONS))
def test_lesson_starts_with_badge_and_install_guard(path):
    nb = nbformat.read(path, as_version=4)
    first, second = nb.cells[0], nb.cells[1]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert release.colab_badge(f"notebooks/{path.name}", ROOT) in first.source, "badge must point at this notebook"
    assert "profile" in first.source.lower(), "the first cell states the expected result per profile"
    assert second.cell_type == "code" and second.source == release.install_guard_source(ROOT)


def test_repository_url_is_written_once():
    """Badges and the install guard derive from pyproject.toml; no other URL of the repo is typed."""
    github, _ = release.repository(ROOT)
    for path in LESSONS:
        text = path.read_text()
        for found in re.findall(r"github(?:\.com)?/([\w.-]+/[\w.-]+)", text):
            assert found in (github, "googlecolab/colabtools"), f"{path.name} names another repository: {found}"


def test_student_copies_are_fresh():
    problems = release.release_folder(NOTEBOOKS, STUDENT, check=True)
    assert problems == [], "run: python -m course_utils.release\n" + "\n".join(problems)


def _graded_cells(nb) -> list[int]:
    """Check cells that belong to a question (a lesson may also check a fact, ungraded)."""
    return [i for i, cell in enumerate(nb.cells) if release.is_check_cell(cell) and grade.question_of(cell)]


@pytest.mark.parametrize("path", sorted(STUDENT.glob("[0-9][0-9]_*.ipynb")),
                         ids=_ids(sorted(STUDENT.glob("[0-9][0-9]_*.ipynb"))))
def test_student_copy_fails_exactly_its_check_cells(path, tmp_path, monkeypatch):
    """A released copy, run as submitted, loses every question and breaks nothing else."""
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))  # train here; never load the repo's checkpoints
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "results"))
    result = grade.grade(path, NOTEBOOKS, timeout=300)
    assert result.total > 0
    assert result.score == 0, grade.format_table(result)
    assert all(not q.passed for q in result.questions)
    reference = nbformat.read(NOTEBOOKS / path.name, as_version=4)
    failed_checks = [f for f in result.failed_cells if f["question"]]
    assert len(failed_checks) == len(_graded_cells(reference)), result.failed_cells
    assert all(f["question"] for f in result.failed_cells), (
        "a non-check cell failed in the student copy (it must run with the reference models):\n"
        + "\n".join(str(f) for f in result.failed_cells if not f["question"]))


def test_readme_colab_badges_follow_the_repository_url():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"https://colab\.research\.google\.com/github/[^)\s]+", readme)
    assert links, "the README has no Colab badges"
    prefix = release.colab_url("", ROOT)  # .../github/OWNER/NAME/blob/BRANCH/ (a branch may hold "/")
    for link in links:
        assert link.startswith(prefix), f"{link} does not follow pyproject.toml's repository URL"
        path = link.removeprefix(prefix)
        assert (ROOT / path).is_file(), f"the README links to {path}, which does not exist"
