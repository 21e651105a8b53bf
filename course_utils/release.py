"""Make the student copies of the lesson notebooks: ``python -m course_utils.release``.

The solution notebooks ``notebooks/NN_*.ipynb`` are the only source. Each one becomes
``notebooks/student/NN_*.ipynb``, where

- every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region becomes nbgrader's stub,
  ``# YOUR CODE HERE`` / ``raise NotImplementedError()``, at the marker's indentation (in markdown
  and raw cells: ``YOUR ANSWER HERE``; a raw cell, like a code cell, may not mention a marker
  inside a longer line, which would leak a solution);
- outputs and execution counts are cleared, except on ``# NBVAL_CHECK_OUTPUT`` cells: their
  stored output is the expected answer that nbval compares against;
- Colab badges and other links to ``notebooks/NN_x.ipynb`` point at ``notebooks/student/NN_x.ipynb``,
  and relative links (``../assets/x.png``) get one more ``../`` (the copy sits one folder deeper);
- metadata is reduced to ipykernel's kernelspec ``python3`` (plus Colab's keys), cell ids are the source's.

The output is deterministic: running it twice gives byte-identical files, so
``python -m course_utils.release --check`` (CI) can fail when a committed copy is stale.

A fork of the course: ``python -m course_utils.release --repo OWNER/NAME [--branch B]`` writes the
new repository into ``pyproject.toml`` (its one home: ``[project.urls] Repository`` and
``[tool.course] branch``), rewrites everything made from it (the README's Colab badges, every
lesson's badge and Colab install cell), then makes the student copies.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")  # nbgrader's ClearSolutions default
TEXT_STUB = ("YOUR ANSWER HERE",)  # nbgrader's stub for markdown answers
CHECK_MARKER = "NBVAL_CHECK_OUTPUT"
LESSON_GLOB = "[0-9][0-9]_*.ipynb"
# ipykernel's own spec: JupyterLab writes the kernel's display name into a notebook that names
# another one, which put an unsaved-changes mark on every student copy as soon as it opened.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
KEPT_METADATA = ("accelerator", "colab")  # Colab reads these to open the copy on a GPU runtime

_MARKER_LINE = re.compile(r"^(\s*)#+\s*(BEGIN|END) SOLUTION\s*$")
_NOTEBOOK_URL = re.compile(r"/notebooks/(\d\d_[^/\s)\"'<>]+\.ipynb)")
_MD_LINK = re.compile(r"(\]\(\s*<?|(?:src|href)=[\"'])([^)\s\"'>]+)")
_URL_SCHEME = re.compile(r"^[A-Za-z][\w+.-]*:")
_SIBLING_LESSON = re.compile(r"^\d\d_[^/]*\.ipynb(#.*)?$")


INSTALL_GUARD_MARK = "# Colab only: install the course helpers"  # first line of every lesson's 2nd cell
_REPO_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")
_BRANCH_NAME = re.compile(r"^[\w./-]+$")
_COLAB_PREFIX = "https://colab.research.google.com/github/"
# Files that hold links made from the repository URL (besides the lessons and pyproject.toml).
LINKED_FILES = ("README.md",)


class ReleaseError(ValueError):
    """A solution notebook cannot be turned into a student copy (e.g. unbalanced markers)."""


def strip_solutions(source: str, stub: tuple[str, ...] = CODE_STUB, strict: bool = True) -> str:
    """Replace each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region by ``stub``, indented
    like the BEGIN line. Raises ``ValueError`` on unbalanced or nested markers (with the line);
    ``strict`` also refuses "BEGIN SOLUTION" inside a longer line, which would leak a solution."""
    out: list[str] = []
    begin_line = None  # 1-based line of the open BEGIN marker, None outside a solution
    for number, line in enumerate(source.split("\n"), start=1):
        match = _MARKER_LINE.match(line)
        if strict and match is None and ("BEGIN SOLUTION" in line or "END SOLUTION" in line):
            raise ValueError(f"line {number}: a solution marker must be a line of its own, "
                             f"exactly '{BEGIN}' or '{END}' (got {line.strip()!r})")
        if match and match.group(2) == "BEGIN":
            if begin_line is not None:
                raise ValueError(f"line {number}: nested '{BEGIN}' (the one on line {begin_line} "
                                 f"is not closed); add '{END}' before opening another")
            begin_line = number
            out.extend(match.group(1) + stub_line for stub_line in stub)
        elif match:  # END
            if begin_line is None:
                raise ValueError(f"line {number}: '{END}' without a '{BEGIN}' before it")
            begin_line = None
        elif begin_line is None:
            out.append(line)
    if begin_line is not None:
        raise ValueError(f"line {begin_line}: '{BEGIN}' is never closed; add '{END}' after the solution")
    return "\n".join(out)


def is_check_cell(cell: NotebookNode) -> bool:
    """True for a code cell that nbval compares: a comment line ``# NBVAL_CHECK_OUTPUT``."""
    return cell.cell_type == "code" and any(
        line.strip().startswith("#") and line.strip().lstrip("#").strip() == CHECK_MARKER
        for line in cell.source.splitlines())


