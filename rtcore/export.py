"""Tables as files: plain CSV bytes (:func:`csv_bytes`, what ``--out`` writes and the dashboard downloads), and for
papers an evaluation's summary as a LaTeX table (booktabs), one row per backbone, task and probe, one column group
per eps with the empirical robust accuracy (its 95 % interval when present) and the bound.

Nothing but the summary's own numbers: eps are written as ``k/255`` where they are one; text cells are
escaped for LaTeX.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from .config import eps_text

__all__ = ["csv_bytes", "latex_table"]

_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
KEYS = ("backbone", "task", "probe")


def csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as plain CSV (no index, no comments): what ``pandas.read_csv`` reads back."""
    return df.to_csv(index=False).encode()


def _escape(text: object) -> str:
    return "".join(_ESCAPES.get(c, c) for c in str(text))


def _number(v: float, digits: int) -> str:
    return "--" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def latex_table(summary: pd.DataFrame, *, digits: int = 3, caption: str | None = None,
                label: str | None = None) -> str:
    """``summary`` (the columns of :func:`rtcore.evaluate`) as a LaTeX ``table`` with ``booktabs`` rules: per
    (backbone, task, probe) the clean accuracy, then per eps the robust accuracy and the bound."""
    missing = sorted({*KEYS, "eps", "clean_acc", "robust_acc", "bound"} - set(summary.columns))
    if missing:
        raise ValueError(f"the summary has no columns {missing}; give the table rtcore.evaluate returns "
                         f"(or the --out CSV of `python -m rtcore evaluate`)")
    if summary.empty:
        raise ValueError("the summary has no rows; run the evaluation first")
    eps: Sequence[float] = sorted(e for e in summary["eps"].unique() if e > 0)
    keys = [k for k in KEYS if summary[k].nunique() > 1 or k == "task"]
    head = [*(k for k in keys), "clean"] + [f"${_escape(eps_text(e))}$" for e in eps]
    align = "l" * len(keys) + "r" + "c" * len(eps)
    lines = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join([*(" " for _ in keys), " "] + [r"\multicolumn{1}{c}{robust / bound}"] * len(eps)) + r" \\",
             " & ".join(_escape(h) if not h.startswith("$") else h for h in head) + r" \\", r"\midrule"]
    for group, rows in summary.groupby(list(KEYS), sort=False):
        by_eps = rows.set_index("eps")
        cells = [_escape(v) for k, v in zip(KEYS, group) if k in keys]
        cells.append(_number(float(rows["clean_acc"].iloc[0]), digits))
        for e in eps:
            if e not in by_eps.index:
                cells.append("--")
                continue
            r = by_eps.loc[e]
            ci = ""
            if "robust_acc_lo" in r and "robust_acc_hi" in r and not pd.isna(r["robust_acc_lo"]):
                ci = rf" {{\scriptsize [{_number(r['robust_acc_lo'], 2)}, {_number(r['robust_acc_hi'], 2)}]}}"
            cells.append(f"{_number(r['robust_acc'], digits)}{ci} / {_number(r['bound'], digits)}")
        lines.append(" & ".join(cells) + r" \\")
    n = sorted(summary["n"].unique()) if "n" in summary.columns else []
    norm = sorted(summary["norm"].unique()) if "norm" in summary.columns else []
    lines += [r"\bottomrule", r"\end{tabular}"]
    text = caption if caption is not None else (
        "Empirical robust accuracy (95\\% interval) and the bound of Nern et al.\\ per budget"
        + (f" ({', '.join(_escape(x) for x in norm)})" if norm else "")
        + (f", n = {', '.join(str(int(x)) for x in n)} test points per task" if n else "") + ".")
    lines.append(rf"\caption{{{text}}}")
    if label:
        lines.append(rf"\label{{{_escape(label)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
