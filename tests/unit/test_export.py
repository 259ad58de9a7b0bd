"""Tables for papers: the LaTeX table holds the summary's own numbers, escaped text, eps as k/255."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rtcore.cli import main
from rtcore.export import latex_table


def summary() -> pd.DataFrame:
    rows = []
    for task, clean in (("my_task & co", 0.9), ("shapes", 0.7)):
        for eps, robust, bound in ((0.0, clean, clean), (2 / 255, 0.61234, 0.25), (0.05, 0.4, 0.0)):
            rows.append({"backbone": "b", "task": task, "probe": "logistic", "norm": "linf", "eps": eps, "n": 200,
                         "clean_acc": clean, "robust_acc": robust, "robust_acc_lo": robust - 0.05,
                         "robust_acc_hi": robust + 0.05, "bound": bound})
    return pd.DataFrame(rows)


def test_the_latex_table_holds_the_summarys_numbers() -> None:
    text = latex_table(summary())
    assert text.startswith(r"\begin{table}") and text.rstrip().endswith(r"\end{table}")
    assert r"my\_task \& co" in text and "$2/255$" in text and "$0.05$" in text
    assert "0.612 {\\scriptsize [0.56, 0.66]} / 0.250" in text and "n = 200" in text
    assert text.count(r"\\") == 2 + 2  # two header rows, one row per task
    with pytest.raises(ValueError, match="no columns"):
        latex_table(summary().drop(columns=["bound"]))


def test_the_table_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "summary.csv"
    summary().to_csv(src, index=False)
    assert main(["table", str(src), "--out", str(tmp_path / "t.tex")]) == 0
    assert (tmp_path / "t.tex").read_text() == latex_table(pd.read_csv(src))
    assert main(["table", str(tmp_path / "missing.csv")]) == 2
    assert "is not a file" in capsys.readouterr().err
