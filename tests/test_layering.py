"""The package's layering, derived from its own import statements: the core (data, models, losses, metrics, the
semantic stage) is plain PyTorch and never imports the Lightning edge, the methods, the experiments or serving;
there is no import cycle; and importing the whole core loads no Lightning."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

PACKAGE = REPO_ROOT / "sracl_lightning"

#: The layers, lowest first; a module may import its own layer and the ones before it, never a later one.
LAYERS: dict[str, set[str]] = {
    "core": {"atomic", "batch", "catalog", "cooccurrence", "distributed", "encoder", "errors", "gru4rec",
             "interaction_logs", "item_text", "llm", "losses", "manifest", "metrics", "neighbours", "processed",
             "prompts", "resources", "samples", "sasrec", "scoring", "semantic", "semantic_tables", "sequence_files",
             "sequences", "substitution", "synthesizer", "text_embeddings"},
    "methods": {"module", "memory_bank", "duorec", "ablations", "learnable_substitution"},
    "training": {"datamodule", "callbacks", "cli_errors", "cli", "trained", "results", "train", "evaluate",
                 "semantic_cli"},
    "experiments": {"experiments.tables", "experiments.specs", "experiments.keys", "experiments.plan",
                    "experiments.records", "experiments.execute", "experiments.report", "experiments.cli", "runner",
                    "figures"},
    "serving": {"recommend"},
    "entry points": {"console"},
}


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
    assigned = set().union(*LAYERS.values())
    assert set(import_graph()) == assigned, "add new modules to LAYERS (and keep the layering)"


def test_no_module_imports_a_later_layer() -> None:
    rank = {module: index for index, members in enumerate(LAYERS.values()) for module in members}
    names = list(LAYERS)
    wrong = [f"{m} ({names[rank[m]]}) imports {d} ({names[rank[d]]})" for m, deps in import_graph().items()
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
    code = ("import sys\n" + "".join(f"import sracl_lightning.{m}\n" for m in sorted(LAYERS["core"]))
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('lightning', 'pytorch_lightning', 'jsonargparse'))\nprint(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout[-2000:]
