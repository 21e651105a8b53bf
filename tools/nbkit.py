"""Small helpers for writing lesson notebooks with nbformat (used by authors, not by students).

The first two cells of every lesson come from here, so the Colab badge and the install guard
are the same everywhere and follow the repository URL in ``pyproject.toml`` (its one home);
``tests/test_notebooks.py`` checks that every notebook agrees with them.

    from tools import nbkit
    nb = nbkit.new_notebook([
        *nbkit.header("01_vgg16_cifar10.ipynb", "01 · VGG16 on CIFAR-10", goal, expectations),
        nbkit.md("## 1. ..."), nbkit.code("..."),
    ])
    nbkit.write(nb, "notebooks/01_vgg16_cifar10.ipynb")

then ``python tools/store_answers.py notebooks/01_vgg16_cifar10.ipynb`` runs it in the ci profile
and stores the answers of the check cells.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nbformat

from course_utils.release import KERNELSPEC

ROOT = Path(__file__).resolve().parents[1]


def repo_url() -> str:
    """The repository URL, read from pyproject.toml's [project.urls]."""
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["urls"]["Repository"]


def colab_url(notebook_path: str) -> str:
    """Colab's link for a notebook path inside the repository (e.g. notebooks/00_setup.ipynb)."""
    github = re.sub(r"^https://github\.com/", "", repo_url()).rstrip("/")
    return f"https://colab.research.google.com/github/{github}/blob/main/{notebook_path}"


def colab_badge(notebook_path: str) -> str:
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook_path)})")


def install_guard_source() -> str:
    """The install-guard cell: installs the course package in Colab only, never torch/torchvision/numpy."""
    return (
        "# Colab only: install the course helpers. Colab already has torch, torchvision and numpy,\n"
        "# so --no-deps keeps its versions; locally, environment.yml / tools/course.sh installed everything.\n"
        "import sys\n"
        "\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    %pip install -q --no-deps \"git+{repo_url()}\"\n"
        "    %pip install -q nbval\n"
    )


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(text.strip("\n"))


def header(filename: str, title: str, goal: str, expectations: str) -> list[nbformat.NotebookNode]:
    """Markdown (title, badge, goal, expected results per profile) + the install guard."""
    text = (f"# {title}\n\n{colab_badge('notebooks/' + filename)}\n\n{goal.strip()}\n\n"
            f"{expectations.strip()}")
    return [md(text), code(install_guard_source())]


def new_notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for index, cell in enumerate(nb.cells):  # stable ids keep diffs small
        cell.id = f"cell-{index:03d}"
    return nb


def write(nb: nbformat.NotebookNode, path: str | Path) -> None:
    nbformat.validate(nb)
    nbformat.write(nb, str(path))
