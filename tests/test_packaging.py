"""Tests for the packaging: pins agree, versions in range, imports change nothing, notebooks are clean."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PINNED = ("torch", "torchvision")


def constraints() -> dict[str, Version]:
    """``name==version`` lines of constraints.txt."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"constraints.txt pins exact versions, got {line!r}"
            pins[requirement.name] = Version(spec.version)
    return pins


def environment_pip_pins() -> dict[str, Version]:
    """``name==version`` entries of environment.yml's ``pip:`` section (no YAML library needed)."""
    pins, indent = {}, None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.split("#")[0].strip()
        if indent is None:
            if stripped == "- pip:":
                indent = len(line) - len(line.lstrip())
            continue
        if stripped and len(line) - len(line.lstrip()) <= indent:
            break  # the pip section ended
        item = stripped.removeprefix("- ").strip()
        if "==" in item:
            requirement = Requirement(item)
            (spec,) = requirement.specifier
            pins[requirement.name] = Version(spec.version)
    assert indent is not None, "environment.yml has no '- pip:' section"
    return pins


def declared_ranges() -> dict[str, Requirement]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    return {Requirement(d).name: Requirement(d) for d in dependencies}


def test_constraints_and_environment_pin_the_same_versions():
    pins, env_pins = constraints(), environment_pip_pins()
    for name in PINNED:
        assert name in pins and name in env_pins, f"{name} must be pinned in both files"
    assert {name: env_pins[name] for name in pins if name in env_pins} == pins


def test_pinned_versions_satisfy_pyproject_ranges():
    ranges = declared_ranges()
    for name, version in constraints().items():
        assert name in ranges, f"{name} is pinned but not a dependency in pyproject.toml"
        assert ranges[name].specifier.contains(version), f"{name}=={version} outside {ranges[name]}"


@pytest.mark.parametrize("module", [torch, torchvision], ids=lambda m: m.__name__)
def test_installed_version_lies_in_declared_range(module):
    installed = Version(module.__version__)  # e.g. 2.14.1+cu130: compare the public part
    assert declared_ranges()[module.__name__].specifier.contains(Version(installed.public))


def test_version_comparison_is_numeric_not_textual():
    # Guards the helpers above: "2.9" > "2.14" as strings, not as versions.
    assert Version("2.9.0") < Version("2.14.1") and Version("2.14.1+cu130").public == "2.14.1"


STATE_PROBE = r"""
import importlib, json, os, pathlib, random, sys, warnings
import numpy as np, torch, matplotlib
# Third-party imports first: their own import-time effects (torchvision's sympy warning filter)
# are not ours to judge.
import matplotlib.pyplot, PIL.Image, torchvision, torchvision.datasets, torchvision.transforms.v2

def state():
    return {
        "default dtype": str(torch.get_default_dtype()),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "grad enabled": torch.is_grad_enabled(),
        "torch threads": torch.get_num_threads(),
        "torch rng": torch.get_rng_state().sum().item(),
        "torch seed": torch.initial_seed(),
        "numpy rng": str(np.random.get_state()[1][:4]),
        "python rng": random.getstate()[1][:4],
        "rcParams": repr(sorted((k, repr(v)) for k, v in matplotlib.rcParams.items() if k != "backend")),
        "warning filters": repr(warnings.filters),
        "environment": repr(sorted(os.environ.items())),
        "print options": repr(torch._tensor_str.PRINT_OPTS.__dict__),
    }

modules = ["course_utils"] + sorted(
    "course_utils." + ".".join(p.with_suffix("").relative_to(sys.argv[1]).parts).removesuffix(".__init__")
    for p in pathlib.Path(sys.argv[1]).rglob("*.py") if p.name != "__main__.py")
before, report = state(), {}
for name in dict.fromkeys(modules):
    try:
        importlib.import_module(name)
    except Exception as error:
        report[name] = f"import failed: {type(error).__name__}: {error}"
        continue
    after = state()
    changed = [key for key in before if before[key] != after[key]]
    if changed:
        report[name] = "changed " + ", ".join(changed)
    before = after
print("RESULT " + json.dumps(report))
"""


def test_importing_course_utils_changes_no_global_state():
    """Import the package and every submodule in a fresh interpreter; none may touch global state."""
    package = ROOT / "course_utils"
    # A minimal environment: variables set by this pytest process (conftest imports course_utils)
    # would otherwise hide a module that sets them at import.
    keep = ("PATH", "HOME", "LD_LIBRARY_PATH", "SYSTEMROOT", "TMPDIR", "TEMP", "TMP")
    env = {name: os.environ[name] for name in keep if name in os.environ} | {"MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-c", STATE_PROBE, str(package)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    printed, _, report = result.stdout.rpartition("RESULT ")
    assert printed == "", f"importing printed: {printed!r}"
    assert json.loads(report) == {}


# Notebooks ---------------------------------------------------------------------------------------

NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
ABSOLUTE_PATH = re.compile(r"/work/|/home/|/Users/|\b[A-Za-z]:\\")
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def notebook_params():
    if not NOTEBOOKS:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks under notebooks/ yet"),
                             id="no-notebooks")]
    return [pytest.param(path, id=str(path.relative_to(ROOT / "notebooks"))) for path in NOTEBOOKS]


def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("path", notebook_params())
def test_notebook_is_committed_clean(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    problems = []
    for number, cell in enumerate(notebook["cells"], start=1):
        text = source(cell)
        if ABSOLUTE_PATH.search(text):
            problems.append(f"cell {number}: absolute path {ABSOLUTE_PATH.search(text).group()!r}")
        if cell["cell_type"] != "code":
            continue
        is_check = CHECK_MARK in text
        if cell.get("outputs") and not is_check:
            problems.append(f"cell {number}: outputs on a cell without {CHECK_MARK}")
        if is_check and cell.get("execution_count") is None:
            problems.append(f"cell {number}: check cell without execution_count")
        if ABSOLUTE_PATH.search(json.dumps(cell.get("outputs", []))):
            problems.append(f"cell {number}: absolute path in outputs")
    assert problems == [], f"{path.name}: " + "; ".join(problems)
