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


def test_csv_bytes_read_back() -> None:
    from rtcore.export import csv_bytes

    df = pd.DataFrame({"task": ["shapes", "a,b"], "eps": [0.0, 0.0156862745], "robust": [True, False]})
    data = csv_bytes(df)
    assert not data.startswith(b",") and b"\n#" not in data, "no index, no comments"
    import io

    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(data)), df)


def test_eps_text_with_its_norm_reads_back() -> None:
    """With a norm, eps is always text: k/255 (linf, a fraction of a step where it is one), the radius (l2), "0";
    the shortest text that parse_eps_text reads back to the same eps. Without one, as files write it."""
    from rtcore.config import default_eps, eps_grid, eps_key, eps_text
    from rtcore.runs import parse_eps_text

    grid = eps_grid("linf")
    assert [eps_text(e, "linf") for e in grid] == ["0", "1/255", "2/255", "4/255", "8/255", "16/255"]
    assert [eps_text(e, "l2") for e in eps_grid("l2")] == ["0", "0.1", "0.2", "0.4", "0.8", "1.6"]
    assert eps_text(0.05, "linf") == "12.75/255" and eps_text(3.5 / 255, "linf") == "3.5/255"
    assert eps_text(0.4) == "102/255" and eps_text(0.5) == 0.5, "without a norm: unchanged (files)"
    for e, norm in [(0.05, "linf"), (1 / 3, "linf"), (0.123456789, "l2"), (2.5, "l2"), *((g, "linf") for g in grid)]:
        assert eps_key(parse_eps_text(eps_text(e, norm))) == eps_key(e), (e, norm)
    assert default_eps("linf") == grid[3] and default_eps("l2") == 0.4
