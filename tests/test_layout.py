"""The house rules of the code base, checked on the source: layers, no import cycles, short functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGES = ("supernet", "strategies", "retrain")
# the rooms of the core, bottom up, then the core's entry modules, then the packages above it: a module
# may import its own room and the rooms below, never one above
LAYERS = ("supernet.core", "supernet.data", "supernet.nn", "supernet.train", "supernet.scoring", "supernet",
          "strategies", "retrain")
# the one shim that reaches up: ``python -m supernet.search`` (the card's command) runs strategies' pipeline
ENTRY_SHIMS = {"supernet.search"}
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def layer(module: str) -> int:
    """The index in ``LAYERS`` of the room holding ``module`` (its longest matching prefix)."""
    rooms = [i for i, room in enumerate(LAYERS) if module == room or module.startswith(room + ".")]
    return max(rooms, key=lambda i: len(LAYERS[i]))


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


def test_no_module_imports_a_higher_room():
    bad = [f"{name} imports {dep}" for name, path in _modules().items() if name not in ENTRY_SHIMS
           for dep in _imports(name, path) if layer(dep) > layer(name)]
    assert not bad, bad


def test_the_core_is_split_into_its_rooms():
    """Every core module lives in a room; only the ``python -m`` entry modules stay at the top."""
    top = sorted(n for n, p in _modules().items() if n.count(".") == 1 and n.startswith("supernet.")
                 and p.name != "__init__.py")
    assert top == ["supernet.analyze", "supernet.search", "supernet.space", "supernet.view"], top
    assert layer("supernet.nn.head") == LAYERS.index("supernet.nn") and layer("supernet.view") == LAYERS.index("supernet")


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
    """The import reader resolves relative and absolute imports (else the layer test would pass on anything)."""
    path = ROOT / "supernet" / "train" / "supernet.py"
    found = _imports("supernet.train.supernet", path)
    assert "supernet.train.loop" in found and "supernet.nn.supernet" in found
    assert "strategies.pipeline" in _imports("supernet.search", ROOT / "supernet" / "search.py")
    pkg = tmp_path / "supernet" / "nn"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("from . import head\nfrom ..train import loop\n")
    assert {"supernet.nn.head", "supernet.train.loop"} <= _imports("supernet.nn.x", pkg / "x.py")
    assert layer("supernet.train.loop") > layer("supernet.nn.x")  # so a real module doing this would fail


def test_readme_strategy_table_is_the_registry():
    """The README's strategy table is generated from the one registry; a strategy added there
    and not documented (or the reverse) fails here."""
    from strategies.registry import markdown_table
    assert markdown_table() in (ROOT / "README.md").read_text()
