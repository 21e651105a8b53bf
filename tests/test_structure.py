"""The package's shape: no import cycle (lazy imports included), no private names used across modules.

Read from the source with ``ast``, so nothing is imported: an import inside a function counts
like one at the top (a lazy import that dodges a cycle is still a cycle), and so does a name
reached through a module (``synthetic._write_atomically``) or imported from it
(``from course_utils.data.cifar import _open_real``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course_utils"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The course module ``name`` refers to, or None (an attribute, or not ours)."""
    return name if name in MODULES else None


def _with_parents(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first."""
    parts = module.split(".")
    return [m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in MODULES]


def _scan(module: str) -> tuple[set[str], list[str]]:
    """(modules ``module`` imports, private names it takes from other course modules)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    imports, private, aliases = set(), [], {}  # aliases: local name -> course module
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _resolve(alias.name):
                    imports.update(_with_parents(alias.name))
                    if alias.asname:
                        aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .x import y
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            if not base.startswith("course_utils"):
                continue
            for alias in node.names:
                target = _resolve(f"{base}.{alias.name}")
                if target:  # from course_utils.data import cifar: a module
                    imports.update(_with_parents(target))
                    aliases[alias.asname or alias.name] = target
                else:  # from course_utils.metrics import scored: a name of that module
                    imports.update(_with_parents(base))
                    if alias.name.startswith("_") and base != module:
                        private.append(f"from {base} import {alias.name}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and aliases[node.value.id] != module):
            private.append(f"{node.value.id}.{node.attr} (of {aliases[node.value.id]})")
    own_packages = set(_with_parents(module))  # loaded before ``module`` itself: not a dependency
    return imports - own_packages, private


GRAPH = {module: _scan(module) for module in MODULES}


def _cycles() -> list[list[str]]:
    """Every import cycle, each as the path of modules that closes it (depth-first search)."""
    found, state = [], {}  # state: 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module][0]):
            if state.get(target) == 1:
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    return found


def test_the_scanner_sees_imports_lazy_ones_included():
    """The graph is real: known edges are found (a scanner that found nothing would pass everything)."""
    assert "course_utils.files" in GRAPH["course_utils.checkpoint"][0]
    assert "course_utils.data.cifar" in GRAPH["course_utils.preflight"][0]  # imported inside a function
    assert "course_utils.metrics" in GRAPH["course_utils.engine"][0]


def test_course_utils_has_no_import_cycle():
    cycles = _cycles()
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_uses_another_modules_private_names():
    used = {module: private for module, (_, private) in GRAPH.items() if private}
    assert not used, f"private names used across modules (make them public, or move them): {used}"


def test_leaf_modules_import_nothing_from_the_course():
    """constants, files, progress and metrics are what everything else may build on."""
    for leaf in ("course_utils.constants", "course_utils.files", "course_utils.progress"):
        assert GRAPH[leaf][0] == set(), leaf
    assert GRAPH["course_utils.metrics"][0] == {"course_utils.constants"}


def test_modules_that_had_cycles_import_alone_in_a_fresh_interpreter():
    """Imported first and alone, they work: no import order is needed to dodge a cycle (the AST
    graph above covers every module; a fresh interpreter per module would cost minutes)."""
    modules = ("course_utils.data.synthetic", "course_utils.data.cifar", "course_utils.data.voc",
               "course_utils.measure", "course_utils.checks")
    runs = {m: subprocess.Popen([sys.executable, "-c", f"import {m}"], cwd=ROOT, stderr=subprocess.PIPE,
                                text=True) for m in modules}
    failed = {m: run.communicate(timeout=300)[1][-1000:] for m, run in runs.items() if run.wait(timeout=300)}
    assert not failed, failed
