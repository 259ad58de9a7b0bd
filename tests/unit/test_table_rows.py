"""rtcore.tables' row selection: the rows at one eps, matched as every table matches eps, and a table's norm."""

from __future__ import annotations

import pandas as pd

from rtcore.config import eps_key
from rtcore.tables import at_eps, head_masked, in_order, table_norm


def test_rows_at_one_eps_match_as_the_library_rounds_eps() -> None:
    t = pd.DataFrame({"eps": [0.0, 4 / 255, eps_key(4 / 255) + 1e-12, 8 / 255], "norm": "linf", "k": [0, 1, 2, 3]})
    assert at_eps(t, 4 / 255)["k"].tolist() == [1, 2], "a value a rounding error away is the same eps"
    assert at_eps(t, 0.0)["k"].tolist() == [0] and at_eps(t, 2 / 255).empty
    assert at_eps(pd.DataFrame(), 4 / 255).empty, "an empty table, with no columns yet"


def test_a_tables_norm() -> None:
    assert table_norm(pd.DataFrame({"norm": ["l2", "l2"]})) == "l2"
    assert table_norm(pd.DataFrame({"norm": ["l2", "linf"]})) == "linf", "mixed: the default"
    assert table_norm(pd.DataFrame(), default="l2") == "l2"


def test_rows_in_order_with_a_row_for_each_one_missing() -> None:
    t = pd.DataFrame({"task": ["b", "a", "z"], "clean": ["0.9", "0.8", "0.1"], "robust": ["0.5", "0.4", "0.0"]})
    out = in_order(t, "task", ["a", "c", "b"], "…", known=pd.DataFrame({"task": ["c"], "clean": ["0.7"]}))
    assert out.to_dict("list") == {"task": ["a", "c", "b", "z"], "clean": ["0.8", "0.7", "0.9", "0.1"],
                                   "robust": ["0.4", "…", "0.5", "0.0"]}, "z is not named: kept, last"
    assert in_order(t.iloc[:0], "task", ["a"], "…").to_dict("list") == {"task": ["a"], "clean": ["…"],
                                                                       "robust": ["…"]}


def test_bound_head_is_missing_where_the_head_attack_has_not_run() -> None:
    t = pd.DataFrame({"bound_head": [0.5, 0.6], "head_attack": [True, False], "bound": [0.4, 0.5]})
    out = head_masked(t)
    assert out["bound_head"].iloc[0] == 0.5 and pd.isna(out["bound_head"].iloc[1]) and t["bound_head"].iloc[1] == 0.6
    assert head_masked(t.drop(columns="head_attack")).equals(t.drop(columns="head_attack")), "nothing to mask by"


def test_task_sizes_per_task() -> None:
    from rtcore.tables import task_sizes

    t = pd.DataFrame({"task": ["a", "a", "mine"], "n": [200, 200, 30], "eps": [0.0, 0.1, 0.0]})
    assert task_sizes(t) == {"a": 200, "mine": 30} and task_sizes(pd.DataFrame()) == {}
