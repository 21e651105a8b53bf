"""The lessons used as students use them: JupyterLab in a real headless Chromium.

`tools/lab_driver.py` starts ``jupyter lab`` in the repository (kernel in the ``ci`` profile, the
venv's Python, started in its notebook's folder as always), opens each notebook, clears it, runs
all cells from the Run menu and reads every cell's outputs from the notebook model; a screenshot
lands in ``results/browser/<notebook>.png`` even when the run fails. Without Chromium or the playwright package these tests skip, unless
``COURSE_REQUIRE_BROWSER=1`` (set by CI), where they fail.
"""

from __future__ import annotations

import os
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
# Setup plus one training lesson; a lesson not written yet is left out.
LESSONS = [name for name in ("00_setup.ipynb", "01_vgg16_cifar10.ipynb") if (NOTEBOOKS / name).exists()]
# Seconds for Run All (default 240): lesson 01 trains, minutes on a busy 2-core machine even in ci.
RUN_SECONDS = {"01_vgg16_cifar10.ipynb": 600.0}


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
    env = {"COURSE_PROFILE": "ci", "COURSE_CHECKPOINTS": str(checkpoints)}
    with lab_driver.LabServer(ROOT, env=env) as server:
        yield server


@pytest.mark.parametrize("name", LESSONS)
def test_notebook_runs_in_jupyterlab_without_errors(name, browser, lab):
    require_browser()
    result = lab_driver.run_notebook(browser, lab, f"notebooks/{name}", OUT,
                                     timeouts={"run": RUN_SECONDS.get(name, 240.0)})

    assert not result.errors, (f"{name} raised in JupyterLab (screenshot {result.screenshot}):\n"
                               + "\n".join(str(error) for error in result.errors))
    assert not result.not_run, f"{name}: code cells {result.not_run} never ran"
    assert result.code_cells > 0
    assert result.kernel["profile"] == "ci"
    assert Path(result.kernel["prefix"]).resolve() == Path(sys.prefix).resolve(), (
        f"the kernel runs {result.kernel['executable']}, not this environment's Python")
    assert result.screenshot is not None and result.screenshot.stat().st_size > 10_000
    # Autosave off: the lab never writes a notebook (read from the server's log, not the file's
    # bytes, since other people may edit the notebook meanwhile).
    assert lab.writes() == [], "the lab wrote files:\n" + "\n".join(lab.writes())


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
    assert result.screenshot == OUT / "planted_error.png"


def test_missing_chromium_skips_or_fails_under_ci(monkeypatch):
    monkeypatch.setenv("COURSE_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("COURSE_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        require_browser()
    monkeypatch.setenv("COURSE_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="COURSE_REQUIRE_BROWSER=1"):
        require_browser()
