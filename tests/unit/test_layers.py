"""The import graph: the library never imports the app, and no two parts import each other (no circles),
counting every import statement, also those inside functions."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return out


def _component(module: str, top: str) -> str | None:
    """``rtcore.runs.plan`` -> ``rtcore.runs`` (a subpackage), ``rtcore.cache`` -> itself."""
    parts = module.split(".")
    if parts[0] != top:
        return None
    if len(parts) == 1:
        return top
    candidate = ROOT / parts[0] / parts[1]
    return f"{top}.{parts[1]}" if candidate.is_dir() or candidate.with_suffix(".py").is_file() else None


def _graph(top: str) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in (ROOT / top).rglob("*.py"):
        src = _component(_module_name(path), top)
        if src is None or src == top:
            continue
        for mod in _imports(path):
            dst = _component(mod, top)
            if dst is not None and dst not in (src, top):
                graph[src].add(dst)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_the_library_never_imports_the_app_or_streamlit() -> None:
    bad = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.split(".")[0] in ("app", "pages", "streamlit"))
           for p in (ROOT / "rtcore").rglob("*.py")}
    assert not {k: v for k, v in bad.items() if v}


def test_no_part_of_the_library_imports_another_that_imports_it_back() -> None:
    graph = _graph("rtcore")
    assert not _cycles(graph), _cycles(graph)
    assert "rtcore.transfer" not in graph["rtcore.pipeline"] and "rtcore.pipeline" not in graph["rtcore.transfer"]
    assert "rtcore.attacks" not in graph["rtcore.models"]  # backbones do not depend on the attacks
    below_runs = [c for c, deps in graph.items() if "rtcore.runs" in deps and c not in ("rtcore.cli", "rtcore.pipeline")]
    assert not below_runs  # only the front ends build on the runs


def test_no_part_of_the_app_imports_another_that_imports_it_back() -> None:
    graph = _graph("app")
    assert not _cycles(graph), _cycles(graph)
