"""course_utils.release: solution notebooks -> student copies (toy notebooks, no kernel)."""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import nb_helpers as nbh
from course_utils import release

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture
def source(tmp_path):
    """A notebooks/ folder holding the toy solution lesson 01_toy.ipynb."""
    nbh.write(nbh.toy_solution(), tmp_path / "notebooks" / "01_toy.ipynb")
    return tmp_path / "notebooks"


def test_strip_solutions_replaces_region_at_marker_indentation():
    assert release.strip_solutions(nbh.SCALE) == "\n".join([
        "def scale(xs: list[int], k: int) -> list[int]:",
        '    """Each element of xs times k: (n,) -> (n,)."""',
        "    out = []",
        "    for x in xs:",
        "        # YOUR CODE HERE",
        "        raise NotImplementedError()",
        "    return out",
    ])
    assert release.strip_solutions("x = 1\n### BEGIN SOLUTION\ny = 2\nz = 3\n### END SOLUTION\nprint(x)") == \
        "x = 1\n# YOUR CODE HERE\nraise NotImplementedError()\nprint(x)"
    assert release.strip_solutions("print('no markers')") == "print('no markers')"


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "line 1: '### BEGIN SOLUTION' is never closed"),
    ("x = 1\n### END SOLUTION", "line 2: '### END SOLUTION' without"),
    ("### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n### END SOLUTION", "line 2: nested"),
    ("x = 1  ### BEGIN SOLUTION\n### END SOLUTION", "line 1: a solution marker must be a line of its own"),
])
def test_strip_solutions_rejects_unbalanced_or_nested_markers(source, message):
    with pytest.raises(ValueError, match=message):
        release.strip_solutions(source)


def test_release_clears_outputs_except_on_check_cells():
    solution = nbh.toy_solution()
    student = release.release_notebook(solution)
    for cell_id in ("imports", "add", "train"):
        assert nbh.cell(student, cell_id).outputs == []
        assert nbh.cell(student, cell_id).execution_count is None
    for cell_id in ("probe", "check-add", "check-scale", "check-scale-len", "check-greet", "check-square"):
        assert nbh.cell(student, cell_id).outputs == nbh.cell(solution, cell_id).outputs
        assert nbh.cell(student, cell_id).execution_count == nbh.cell(solution, cell_id).execution_count
    assert "return a + b" not in nbh.cell(student, "add").source
    assert nbh.cell(solution, "imports").outputs, "the source notebook must not be modified"


def test_release_keeps_cell_ids_and_minimal_metadata():
    solution = nbh.toy_solution()
    solution.metadata["accelerator"] = "GPU"
    solution.cells[1].metadata = {"tags": ["raises-exception"], "collapsed": True}
    student = release.release_notebook(solution)
    assert [c.id for c in student.cells] == [c.id for c in solution.cells]
    assert student.metadata == {"kernelspec": release.KERNELSPEC, "language_info": {"name": "python"},
                                "accelerator": "GPU"}
    assert student.metadata["kernelspec"]["name"] == "python3"
    assert student.cells[1].metadata == {"tags": ["raises-exception"]}


def test_release_points_badges_at_student_copies_and_fixes_relative_links():
    title = release.release_notebook(nbh.toy_solution()).cells[0].source
    _, branch = release.repository(ROOT)
    assert f"blob/{branch}/notebooks/student/01_toy.ipynb)" in title
    assert "![diagram](../../assets/toy.png)" in title
    markdown = "[next](02_unet.ipynb) [top](#goal) [repo](https://github.com/x/y/blob/main/notebooks/02_unet.ipynb)"
    assert release.relink(markdown) == markdown.replace("/notebooks/02", "/notebooks/student/02")


