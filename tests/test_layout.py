"""The house rules of the code base, checked on the source: layers, no import cycles, short functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGES = ("supernet", "strategies", "retrain")
LAYER = {"supernet": 0, "strategies": 1, "retrain": 2}
# the ``python -m`` entry modules of supernet/ may reach up: they only parse arguments and call one function
ENTRY_MODULES = {"supernet.search", "supernet.analyze", "supernet.view"}
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for pkg in PACKAGES for p in sorted((ROOT / pkg).glob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Every project module ``name`` imports, at module level or inside functions."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    modules = _modules()
    return {m for m in out if m in modules and m != name}


def test_no_core_module_imports_a_higher_layer():
    bad = [f"{name} imports {dep}" for name, path in _modules().items() if name not in ENTRY_MODULES
           for dep in _imports(name, path) if LAYER[dep.split(".")[0]] > LAYER[name.split(".")[0]]]
    assert not bad, bad


def test_the_import_graph_has_no_cycle():
    graph = {name: _imports(name, path) for name, path in _modules().items()}
    graph = {k: {d for d in v if d != k.split(".")[0]} for k, v in graph.items()}  # a package's own __init__
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2
    for name in graph:
        if name not in state:
            visit(name, [name])


def test_no_function_is_longer_than_60_lines():
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in _modules().values() for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_the_checks_see_what_they_look_for(tmp_path):
    """The import reader resolves relative imports (else the layer test would pass on anything)."""
    path = ROOT / "supernet" / "train.py"
    assert "supernet.loop" in _imports("supernet.train", path) and "supernet.model" in _imports("supernet.train", path)
    assert "strategies.pipeline" in _imports("supernet.search", ROOT / "supernet" / "search.py")


def test_readme_strategy_table_is_the_registry():
    """The README's strategy table is generated from the one registry; a strategy added there
    and not documented (or the reverse) fails here."""
    from strategies.registry import markdown_table
    assert markdown_table() in (ROOT / "README.md").read_text()
