"""The backbone-zoo page (pages/8_zoo.py): a sweep's calibration across backbones, coloured by how each
backbone was pretrained.

It reads a sweep folder with :func:`rtcore.runs.sweep.load_sweep` (a tidy frame with a ``protocol`` column) and
draws with the dashboard's look (:mod:`app.figures`, :func:`app.view.chart`). The pure functions
(:func:`filters`, :func:`calibration_figure`, :func:`backbone_table`, :func:`rank_agreement`) take that frame
and return figures or frames; :func:`render` draws the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from rtcore.runs.sweep import list_sweeps, load_sweep

from .figures import compare_curves
from .figures.style import layout, look
from .state import eps_short as eps_label
from .state import private
from .view import chart

TITLE = "Backbone zoo: does the bound predict robustness across backbones?"
#: the container of the calibration chart; the browser test waits for ``.st-key-zoo_calibration``
CHART_KEY = "zoo_calibration"
PROTOCOL_COLORS = {"adversarial": "#0072B2", "standard": "#E69F00", "self-supervised": "#009E73",
                   "random init": "#CC79A7", "unknown": "#7F7F7F"}
#: columns that identify a setting of the sweep other than backbone, task and eps (one is shown at a time)
SETTINGS = ("norm", "probe", "transfer", "attack", "n", "seed")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down", "pentagon", "hexagon")
SWEEP = "assets/zoo.toml"
HOW_TO = (f"This page draws a finished sweep. Run the small one that ships with the dashboard, offline (the five "
          f"bundled backbones on two tasks, no download), in a terminal in the repository:\n\n"
          f"    .venv/bin/python -m rtcore sweep {SWEEP}\n\n"
          "It took 7.5 min on 2 CPU cores; its results go to `<cache>/sweeps/zoo` and appear here (reload the "
          "page). Any other sweep works too: "
          "type its `--out` folder above.")


def settings_of(df: pd.DataFrame) -> dict[str, list[object]]:
    """The values of each setting column present in the frame (those with more than one need a choice)."""
    return {c: list(dict.fromkeys(df[c].tolist())) for c in SETTINGS if c in df.columns}


def filters(df: pd.DataFrame, choice: dict[str, object], tasks: Sequence[str] | None = None,
            eps: Sequence[float] | None = None) -> pd.DataFrame:
    """The rows of one setting (``choice``: column -> value) and the chosen tasks and eps (all when None)."""
    keep = pd.Series(True, index=df.index)
    for col, value in choice.items():
        if col in df.columns:
            keep &= df[col] == value
    if tasks is not None:
        keep &= df["task"].isin(list(tasks))
    if eps is not None:
        keep &= df["eps"].round(9).isin([round(float(e), 9) for e in eps])
    return df[keep]


def calibration_figure(df: pd.DataFrame) -> go.Figure:
    """Bound against empirical robust accuracy, one dot per (backbone, task, eps), coloured by protocol,
    one symbol per task; the diagonal is where the bound predicts the attack exactly."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="bound = empirical", hoverinfo="skip",
                    line={"color": "#555555", "dash": "dot", "width": look().line})
    tasks = list(dict.fromkeys(df["task"]))
    symbol = {t: SYMBOLS[i % len(SYMBOLS)] for i, t in enumerate(tasks)}
    norm = str(df["norm"].iloc[0]) if "norm" in df.columns and len(df) else "linf"
    for proto in [p for p in PROTOCOL_COLORS if p in set(df["protocol"])]:
        rows = df[df["protocol"] == proto]
        custom = list(zip(rows["backbone"], rows["task"], [eps_label(e, norm) for e in rows["eps"]],
                          rows["clean_acc"] if "clean_acc" in rows else [math.nan] * len(rows)))
        fig.add_scatter(x=rows["robust_acc"], y=rows["bound"], mode="markers", name=proto, customdata=custom,
                        marker={"color": PROTOCOL_COLORS[proto], "size": look().marker + 2, "opacity": 0.85,
                                "symbol": [symbol[t] for t in rows["task"]], "line": {"width": 0.5, "color": "white"}},
                        hovertemplate="%{customdata[0]}<br>%{customdata[1]} · ε %{customdata[2]}<br>"
                                      "empirical %{x:.3f}<br>bound %{y:.3f}<br>clean %{customdata[3]:.3f}"
                                      "<extra>%{fullData.name}</extra>")
    for task in tasks:  # the symbols' legend (no data)
        fig.add_scatter(x=[None], y=[None], mode="markers", name=f"task: {task}", hoverinfo="skip",
                        marker={"color": "#999999", "size": look().marker, "symbol": symbol[task]})
    layout(fig, "Calibration across the zoo", "empirical robust accuracy (attack)", "bound (ρ > Δ)", height=560,
           legend="bottom", subtitle="bound vs empirical robust accuracy · colour: pretraining · symbol: task")
    fig.update_xaxes(range=[-0.03, 1.03])
    fig.update_yaxes(range=[-0.03, 1.03])
    return fig


