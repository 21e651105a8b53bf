"""The one way a benchmark saves its report: JSON under results/benchmarks/ (git-ignored)."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path, report: dict) -> None:
    """Write ``report`` to ``path`` (folders created) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
