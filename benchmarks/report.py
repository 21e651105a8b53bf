"""What the benchmarks share: their JSON report under results/benchmarks/ (git-ignored), and
reading a comma-separated list of names from the command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path


def write_json(path: Path, report: dict) -> None:
    """Write ``report`` to ``path`` (folders created) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


def choose(parser: argparse.ArgumentParser, text: str, known: Iterable[str]) -> list[str]:
    """The names in ``text`` ("vgg16,resnet50"); an unknown one is a usage error listing the known ones."""
    known = list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(known)}")
    return names