def test_release_cli_is_byte_identical_on_second_run_and_check_passes(source, capsys):
    assert release.main(["--source", str(source)]) == 0
    copy = source / "student" / "01_toy.ipynb"
    first = copy.read_bytes()
    assert first.endswith(b"}\n") and b"\r\n" not in first
    assert release.main(["--source", str(source)]) == 0
    assert copy.read_bytes() == first
    assert release.main(["--source", str(source), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    nbformat.validate(nbformat.read(copy, as_version=4))


def test_check_lists_stale_missing_and_orphan_copies_and_writes_nothing(source, capsys):
    dest = source / "student"
    assert release.main(["--source", str(source), "--check"]) == 1
    assert f"missing: {dest / '01_toy.ipynb'}" in capsys.readouterr().out
    assert not dest.exists()

    release.main(["--source", str(source)])
    solution = nbformat.read(source / "01_toy.ipynb", as_version=4)
    solution.cells[3].source += "\nA new sentence."
    nbh.write(solution, source / "01_toy.ipynb")
    nbh.write(nbh.toy_solution(), dest / "09_old.ipynb")
    stale = (dest / "01_toy.ipynb").read_bytes()
    capsys.readouterr()
    assert release.main(["--source", str(source), "--check"]) == 1
    out = capsys.readouterr().out
    assert f"stale: {dest / '01_toy.ipynb'}" in out and f"no source for {dest / '09_old.ipynb'}" in out
    assert (dest / "01_toy.ipynb").read_bytes() == stale

    assert release.main(["--source", str(source)]) == 0
    assert not (dest / "09_old.ipynb").exists()
    assert release.main(["--source", str(source), "--check"]) == 0


def test_unbalanced_markers_fail_the_cli_naming_notebook_and_cell(source):
    solution = nbformat.read(source / "01_toy.ipynb", as_version=4)
    nbh.cell(solution, "greet").source = nbh.GREET.replace("    ### END SOLUTION", "")
    nbh.write(solution, source / "01_toy.ipynb")
    run = subprocess.run([sys.executable, "-m", "course_utils.release", "--source", str(source)],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert "01_toy.ipynb, cell 12 ('def greet(name: str) -> str:')" in run.stderr
    assert "'### BEGIN SOLUTION' is never closed" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (source / "student").exists()


def test_raw_cells_lose_their_solutions_too():
    solution = nbh.toy_solution()
    solution.cells.append(nbformat.v4.new_raw_cell("Answer:\n### BEGIN SOLUTION\n42\n### END SOLUTION", id="raw"))
    solution.cells.append(nbformat.v4.new_raw_cell("plain raw text", id="plain"))
    student = release.release_notebook(solution)
    assert nbh.cell(student, "raw").source == "Answer:\nYOUR ANSWER HERE"
    assert nbh.cell(student, "plain").source == "plain raw text"
    nbh.cell(solution, "raw").source = "42  ### BEGIN SOLUTION"  # would leak: refused, naming the cell
    with pytest.raises(release.ReleaseError, match="cell 17 .*a solution marker must be a line of its own"):
        release.release_notebook(solution, name="01_toy.ipynb")


# A fork: release --repo rewrites every link -------------------------------------------------------


@pytest.fixture
def checkout(tmp_path):
    """A copy of the repository's committed files (what an instructor's fork holds)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if files.returncode != 0:
        pytest.skip("not a git checkout")
    copy = tmp_path / "fork"
    for name in filter(None, files.stdout.split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


def test_release_repo_rewrites_every_link_of_a_fork(checkout):
    repo, _ = release.repository(checkout)  # the repository the course names today
    run = subprocess.run([sys.executable, "-m", "course_utils.release", "--repo", "someone/fork",
                          "--branch", "dev"], cwd=checkout, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert release.repository(checkout) == ("someone/fork", "dev")
    left = [str(path.relative_to(checkout)) for path in sorted(checkout.rglob("*"))
            if path.is_file() and repo in path.read_text(encoding="utf-8", errors="replace")]
    assert left == [], f"{repo} is still named in {left}"
    # Every badge and install cell is the fork's; the student copies were remade from them.
    readme = (checkout / "README.md").read_text()
    assert readme.count("https://colab.research.google.com/github/someone/fork/blob/dev/notebooks/student/") >= 8
    for path in sorted((checkout / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for copy, name in ((path, f"notebooks/{path.name}"), (path.parent / "student" / path.name,
                                                                f"notebooks/student/{path.name}")):
            nb = nbformat.read(copy, as_version=4)
            assert release.colab_badge(name, checkout) in nb.cells[0].source, copy
            assert nb.cells[1].source == release.install_guard_source(checkout), copy
            assert "git+https://github.com/someone/fork@dev" in nb.cells[1].source
    assert release.main(["--source", str(checkout / "notebooks"), "--check"]) == 0
    # Running it again changes nothing.
    assert release.set_repository("someone/fork", "dev", checkout) == []


def test_release_repo_sets_the_branch_of_tool_course_only(tmp_path):
    """A [tool.course] without a branch line gets one; another table's ``branch`` is left alone."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "c"\n[project.urls]\nRepository = "https://github.com/a/b"\n\n'
        '[tool.course]\nother = 1\n\n[tool.other]\nbranch = "keep"\n')
    release.set_repository("someone/fork", "dev", tmp_path)
    assert release.repository(tmp_path) == ("someone/fork", "dev")
    assert 'branch = "keep"' in (tmp_path / "pyproject.toml").read_text()


@pytest.mark.parametrize("repo, branch, message", [
    ("just-a-name", "main", "OWNER/NAME"), ("https://github.com/a/b", "main", "OWNER/NAME"),
    ("a/b", "no spaces", "not a branch name")])
def test_release_repo_refuses_what_is_not_a_repository(tmp_path, repo, branch, message):
    with pytest.raises(release.ReleaseError, match=message):
        release.set_repository(repo, branch, tmp_path)


def _run_install_guard(tmp_path, colab: bool, importable: bool, source: str | None = None):
    """Run the install cell in a fresh Python, as Colab would (``google.colab`` imported)."""
    code = release.install_guard_source(ROOT)
    if source is not None:  # a source pip fails on at once, as an offline git URL does after a while
        code = code.replace(code.split('source = "', 1)[1].split('"', 1)[0], source)
    prelude = ["import sys, types, importlib.util"]
    if colab:
        prelude.append("sys.modules['google.colab'] = types.ModuleType('google.colab')")
    if not importable:
        prelude.append("real = importlib.util.find_spec\n"
                       "importlib.util.find_spec = lambda n, *a: None if n == 'course_utils' else real(n, *a)")
    return subprocess.run([sys.executable, "-c", "\n".join(prelude) + "\n" + code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_install_cell_does_nothing_outside_colab_or_when_the_package_is_there(tmp_path):
    for colab, importable in ((False, False), (True, True)):
        run = _run_install_guard(tmp_path, colab, importable, source=str(tmp_path / "missing"))
        assert (run.returncode, run.stdout, run.stderr) == (0, "", ""), (colab, importable)


def test_install_cell_that_fails_says_so_in_one_line(tmp_path):
    run = _run_install_guard(tmp_path, colab=True, importable=False, source=str(tmp_path / "missing"))
    assert run.returncode == 0 and run.stderr == ""
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Could not install the course helpers from"), run.stdout
    assert "restart" not in run.stdout.lower()
