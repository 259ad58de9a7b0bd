"""rtcore's modules import each other in one direction: no circle anywhere in the package, counting imports
inside functions (only ``if TYPE_CHECKING:`` blocks, which never run, are left out).

An edge A -> B is every import A states of B (``import rtcore.x``, ``from rtcore.x import y``, ``from . import
y``; a name imported from a package is an edge to the name's module where it is one, else to the package)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "rtcore"


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in ROOT.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _owner(name: str) -> str:
    """The rtcore module a dotted name lives in (the longest prefix that is a module)."""
    while name not in MODULES:
        name = name.rsplit(".", 1)[0]
    return name


def imports(name: str, path: Path) -> set[str]:
    """The rtcore modules ``path`` (module ``name``) imports anywhere but in a TYPE_CHECKING block."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(_owner(a.name) for a in node.names if a.name.split(".")[0] == "rtcore")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "rtcore":
                out.update(_owner(f"{module}.{a.name}") for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return out - {name}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` (its nodes in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, stack + [nxt])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return None


def test_no_module_of_rtcore_imports_one_that_imports_it_back() -> None:
    graph = {name: imports(name, path) for name, path in MODULES.items()}
    assert cycle(graph) is None, " -> ".join(cycle(graph) or [])
    # the walker sees deferred and relative imports (the edges this test guards)
    assert "rtcore.attacks.plans" in graph["rtcore.attacks.settings"]
    assert "rtcore.attacks.end_to_end" not in graph["rtcore.attacks.adaptive"]
    assert "rtcore.runs.fields" in graph["rtcore.runs.spec"] and "rtcore.cli" not in graph["rtcore.runs.spec"]
    assert sum(map(len, graph.values())) > 300, "every module's imports are seen"


def test_the_walker_finds_a_circle_and_reads_deferred_imports(tmp_path: Path) -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    path = tmp_path / "m.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import rtcore.cli\n"
                    "def f():\n    from ..runs import spec\n    from rtcore.attacks.plans import create_plan\n")
    assert imports("rtcore.data.m", path) == {"rtcore.runs.spec", "rtcore.attacks.plans"}