def relink(markdown: str) -> str:
    """Point links of a solution notebook's markdown at the right files from ``notebooks/student/``."""
    markdown = _NOTEBOOK_URL.sub(r"/notebooks/student/\1", markdown)  # Colab badges, GitHub links

    def one_level_deeper(match: re.Match) -> str:
        target = match.group(2)
        if _URL_SCHEME.match(target) or target.startswith(("#", "/")) or _SIBLING_LESSON.match(target):
            return match.group(0)  # absolute, an anchor, or a lesson that has its own student copy
        return match.group(1) + "../" + target

    return _MD_LINK.sub(one_level_deeper, markdown)


def release_notebook(nb: NotebookNode, name: str = "notebook") -> NotebookNode:
    """The student copy of a solution notebook (a new notebook; ``nb`` is not modified).

    ``name`` only labels errors: ``ReleaseError("01_vgg.ipynb, cell 7 ('def make_layers...'): ...")``.
    """
    student = nbformat.v4.new_notebook()
    student.nbformat_minor = max(int(nb.get("nbformat_minor", 5)), 5)  # 4.5+: cells have ids
    student.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    student.metadata.update({k: copy.deepcopy(nb.metadata[k]) for k in KEPT_METADATA if k in nb.metadata})
    for index, cell in enumerate(nb.cells):
        new = {"cell_type": cell.cell_type, "id": str(cell.get("id") or f"cell-{index}"),
               "metadata": {"tags": list(cell.metadata["tags"])} if cell.metadata.get("tags") else {}}
        is_code = cell.cell_type == "code"
        try:  # markdown prose may mention the markers; code and raw cells are strict
            source = strip_solutions(cell.source, CODE_STUB if is_code else TEXT_STUB,
                                     strict=cell.cell_type != "markdown")
        except ValueError as error:
            first = cell.source.strip().split("\n")[0][:40]
            raise ReleaseError(f"{name}, cell {index} ({first!r}): {error}") from None
        new["source"] = relink(source) if cell.cell_type == "markdown" else source
        if cell.cell_type == "markdown" and "attachments" in cell:
            new["attachments"] = copy.deepcopy(cell.attachments)
        if is_code:
            keep = is_check_cell(cell)  # its stored output is the answer: keep it and its count
            new["outputs"] = copy.deepcopy(cell.outputs) if keep else []
            new["execution_count"] = cell.execution_count if keep else None
        student.cells.append(nbformat.from_dict(new))
    return student


