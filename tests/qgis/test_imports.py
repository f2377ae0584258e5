"""The package's import graph, read from the source (AST only: runs under any Python, no QGIS needed).

- no import circle anywhere in the package (imports inside functions count too);
- nothing under engine/ imports a geostudio_plugin module outside engine/ (the engine runs without them);
- no upward import: the core modules never import gui or processing; gui and processing never import
  each other; only plugin.py sits above both;
- contract.py imports only the standard library and engine.wire; the other stdlib-only modules too;
- the QGIS side imports no third-party package but qgis (and PyQt only through qgis.PyQt).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "geostudio_plugin"
ROOT = "geostudio_plugin"

CORE = ("contract", "qgis_inputs", "tasks", "engine_client", "engine_server_client", "engine_runtime", "settings",
        "credentials", "layers", "workspace_index", "logs", "paths")
STDLIB_ONLY = {  # module -> the package modules it may import
    "contract": {"engine.wire"},
    "engine_client": {"contract", "engine_runtime", "engine_server_client", "engine.wire"},
    "engine_server_client": {"engine_runtime"},  # the warm engine's client side
    "engine_runtime": {"engine.workspace"},  # default_workspace(); engine.workspace is standard library only
    "paths": set(),
    "engine.wire": set(),
    "engine.schema_words": set(),
    "parameter_rules": {"engine.schema_words"},  # the dock's checks word ranges as the engine does
    "inference_request": {"contract", "engine.wire"},  # the dock's area request; its payload is the contract's
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def imports(name: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(package modules this module imports, top-level names of everything else it imports)."""
    is_package = path.name == "__init__.py"
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                (inside if alias.name.split(".")[0] == ROOT else outside).add(
                    alias.name if alias.name.split(".")[0] == ROOT else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == ROOT:
                target = node.module
            else:
                outside.add((node.module or "").split(".")[0])
                continue
            for alias in node.names:  # "from . import tasks" and "from .gui import messages" name modules
                sub = f"{target}.{alias.name}"
                inside.add(sub if sub in known else target)
    inside.discard(name)
    return inside, outside


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    found = modules()
    known = set(found)
    edges, external = {}, {}
    for name, path in found.items():
        edges[name], external[name] = imports(name, path, known)
    return edges, external


def in_engine(name: str) -> bool:
    return name == f"{ROOT}.engine" or name.startswith(f"{ROOT}.engine.")


def short(name: str) -> str:
    return name[len(ROOT) + 1:] if name.startswith(ROOT + ".") else name


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in edges:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(short(c) for c in component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read():
    edges, external = graph()
    assert f"{ROOT}.gui.base" in edges[f"{ROOT}.gui.onboarding_dock"]
    assert f"{ROOT}.contract" in edges[f"{ROOT}.tasks"]
    assert f"{ROOT}.engine.wire" in edges[f"{ROOT}.contract"]
    assert "qgis" in external[f"{ROOT}.tasks"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle():
    edges, _ = graph()
    assert cycles(edges) == []


def test_engine_imports_nothing_outside_engine():
    edges, external = graph()
    bad = {short(m): sorted(short(t) for t in targets if not in_engine(t)) for m, targets in edges.items()
           if in_engine(m)}
    assert {m: t for m, t in bad.items() if t} == {}
    assert {short(m): "qgis" for m, names in external.items() if in_engine(m) and "qgis" in names} == {}


def test_no_upward_import():
    edges, _ = graph()

    def layer(name: str) -> str:
        rest = short(name)
        return rest.split(".")[0] if rest.split(".")[0] in ("gui", "processing", "engine") else rest

    bad = []
    for module, targets in edges.items():
        for target in targets:
            if layer(module) in CORE and layer(target) in ("gui", "processing", "plugin"):
                bad.append(f"{short(module)} -> {short(target)}")
            if {layer(module), layer(target)} == {"gui", "processing"}:
                bad.append(f"{short(module)} -> {short(target)}")
            if layer(target) == "plugin" and module != ROOT:
                bad.append(f"{short(module)} -> {short(target)}")
    assert bad == []


def test_stdlib_only_modules():
    edges, external = graph()
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for module, allowed in STDLIB_ONLY.items():
        name = f"{ROOT}.{module}"
        assert external[name] <= stdlib, (module, external[name] - stdlib)
        assert {short(t) for t in edges[name]} <= allowed, (module, {short(t) for t in edges[name]} - allowed)


def test_qgis_side_imports_only_qgis_and_the_standard_library():
    _, external = graph()
    allowed = set(sys.stdlib_module_names) | {"__future__", "qgis"}
    bad = {short(m): sorted(names - allowed) for m, names in external.items()
           if not in_engine(m) and names - allowed}
    assert bad == {}
