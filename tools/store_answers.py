"""Execute solution notebooks in the ci profile and store only the graded answers.

    python tools/store_answers.py notebooks/01_vgg16_cifar10.ipynb [...]

Every cell is run (working directory: the notebook's folder, COURSE_PROFILE=ci). Cells whose
source contains ``# NBVAL_CHECK_OUTPUT`` keep their text output and an execution count: that
output is the expected answer nbval compares against. All other cells are stored without
outputs, the kernel is named ``python3``, and metadata is kept minimal, so notebooks stay clean
in git. A cell that raises stops the script with the cell's index and error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from course_utils.release import KERNELSPEC, is_check_cell



def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep outputs only on check cells; number them 1, 2, ...; minimal metadata."""
    count = 0
    for cell in nb.cells:
        cell.metadata = {key: value for key, value in cell.metadata.items() if key in ("tags",)}
        if cell.cell_type != "code":
            continue
        if is_check_cell(cell):
            count += 1
            cell.execution_count = count
            text = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)] if text else []
        else:
            cell.execution_count = None
            cell.outputs = []
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    return nb


def store_answers(path: Path, timeout: int = 600) -> None:
    nb = nbformat.read(path, as_version=4)
    os.environ["COURSE_PROFILE"] = "ci"
    os.environ.setdefault("MPLBACKEND", "Agg")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as error:
        raise SystemExit(f"{path}: a cell failed while storing answers:\n{error}") from None
    for index, cell in enumerate(nb.cells):
        if is_check_cell(cell):
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            if "FAIL" in text or "not answered yet" in text or not text.strip():
                raise SystemExit(f"{path}: check cell {index} printed {text!r}; the solution must PASS.")
    # Others may have edited the notebook while it ran: re-read it and store only the check cells'
    # outputs, matched by cell id, so an edit made meanwhile is kept (and a changed check cell is refused).
    executed = {cell.id: cell for cell in clean(nb).cells}
    current = nbformat.read(path, as_version=4)
    for cell in current.cells:
        if cell.cell_type == "code" and is_check_cell(cell):
            ran = executed.get(cell.id)
            if ran is None or ran.source != cell.source:
                raise SystemExit(f"{path}: check cell {cell.id} changed while storing answers; run again.")
            cell.outputs = ran.outputs
    nbformat.write(clean(current), path)  # clean() empties every other cell's outputs
    print(f"stored answers in {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--clean-only", action="store_true", help="strip outputs, do not execute")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if args.clean_only:
            nbformat.write(clean(nbformat.read(path, as_version=4)), path)
        else:
            store_answers(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
