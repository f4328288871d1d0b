"""funcflux's modules import only from the layers below them (../shared/design.md).

The layers, lowest first: core -> ops -> the NumPy surface (funcflux.numpy,
funcflux.scipy) -> tree -> transforms -> functors -> nn, losses, optim ->
data, train, io, device, distributed. Every ``import`` counts, at module level or
inside a function: a function-level import from a higher layer is the same
dependency, only hidden. The test reads the source (no import runs).

``KNOWN`` lists the dependencies still to be removed, each with the reason; the
test fails for any other, and for an entry of ``KNOWN`` that has gone (so the list
only shrinks).
"""
from __future__ import annotations

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "funcflux")

LAYERS = [
    {"core", "dtypes"},
    {"ops"},
    {"numpy", "scipy"},
    {"tree"},
    {"transforms", "test_util", "lax", "debug"},
    {"functors", "_flatten", "filters"},
    {"nn", "losses", "optim", "random"},
    {"data", "train", "io", "device", "distributed", "_malloc"},
    {"__init__"},
]

# (importer's top-level part, imported top-level part): why it is still there.
KNOWN: dict[tuple[str, str], str] = {}


def _layer(part: str) -> int | None:
    for i, group in enumerate(LAYERS):
        if part in group:
            return i
    return None


def _module_of(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _imports(path: str) -> list[str]:
    """Every funcflux module ``path`` imports, resolved to dotted names."""
    me = _module_of(path)
    package = me if path.endswith("__init__.py") else me.rpartition(".")[0]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = os.path.join(os.path.dirname(ROOT), *(mod + "." + a.name).split("."))
                out.append(mod + "." + a.name
                           if os.path.exists(sub + ".py") or os.path.isdir(sub) else mod)
    return [m for m in out if m == "funcflux" or m.startswith("funcflux.")]


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_from_a_higher_layer():
    found: dict[tuple[str, str], list[str]] = {}
    for dirpath, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            me = _module_of(path)
            for target in _imports(path):
                a, b = _part(me), _part(target)
                la, lb = _layer(a), _layer(b)
                assert la is not None, f"{me}: add its top-level part {a!r} to LAYERS"
                if target == "funcflux" or lb is None or lb <= la:
                    continue
                found.setdefault((a, b), []).append(f"{me} imports {target}")
    new = {k: v for k, v in found.items() if k not in KNOWN}
    assert not new, "imports from a higher layer:\n" + "\n".join(
        line for v in new.values() for line in v)
    gone = sorted(set(KNOWN) - set(found))
    assert not gone, f"remove these entries from KNOWN, they are fixed: {gone}"



def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for dirpath, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                me = _module_of(path)
                graph[me] = {t for t in _imports(path) if t != me}
    return graph


def test_no_import_cycle():
    """No circle of imports anywhere in funcflux/, within a layer too (a package's
    ``__init__`` importing its own submodules is the one allowed edge into a package)."""
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if t not in graph:
                continue
            if state.get(t) == 1:
                cycle = path[path.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_ops_register_nothing():
    """The families declare primitives and rules; NumPy's names are routed to them by the
    surface (funcflux.numpy, funcflux.scipy), so no ops file registers in the dispatch table."""
    found = []
    for name in sorted(os.listdir(os.path.join(ROOT, "ops"))):
        if name.endswith(".py"):
            with open(os.path.join(ROOT, "ops", name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and node.id in ("implements", "implements_ufunc"):
                    found.append(f"ops/{name}:{node.lineno}: {node.id}")
    assert not found, "registrations in ops (move them to the surface):\n" + "\n".join(found)
