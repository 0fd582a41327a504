"""The package's layout rule, checked on its own imports (docs/architecture.md, "Layers").

Every subpackage sits on a floor, in the order of the data flow; a module may import
from its own floor or from lower ones, never from a higher one, and the imports between
modules form no circle. Lazy imports inside functions count too (they are still
dependencies); imports under `if TYPE_CHECKING:` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "spacy_bioreama"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
# Bottom to top. `__init__` (the package's face) and `__main__` are not floors.
FLOORS = (
    ("util", "annotations"),
    ("models",),
    ("corpora", "export"),
    ("tasks",),
    ("instructions",),
    ("training",),
    ("pipeline",),
    ("evaluation", "display", "corpus_annotation"),
    ("cli",),
)
FLOOR_OF = {name: level for level, names in enumerate(FLOORS) for name in names}
FACE = {PACKAGE, f"{PACKAGE}.__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (submodules named in `from X import m`
    count as imports of `X.m`)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf8"), str(path))):
            if isinstance(node, ast.Import):
                bases = [alias.name for alias in node.names]
                names: list[str] = []
            else:
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    bases = [f"{base}.{node.module}" if node.module else base]
                else:
                    bases = [node.module or ""]
                names = [alias.name for alias in node.names]
            for base in bases:
                if base not in modules:
                    continue
                sub = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
                targets.update(sub or [base])
        graph[name] = targets - {name}
    return graph


def floor(module: str) -> int | None:
    """The floor of a module (None for the package's face)."""
    if module in FACE:
        return None
    top = module.split(".")[1]
    if top not in FLOOR_OF:
        raise AssertionError(
            f"{module}: {top!r} is on no floor; put it in one of the subpackages "
            f"{sorted(FLOOR_OF)} (or add its floor to FLOORS and docs/architecture.md)"
        )
    return FLOOR_OF[top]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_runs_back_up_a_floor():
    back_edges = [
        f"{src} (floor {floor(src)}) imports {dst} (floor {floor(dst)})"
        for src, targets in sorted(import_graph().items())
        for dst in sorted(targets)
        if floor(src) is not None and floor(dst) is not None and floor(dst) > floor(src)
    ]
    assert not back_edges, "imports from a higher floor:\n" + "\n".join(back_edges)


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ],
)
def test_cycle_finder_finds_circles(graph, expected):
    assert find_cycle(graph) == expected


def test_graph_sees_lazy_and_submodule_imports():
    graph = import_graph()
    # `from . import benchmark, results, scoring` names submodules; lazy imports count.
    assert f"{PACKAGE}.cli.benchmark" in graph[f"{PACKAGE}.cli"]
    assert f"{PACKAGE}.models" in graph[f"{PACKAGE}.pipeline.component"]
