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
- metadata is reduced to the kernelspec ``python3`` (plus Colab's keys), cell ids are the source's.

The output is deterministic: running it twice gives byte-identical files, so
``python -m course_utils.release --check`` (CI) can fail when a committed copy is stale.
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
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
KEPT_METADATA = ("accelerator", "colab")  # Colab reads these to open the copy on a GPU runtime

_MARKER_LINE = re.compile(r"^(\s*)#+\s*(BEGIN|END) SOLUTION\s*$")
_NOTEBOOK_URL = re.compile(r"/notebooks/(\d\d_[^/\s)\"'<>]+\.ipynb)")
_MD_LINK = re.compile(r"(\]\(\s*<?|(?:src|href)=[\"'])([^)\s\"'>]+)")
_URL_SCHEME = re.compile(r"^[A-Za-z][\w+.-]*:")
_SIBLING_LESSON = re.compile(r"^\d\d_[^/]*\.ipynb(#.*)?$")


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
    args = parser.parse_args(argv)
    dest = args.dest if args.dest is not None else args.source / "student"
    try:
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
