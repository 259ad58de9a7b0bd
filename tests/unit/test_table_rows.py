"""rtcore.tables' row selection: the rows at one eps, matched as every table matches eps, and a table's norm."""

from __future__ import annotations

import pandas as pd

from rtcore.config import eps_key
from rtcore.tables import at_eps, table_norm


def test_rows_at_one_eps_match_as_the_library_rounds_eps() -> None:
    t = pd.DataFrame({"eps": [0.0, 4 / 255, eps_key(4 / 255) + 1e-12, 8 / 255], "norm": "linf", "k": [0, 1, 2, 3]})
    assert at_eps(t, 4 / 255)["k"].tolist() == [1, 2], "a value a rounding error away is the same eps"
    assert at_eps(t, 0.0)["k"].tolist() == [0] and at_eps(t, 2 / 255).empty
    assert at_eps(pd.DataFrame(), 4 / 255).empty, "an empty table, with no columns yet"


def test_a_tables_norm() -> None:
    assert table_norm(pd.DataFrame({"norm": ["l2", "l2"]})) == "l2"
    assert table_norm(pd.DataFrame({"norm": ["l2", "linf"]})) == "linf", "mixed: the default"
    assert table_norm(pd.DataFrame(), default="l2") == "l2"