def backbone_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per backbone (its protocol): means over the shown tasks and eps of clean and robust accuracy, bound,
    and the gap robust - bound (how conservative the bound is for it)."""
    cols = [c for c in ("clean_acc", "robust_acc", "bound") if c in df.columns]
    out = df.groupby(["backbone", "protocol"], sort=False)[cols].mean().reset_index()
    out["gap"] = out["robust_acc"] - out["bound"]
    out["points"] = df.groupby(["backbone", "protocol"], sort=False).size().to_numpy()
    return out.sort_values("robust_acc", ascending=False).rename(columns={
        "clean_acc": "clean", "robust_acc": "robust (attack)", "gap": "robust − bound"})


def rank_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Per (task, eps) with at least three backbones: the Spearman correlation between the backbones'
    bound and their robust accuracy (1: the bound orders the backbones as the attack does; NaN when
    one of them is equal for every backbone, e.g. a bound of 0 everywhere)."""
    rows = []
    norm = str(df["norm"].iloc[0]) if "norm" in df.columns and len(df) else "linf"
    for (task, eps), g in df.groupby(["task", "eps"], sort=False):
        if g["backbone"].nunique() < 3:
            continue
        rho = g["bound"].rank().corr(g["robust_acc"].rank())
        rows.append({"task": task, "ε": eps_label(eps, norm), "backbones": int(g["backbone"].nunique()),
                     "spearman": rho})
    return pd.DataFrame(rows, columns=["task", "ε", "backbones", "spearman"])


@st.cache_data(show_spinner=False, max_entries=8)
def _load(path: str, stamp: float) -> pd.DataFrame:
    return load_sweep(path)


def _stamp(path: Path) -> float:
    """Changes whenever the sweep folder gets new results (a rerun, a unit landing)."""
    files = [path / "summary.csv", path / "units"]
    return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)


def choose_folder() -> Path | None:
    """The sweep folder: one found under the cache's ``sweeps/`` or a typed path."""
    found = list_sweeps()
    c1, c2 = st.columns([1, 2])
    names = [p.name for p in found]
    picked = c1.selectbox("Sweep (under the cache's sweeps/)", names, index=0 if names else None,
                          key="zoo_sweep", placeholder="none found")
    typed = c2.text_input("…or a sweep folder (the --out of `python -m rtcore sweep`)", key="zoo_path").strip()
    if typed:
        return Path(typed).expanduser()
    if picked is not None:
        return found[names.index(picked)]
    return None


def render() -> None:
    """Draw the page."""
    st.title(TITLE)
    st.markdown("One dot per (backbone, task, ε) of a sweep: the bound against the empirical robust accuracy, "
                "coloured by how the backbone was pretrained (from its model card; *unknown* for timm and user "
                "backbones). On the diagonal the bound predicts the attack exactly; below it, it is conservative. "
                "Δ comes from an attack, so the bound is a prediction, not a certificate.")
    folder = choose_folder()
    if folder is None:
        st.info(f"**No sweep found yet.** {HOW_TO}")
        return
    try:
        df = _load(str(folder), _stamp(folder))
    except ValueError as e:
        st.warning(f"{e}. {HOW_TO}")
        return
    options = settings_of(df)
    varied = {c: v for c, v in options.items() if len(v) > 1}
    choice = {c: v[0] for c, v in options.items()}
    if varied:
        cols = st.columns(len(varied))
        for col, (name, values) in zip(cols, varied.items()):
            choice[name] = col.selectbox(name, values, key=f"zoo_{name}")
    tasks_all = list(dict.fromkeys(df["task"]))
    tasks = st.multiselect("Tasks", tasks_all, default=tasks_all, key="zoo_tasks")
    shown = filters(df, choice, tasks)
    backbones = list(dict.fromkeys(shown["backbone"]))
    st.caption(f"{private(str(folder))} · {len(backbones)} backbones × {len(tasks)} tasks × {shown['eps'].nunique()} ε · "
               + ", ".join(f"{k} {v}" for k, v in choice.items()))
    if shown.empty:
        st.info("No rows for this choice: pick at least one task.")
        return
    with st.container(key=CHART_KEY):
        chart("zoo_calibration_chart", calibration_figure, shown)
    st.subheader("Per backbone")
    st.dataframe(backbone_table(shown), hide_index=True, key="zoo_backbones",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("clean", "robust (attack)", "bound", "robust − bound")})
    agree = rank_agreement(shown)
    if not agree.empty:
        known = agree["spearman"].dropna()
        median = f"median {known.median():.2f} over {len(known)} (task, ε)" if len(known) else "undefined so far"
        st.caption(f"Does the bound order the backbones as the attack does? Spearman correlation between the "
                   f"backbones' bound and robust accuracy per (task, ε): {median}; empty where the bound (or the "
                   f"robust accuracy) is the same for every backbone.")
        st.dataframe(agree, hide_index=True, key="zoo_agreement",
                     column_config={"spearman": st.column_config.NumberColumn(format="%.2f")})
    picked = st.multiselect("Curves across ε for the backbones", backbones, default=[], key="zoo_curves",
                            placeholder="choose backbones to draw their curves")
    if picked:
        chart("zoo_curves_chart", compare_curves, shown[shown["backbone"].isin(picked)])
