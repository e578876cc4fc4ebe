"""The package's layering, derived from its own import statements: the core (datasets, semantic stage, models, the
methods' parts) is plain PyTorch and never imports the Lightning edge, the methods, the experiments or serving;
there is no import cycle; and importing the whole core loads no Lightning."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

PACKAGE = REPO_ROOT / "sracl_lightning"

#: The layers, lowest first; a module may import its own layer and the ones before it, never a later one. A module
#: belongs to the layer of its sub-package, unless it is named under another layer (its sub-package's Lightning
#: edge, say), so that a new file needs no entry here.
LAYERS = ("core", "methods", "training", "experiments", "serving", "entry points")
PACKAGE_LAYERS = {"datasets": "core", "semantic": "core", "models": "core", "methods": "core",
                  "training": "training", "experiments": "experiments", "serving": "serving"}
MODULE_LAYERS = {"errors": "core", "atomic": "core", "distributed": "core", "resources": "core",
                 "methods.module": "methods", "methods.legacy": "methods", "methods.mclrec_module": "methods",
                 "methods.s3rec_module": "methods",
                 "runner": "experiments", "jobs": "experiments", "console": "entry points"}


def layer_of(module: str) -> str:
    if module in MODULE_LAYERS:
        return MODULE_LAYERS[module]
    package = module.split(".")[0]
    if package not in PACKAGE_LAYERS:
        raise AssertionError(f"{module} is in no sub-package: name its layer in MODULE_LAYERS")
    return PACKAGE_LAYERS[package]


def module_name(path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def imports_of(path) -> set[str]:
    """The package modules a file imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "sracl_lightning":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("sracl_lightning."):
                found.add(node.module.removeprefix("sracl_lightning."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("sracl_lightning.") for a in node.names
                      if a.name.startswith("sracl_lightning.")}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    # A package's __init__ re-exports its modules: importing the package means importing them.
    packages = {".".join(p.parent.relative_to(PACKAGE).parts) for p in PACKAGE.rglob("__init__.py")
                if p.parent != PACKAGE}
    graph = {}
    for name, path in modules.items():
        deps = imports_of(path)
        # "from sracl_lightning.experiments import x" names the package: count it as its modules.
        deps |= {m for m in modules for pkg in deps & packages if m.startswith(pkg + ".")}
        graph[name] = deps & set(modules) - {name}
    return graph


def test_every_module_has_a_layer() -> None:
    graph = import_graph()
    assert {layer_of(m) for m in graph} <= set(LAYERS)
    assert set(MODULE_LAYERS) <= set(graph), "MODULE_LAYERS names a module that does not exist"


def test_no_module_imports_a_later_layer() -> None:
    rank = {module: LAYERS.index(layer_of(module)) for module in import_graph()}
    wrong = [f"{m} ({LAYERS[rank[m]]}) imports {d} ({LAYERS[rank[d]]})" for m, deps in import_graph().items()
             for d in deps if rank[d] > rank[m]]
    assert not wrong, wrong


def test_no_import_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path, node, dep]
            if dep not in state and (cycle := visit(dep, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [])
            assert cycle is None, " -> ".join(cycle)


def test_the_core_imports_no_lightning() -> None:
    """Import every core module in a fresh interpreter: neither Lightning nor jsonargparse gets loaded."""
    core = sorted(m for m in import_graph() if layer_of(m) == "core")
    assert len(core) > 30
    code = ("import sys\n" + "".join(f"import sracl_lightning.{m}\n" for m in core)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('lightning', 'pytorch_lightning', 'jsonargparse'))\nprint(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout[-2000:]
