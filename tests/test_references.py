"""Every reference a user can follow resolves inside the repository.

A user has this repository, nothing else: no sibling folder (``../shared/...``), no development
notes (``DECISIONS.md``), no issue tracker ("issue 14"). The README, the benchmarks and the tools
name only files that are here, and the repository holds no path to a folder outside it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_FACING = ["README.md", *sorted(str(p.relative_to(ROOT)) for folder in ("benchmarks", "tools")
                                    for p in (ROOT / folder).rglob("*") if p.suffix in (".md", ".py", ".sh")
                                    and "__pycache__" not in p.parts)]
OUTSIDE = re.compile(r"\.\./shared|/work/|DECISIONS(\.md)?\b|STYLE\.md|\b[Ii]ssues? #?\d+|\bthe issue\b")
GENERATED = ("data/", "results/", "checkpoints/")  # made by the course when it runs


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if Path(n).suffix in (".py", ".md", ".sh", ".ipynb", ".toml", ".yml", ".txt", ".cfg")
            and (ROOT / n).is_file()]


@pytest.mark.parametrize("name", USER_FACING)
def test_user_facing_text_points_at_nothing_outside_the_repository(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    found = [(text.count("\n", 0, m.start()) + 1, m.group(0)) for m in OUTSIDE.finditer(text)]
    assert not found, f"{name}: references outside the repository (line, text): {found}"


def test_no_tracked_file_names_the_shared_folder():
    """A benchmark that can use an external sample takes its path from a flag or an environment variable."""
    here = Path(__file__).resolve()
    found = [str(p.relative_to(ROOT)) for p in _tracked_text_files()
             if p.resolve() != here and "../shared" in p.read_text(encoding="utf-8", errors="replace")]
    assert not found, found


@pytest.mark.parametrize("name", ["README.md", "benchmarks/README.md"])
def test_the_files_a_readme_names_exist(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    base = (ROOT / name).parent
    links = [link for link in re.findall(r"\]\(([^)#\s]+)", text) if not re.match(r"[a-z]+:", link)]
    paths = re.findall(r"`((?:tests|benchmarks|tools|course_utils|notebooks|\.ci)/[^`\s<>*]*)`", text)
    missing = [link for link in links if not (base / link).exists()]
    missing += [path for path in paths if not path.startswith(GENERATED) and not (ROOT / path).exists()]
    assert not missing, f"{name} names files that are not in the repository: {missing}"


def test_the_checker_sees_what_it_must_refuse():
    assert OUTSIDE.search("see `../shared/tools/cifar_sample.py`") and OUTSIDE.search("(issue 14)")
    assert OUTSIDE.search("goal (`/work/shared/DECISIONS.md` §4)") and not OUTSIDE.search("issued 3 warnings")
