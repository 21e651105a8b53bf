"""The lessons used as students use them: JupyterLab in a real headless Chromium.

`tools/lab_driver.py` starts ``jupyter lab`` in the repository (kernel in the ``ci`` profile, the
venv's Python, started in its notebook's folder as always), opens a notebook, clears it, runs all
cells from the Run menu (Run > Run All Cells, as a student does) and reads every cell's outputs
from the notebook model; a screenshot lands in ``results/browser/<notebook>.png`` even when the run
fails. The lesson run is an untouched student copy: its unanswered questions must each print one
line and Run All must reach the last cell. To keep CI short, one lesson runs (nbval runs every
solution notebook). Without Chromium or the playwright package these tests skip, unless
``COURSE_REQUIRE_BROWSER=1`` (set by CI), where they fail.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tools import lab_driver

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "results" / "browser"
# An untouched student copy of a training lesson (its questions unanswered).
LESSONS = [name for name in ("student/01_vgg16_cifar10.ipynb",) if (NOTEBOOKS / name).exists()]
# Seconds for Run All (default 240): lesson 01 trains, minutes on a busy 2-core machine even in ci.
RUN_SECONDS = {"student/01_vgg16_cifar10.ipynb": 600.0}
UNANSWERED = re.compile(r"^Question (\S+): not answered yet \(.+ raises NotImplementedError\)$", re.MULTILINE)


def require_browser() -> None:
    """Skip when Chromium or playwright is missing; fail instead under COURSE_REQUIRE_BROWSER=1."""
    reason = lab_driver.missing_requirements()
    if reason is None:
        return
    if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"COURSE_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (None when it cannot run: the test then skips)."""
    if lab_driver.missing_requirements():
        yield None
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = lab_driver.launch_browser(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``jupyter lab`` on the repository, in the ci profile, shared by the tests of this module."""
    if lab_driver.missing_requirements():
        yield None
        return
    checkpoints = tmp_path_factory.mktemp("checkpoints")  # train from scratch, outside the repo
    env = {"COURSE_PROFILE": "ci", "COURSE_CHECKPOINTS": str(checkpoints),
           "COURSE_RESULTS": str(tmp_path_factory.mktemp("results"))}
    with lab_driver.LabServer(ROOT, env=env) as server:
        yield server


def assert_ran_to_the_end(name: str, result: lab_driver.RunResult) -> None:
    """Run All reached the notebook's last code cell and no cell raised."""
    assert not result.errors, (f"{name} raised in JupyterLab (screenshot {result.screenshot}):\n"
                               + "\n".join(str(error) for error in result.errors))
    assert not result.not_run, f"{name}: code cells {result.not_run} never ran"
    assert result.code_cells > 0
    assert result.last_code_cell not in result.not_run and result.ran_to_the_end, (
        f"{name}: the last code cell (cell {result.last_code_cell}) did not run")


@pytest.mark.parametrize("name", LESSONS)
def test_untouched_student_copy_runs_all_to_its_last_cell(name, browser, lab):
    require_browser()
    result = lab_driver.run_notebook(browser, lab, f"notebooks/{name}", OUT,
                                     timeouts={"run": RUN_SECONDS.get(name, 240.0)})

    assert_ran_to_the_end(name, result)
    unanswered = [UNANSWERED.findall(text) for text in result.stdout.values()]
    assert ["1"] in unanswered, f"{name}: no 'Question 1: not answered yet (...)' line"
    assert sum(len(numbers) for numbers in unanswered) >= 2, "each unanswered question says so"
    assert result.kernel["profile"] == "ci"
    assert Path(result.kernel["prefix"]).resolve() == Path(sys.prefix).resolve(), (
        f"the kernel runs {result.kernel['executable']}, not this environment's Python")
    assert result.screenshot is not None and result.screenshot.stat().st_size > 10_000
    # Autosave off: the lab never writes a notebook (read from the server's log, not the file's
    # bytes, since other people may edit the notebook meanwhile).
    assert lab.writes() == [], "the lab wrote files:\n" + "\n".join(lab.writes())
    # Opening a student copy changes no metadata but the kernel's language_info (its Python version;
    # a kernelspec other than ipykernel's own marked every copy unsaved as soon as it opened).
    assert result.metadata_changes in ([], ["language_info"]), result.metadata_changes


def test_error_output_is_reported_with_its_cell(browser, lab):
    """A cell that raises is caught (stderr alone is not an error) and later cells never run."""
    require_browser()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # A throw-away folder the server can see: under the git-ignored results/, removed afterwards.
    tmp = tempfile.TemporaryDirectory(prefix="planted_", dir=OUT.parent)
    nb = new_notebook(cells=[
        new_markdown_cell("# A notebook with a planted error"),
        new_code_cell('import sys\nprint("only a warning", file=sys.stderr)'),
        new_code_cell('raise ValueError("planted failure")'),
        new_code_cell('print("never runs")'),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    with tmp:
        nbformat.write(nb, Path(tmp.name) / "planted_error.ipynb")
        path = (Path(tmp.name) / "planted_error.ipynb").relative_to(ROOT).as_posix()
        result = lab_driver.run_notebook(browser, lab, path, OUT)

    assert [(e.index, e.ename, e.evalue) for e in result.errors] == [(2, "ValueError", "planted failure")]
    assert result.not_run == [3]
    assert result.last_code_cell == 3 and not result.ran_to_the_end
    # Its kernelspec names "Python 3", not ipykernel's "Python 3 (ipykernel)": JupyterLab rewrites it
    # on open and shows the unsaved-changes mark (student copies use release.KERNELSPEC instead).
    assert result.metadata_changes == ["kernelspec", "language_info"] and result.dirty_on_open
    with pytest.raises(AssertionError, match="raised in JupyterLab"):  # the lesson test's check fails
        assert_ran_to_the_end("planted_error.ipynb", result)
    result.errors = []  # even when an error escaped the report, the unrun last cell fails it
    with pytest.raises(AssertionError, match=r"code cells \[3\] never ran"):
        assert_ran_to_the_end("planted_error.ipynb", result)
    assert result.screenshot == OUT / "planted_error.png"


def test_missing_chromium_skips_or_fails_under_ci(monkeypatch):
    monkeypatch.setenv("COURSE_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("COURSE_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        require_browser()
    monkeypatch.setenv("COURSE_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="COURSE_REQUIRE_BROWSER=1"):
        require_browser()
