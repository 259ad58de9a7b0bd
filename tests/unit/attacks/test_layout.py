"""The attacks' modules import each other in one direction: no circle, counting imports inside
functions (only ``if TYPE_CHECKING:`` blocks, which never run, are left out); and the plans form a registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rtcore.attacks import AttackSettings, create_plan, describe, list_plans, plan_info, register_plan
from rtcore.attacks import plans as plans_mod

PACKAGE = Path(__file__).resolve().parents[3] / "rtcore" / "attacks"


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _sibling_imports(path: Path) -> set[str]:
    """The modules of rtcore.attacks that ``path`` imports anywhere but in a TYPE_CHECKING block."""
    siblings = {p.stem for p in PACKAGE.glob("*.py")}
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            out.update(n.split(".")[0] for n in names if n.split(".")[0] in siblings)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rtcore.attacks."):
            out.add(node.module.split(".")[2])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
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


def test_no_module_of_the_attacks_imports_one_that_imports_it_back() -> None:
    graph = {p.stem: _sibling_imports(p) - {p.stem} for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert _cycle(graph) is None, _cycle(graph)
    assert "plans" in graph["settings"] and "end_to_end" not in graph["adaptive"], "the layers this test guards"
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"], "the walker finds a circle"


def test_the_plans_are_a_registry_the_settings_and_describe_use(monkeypatch: pytest.MonkeyPatch) -> None:
    assert list_plans()[:2] == ["fixed", "adaptive"]
    adaptive = AttackSettings(plan="adaptive")
    feature = "feature attack: 5 start(s) of 30 PGD steps"
    assert describe(adaptive) == f"{plan_info('adaptive').describe(adaptive)}; {feature}"
    with pytest.raises(ValueError, match="plan='greedy' is unknown; use one of \\['fixed', 'adaptive'"):
        AttackSettings(plan="greedy")
    with pytest.raises(ValueError, match="unknown attack plan 'greedy'"):
        plan_info("greedy")
    monkeypatch.setattr(plans_mod, "_REGISTRY", plans_mod.Registry("attack plan"))
    seen: list[str] = []

    def one_run(target, row):  # type: ignore[no-untyped-def]
        seen.append(target.cfg.plan)
        yield from ()

    register_plan("fixed", one_run, lambda s: "no runs")
    register_plan("greedy", one_run, lambda s: f"greedy with {s.targets} targets")
    s = AttackSettings(plan="greedy", targets=2)
    assert describe(s).startswith("greedy with 2 targets; feature attack")
    with pytest.raises(ValueError, match="already registered"):
        register_plan("greedy", one_run, lambda s: "")

    class Target:
        cfg, norm, n_classes, search = s, "linf", 3, None

    assert list(create_plan(Target(), None)) == [] and seen == ["greedy"]  # type: ignore[arg-type]