def repository(root: Path = Path(".")) -> tuple[str, str]:
    """``("OWNER/NAME", branch)`` of the course, read from ``pyproject.toml`` (the URL's one home)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pytest's dependency tomli is the same parser
        import tomli as tomllib
    with open(Path(root) / "pyproject.toml", "rb") as handle:
        config = tomllib.load(handle)
    url = config["project"]["urls"]["Repository"]
    branch = config.get("tool", {}).get("course", {}).get("branch", "main")
    return re.sub(r"^https://github\.com/", "", url).rstrip("/"), branch


def colab_url(notebook_path: str, root: Path = Path(".")) -> str:
    """Colab's link for a notebook of the repository, e.g. ``notebooks/student/00_setup.ipynb``."""
    repo, branch = repository(root)
    return f"{_COLAB_PREFIX}{repo}/blob/{branch}/{notebook_path}"


def colab_badge(notebook_path: str, root: Path = Path(".")) -> str:
    """The "Open In Colab" badge (markdown) for a notebook of the repository."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook_path, root)})")


def install_guard_source(root: Path = Path(".")) -> str:
    """Every lesson's second cell: in Colab, install the course package unless it is already there.

    Colab has torch, torchvision and numpy, so ``--no-deps`` keeps its versions. pip runs quietly
    in a subprocess: success or failure is one line (offline: no red pip error, no "restart the
    kernel" note when nothing was installed). Outside Colab the cell does nothing.
    """
    repo, branch = repository(root)
    return (
        f"{INSTALL_GUARD_MARK} (course_utils), unless they are already there.\n"
        "# Colab has torch, torchvision and numpy: --no-deps keeps its versions. Elsewhere this cell does\n"
        "# nothing: tools/course.sh (or environment.yml) installed everything.\n"
        "import importlib.util, subprocess, sys\n"
        "\n"
        "if \"google.colab\" in sys.modules and importlib.util.find_spec(\"course_utils\") is None:\n"
        f"    source = \"git+https://github.com/{repo}@{branch}\"\n"
        "    pip = subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"--no-deps\", source],\n"
        "                         capture_output=True, text=True)\n"
        "    if pip.returncode == 0:\n"
        "        print(f\"Installed the course helpers from {source}\")\n"
        "    else:\n"
        "        print(f\"Could not install the course helpers from {source} (no internet?); \"\n"
        "              \"reconnect, then run this cell again. pip said: \" + (pip.stderr.strip().splitlines() or [\"?\"])[-1])"
    )


def set_repository(repo: str, branch: str = "main", root: Path = Path(".")) -> list[str]:
    """Point the course at ``github.com/<repo>`` (branch ``branch``): ``pyproject.toml``, the README's
    badges, every lesson's badge and install cell; returns the files changed.

    Run ``release`` afterwards to remake the student copies (``main`` does both).
    """
    if not _REPO_NAME.match(repo):
        raise ReleaseError(f"--repo {repo!r} must look like OWNER/NAME (e.g. my-school/pytorch-course).")
    if not _BRANCH_NAME.match(branch):
        raise ReleaseError(f"--branch {branch!r} is not a branch name.")
    root = Path(root)
    if not (root / "pyproject.toml").is_file():
        raise ReleaseError(f"No pyproject.toml in {root.resolve()}: run this from the course's repository root.")
    old_repo, old_branch = repository(root)
    changed = []

    def relinked(text: str) -> str:  # Colab badges, then every other link to the old repository
        text = text.replace(f"{_COLAB_PREFIX}{old_repo}/blob/{old_branch}/", f"{_COLAB_PREFIX}{repo}/blob/{branch}/")
        return re.sub(rf"github\.com/{re.escape(old_repo)}(?![\w.-])", f"github.com/{repo}", text)

    def update(path: Path, text: str) -> None:
        if path.read_text(encoding="utf-8") != text:
            with open(path, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
            changed.append(str(path))

    pyproject = root / "pyproject.toml"
    text = relinked(pyproject.read_text(encoding="utf-8"))
    branch_line = f'branch = "{branch}"  # Colab badges and the install cell use it'
    section = re.search(r"(?m)^\[tool\.course\]\n(?:(?!\[).*\n?)*", text)  # its lines, up to the next table
    if section is None:
        text = text.rstrip("\n") + f"\n\n[tool.course]\n{branch_line}\n"
    else:
        body, found = re.subn(r'(?m)^branch = "[^"]*"', f'branch = "{branch}"', section.group(0))
        if not found:
            body = body.replace("[tool.course]\n", f"[tool.course]\n{branch_line}\n", 1)
        text = text[:section.start()] + body + text[section.end():]
    update(pyproject, text)
    if repository(root) != (repo, branch):
        raise ReleaseError(f"Could not write the repository into {pyproject}: check its [project.urls] Repository.")
    for name in LINKED_FILES:
        if (root / name).is_file():
            update(root / name, relinked((root / name).read_text(encoding="utf-8")))
    for path in sorted((root / "notebooks").glob(LESSON_GLOB)):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.source.startswith(INSTALL_GUARD_MARK):
                cell.source = install_guard_source(root)
            elif cell.cell_type == "markdown":
                cell.source = relinked(cell.source)
        update(path, notebook_text(nb))
    return changed


def notebook_text(nb: NotebookNode) -> str:
    """The exact text we write: nbformat's JSON (sorted keys, indent 1) plus a final newline."""
    nbformat.validate(nb)
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def release_folder(source: Path, dest: Path, check: bool = False) -> list[str]:
    """Write (or with ``check=True`` only compare) the student copy of every ``NN_*.ipynb``.

    Returns the problems found: with ``check``, copies that are missing, stale or have no
    source any more; without it, what was written or removed.
    """
    source, dest = Path(source), Path(dest)
    if not source.is_dir():
        raise ReleaseError(f"Source folder {source} not found: pass --source DIR (the solution notebooks).")
    if source.resolve() == dest.resolve():
        raise ReleaseError("--dest must differ from --source: the student copies would overwrite the solutions.")
    lessons = sorted(source.glob(LESSON_GLOB))
    if not lessons:
        raise ReleaseError(f"No lesson notebooks ({LESSON_GLOB}) in {source}.")
    changes = []
    for path in lessons:
        target = dest / path.name
        try:
            solution = nbformat.read(path, as_version=4)
        except Exception as error:  # bad JSON or schema: name the file, skip the stack trace
            raise ReleaseError(f"{path} is not a readable notebook: {error}") from None
        text = notebook_text(release_notebook(solution, name=str(path)))
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        changes.append(f"{'missing' if current is None else 'stale'}: {target}" if check else f"wrote {target}")
        if not check:
            dest.mkdir(parents=True, exist_ok=True)
            with open(target, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
    names = {path.name for path in lessons}
    for orphan in sorted(dest.glob(LESSON_GLOB)):
        if orphan.name not in names:
            changes.append(f"no source for {orphan}" if check else f"removed {orphan} (no source)")
            if not check:
                orphan.unlink()
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.release", description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=Path("notebooks"),
                        help="solution notebooks (default: notebooks)")
    parser.add_argument("--dest", type=Path, default=None, help="student copies (default: SOURCE/student)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a copy is missing or stale")
    parser.add_argument("--repo", metavar="OWNER/NAME",
                        help="a fork: point pyproject.toml, the README, every badge and Colab install cell "
                             "at github.com/OWNER/NAME (run from the repository root), then make the copies")
    parser.add_argument("--branch", default=None, help="with --repo: the branch Colab opens (default main)")
    args = parser.parse_args(argv)
    dest = args.dest if args.dest is not None else args.source / "student"
    if args.branch is not None and args.repo is None:
        parser.error("--branch needs --repo OWNER/NAME")
    if args.repo is not None and args.check:
        parser.error("--check writes nothing; it cannot be combined with --repo")
    try:
        if args.repo is not None:
            for path in set_repository(args.repo, args.branch or "main", args.source.parent):
                print(f"rewrote {path}")
        changes = release_folder(args.source, dest, check=args.check)
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in changes:
        print(line)
    if args.check and changes:
        print("Student copies are out of date: run `python -m course_utils.release` and commit "
              f"{dest}.", file=sys.stderr)
        return 1
    if not changes:
        print(f"Student copies in {dest} are up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
