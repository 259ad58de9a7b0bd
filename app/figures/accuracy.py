"""Accuracy figures: bars per task at the cursor's eps, curves across eps, the calibration scatter (landing
page) and the probe trade-off. Colour = task (or probe kind); the quantity = fill or line style."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..state import eps_short
from .style import (
    ACC_AXIS,
    DASH,
    METRIC_NAMES,
    NEUTRAL,
    PLOT_PX,
    INK,
    EpsAxis,
    at_eps,
    bar_slot_px,
    ci_text,
    colours_for,
    fitted_labels,
    hover_eps,
    interval,
    bar_text,
    layout,
    legend_key,
    norm_of,
    task_ticks,
)

#: the bars' quantities and their fill (colour is the task): light, solid, hatched
BAR_STYLE: dict[str, dict[str, object]] = {
    "clean_acc": {"opacity": 0.45},
    "robust_acc": {"opacity": 1.0},
    "bound": {"pattern": {"shape": "/", "fillmode": "overlay", "fgcolor": "white", "size": 9}}}


BAR_KEY = ("per task: light = clean accuracy · solid = robust accuracy (attack) · hatched = bound (ρ > Δ) · "
           "whiskers: 95 % intervals")


def accuracy_at_eps(summary: pd.DataFrame, eps: float, tasks: Sequence[str] = (), plot: str = "full",
                    norm: str | None = None) -> go.Figure:
    """Grouped bars per task at one eps: clean accuracy, robust accuracy (attack), bound, each with its 95 %
    interval. Every task of ``tasks`` stays on the axis: one still computing reads "computing…" (with its
    clean accuracy once known). Value labels are drawn only where they fit the bar (``plot`` width). With no
    results yet it is the empty frame of the chart: every task "computing…"."""
    norm = norm or norm_of(summary)
    tasks = list(dict.fromkeys([*tasks, *(summary["task"] if len(summary) else [])]))
    colours = colours_for(tasks)
    rows = at_eps(summary, eps).drop_duplicates("task").set_index("task") if len(summary) else pd.DataFrame()
    clean = (summary[summary["eps"] == 0].drop_duplicates("task").set_index("task") if len(summary)
             else pd.DataFrame())
    slot = bar_slot_px(PLOT_PX[plot], len(tasks), len(BAR_STYLE))
    fig = go.Figure()
    for m, style in BAR_STYLE.items():
        src = clean if m == "clean_acc" else rows
        have = [t for t in tasks if t in src.index and m in src]
        data = src.loc[have] if have else src.iloc[:0]
        values = data[m].tolist() if len(data) else []
        fig.add_bar(x=have, y=values, name=METRIC_NAMES[m], showlegend=False, legendgroup=m,
                    marker={"color": [colours[t] for t in have], "line": {"color": [colours[t] for t in have],
                                                                          "width": 1.5}, **style},
                    text=fitted_labels(values, slot), **bar_text([colours[t] for t in have], style.get("opacity", 1) < 1), error_y=interval(data, m, NEUTRAL) if len(data) else None,
                    customdata=ci_text(data, m) if len(data) else [],
                    hovertemplate="%{x}<br>" + METRIC_NAMES[m] + ": %{customdata}<extra></extra>")
    layout(fig, f"Per task at ε = {eps_short(eps, norm)} ({norm})", "downstream task", ACC_AXIS, barmode="group",
           height=440, bargap=0.2, showlegend=False, plot=plot, subtitle=BAR_KEY)
    task_ticks(fig, tasks, colours, rows.index)
    fig.update_yaxes(range=[0, 1.08])
    return fig


def accuracy_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Robust accuracy (solid), bound (dashed) and bound in the head subspace (dotted, once the head-subspace
    attack has run) against eps, one colour per task, with 95 % intervals on the first two."""
    fig = go.Figure()
    norm = norm_of(summary)
    axis = EpsAxis(summary["eps"], norm)
    colours = colours_for(summary["task"])
    for task, rows in summary.groupby("task", sort=False):
        rows = rows.sort_values("eps")
        c = colours[str(task)]
        for metric in ("robust_acc", "bound", "bound_head"):
            data = rows[rows["head_attack"].astype(bool)] if metric == "bound_head" else rows
            if data.empty:
                continue
            fig.add_scatter(x=axis.x(data["eps"]), y=data[metric], mode="lines+markers", name=str(task),
                            legendgroup=str(task), showlegend=metric == "robust_acc",
                            line={"color": c, "dash": DASH[metric], "width": 3 if metric == "robust_acc" else 2.5},
                            marker={"size": 7}, error_y=interval(data, metric) if metric != "bound_head" else None,
                            customdata=list(zip(hover_eps(data, norm), ci_text(data, metric))),
                            hovertemplate=f"{task}<br>ε %{{customdata[0]}}<br>{METRIC_NAMES[metric]}: "
                                          "%{customdata[1]}<extra></extra>")
    legend_key(fig, [(METRIC_NAMES[m], {"line": {"dash": d}}) for m, d in DASH.items()], group="line style")
    layout(fig, "Robust accuracy and bounds across ε", "", ACC_AXIS, height=480, legend_title="task (colour)")
    fig.update_yaxes(range=[-0.02, 1.04])
    axis.apply(fig)
    axis.mark(fig, current_eps)
    return fig


def calibration_scatter(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Bound against empirical robust accuracy for every (task, eps) with both intervals, and the diagonal:
    on it the bound predicts the attack exactly, below it it is conservative (as it must be)."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="bound = empirical",
                    line={"color": NEUTRAL, "dash": "dot", "width": 2}, hoverinfo="skip")
    norm = norm_of(summary)
    colours = colours_for(summary["task"])
    for task, rows in summary.groupby("task", sort=False):
        big = [current_eps is not None and abs(e - current_eps) < 1e-9 for e in rows["eps"]]
        fig.add_scatter(x=rows["robust_acc"], y=rows["bound"], mode="markers", name=str(task),
                        marker={"color": colours[str(task)], "size": [16 if b else 9 for b in big],
                                "line": {"width": [2 if b else 0 for b in big], "color": "#1a1a1a"}},
                        error_x=interval(rows, "robust_acc"), error_y=interval(rows, "bound"),
                        customdata=list(zip(hover_eps(rows, norm), ci_text(rows, "robust_acc"), ci_text(rows, "bound"))),
                        hovertemplate=(f"{task}<br>ε %{{customdata[0]}}<br>empirical %{{customdata[1]}}"
                                       "<br>bound %{customdata[2]}<extra></extra>"))
    layout(fig, "Calibration: bound vs empirical (large dot: cursor ε)", "empirical robust accuracy (attack)",
           "bound (ρ > Δ)", height=520, legend_title="task (colour)")
    fig.update_xaxes(range=[-0.03, 1.03], constrain="domain")
    fig.update_yaxes(range=[-0.03, 1.03], scaleanchor="x", scaleratio=1)
    return fig


TRADEOFF_PANELS = (("robust_acc", "robust accuracy (attack)"), ("bound", "bound: ρ > Δ"),
                   ("bound_head", "bound, head subspace: ρ > Δ_P"))


def probe_tradeoff(summary: pd.DataFrame, current_eps: float | None = None, labels: dict[str, str] | None = None
                   ) -> go.Figure:
    """One backbone and task: robust accuracy, bound and bound (head subspace) against eps with 95 %
    intervals, one colour per probe kind (what a Δ-aware head buys in bound and costs in clean accuracy)."""
    norm = norm_of(summary)
    axis = EpsAxis(summary["eps"], norm)
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in TRADEOFF_PANELS], shared_yaxes=True,
                        horizontal_spacing=0.04)
    colours = colours_for(summary["probe"])
    for probe, rows in summary.groupby("probe", sort=False):
        rows = rows.sort_values("eps")
        for col, (metric, _) in enumerate(TRADEOFF_PANELS, start=1):
            data = rows[rows["head_attack"].astype(bool)] if metric == "bound_head" else rows
            if data.empty:
                continue
            fig.add_scatter(x=axis.x(data["eps"]), y=data[metric], mode="lines+markers",
                            name=(labels or {}).get(str(probe), str(probe)), legendgroup=str(probe),
                            showlegend=col == 1, line={"color": colours[str(probe)], "width": 3},
                            error_y=interval(data, metric), customdata=list(zip(hover_eps(data, norm),
                                                                                ci_text(data, metric))),
                            hovertemplate=f"{probe}<br>ε %{{customdata[0]}}<br>{METRIC_NAMES[metric]}: "
                                          "%{customdata[1]}<extra></extra>", row=1, col=col)
    layout(fig, "What a Δ-aware head buys and costs (dotted line: cursor ε)", "", ACC_AXIS, height=460,
           legend="bottom", legend_title="probe (colour)")
    for col in (1, 2, 3):
        axis.apply(fig, title=col == 2, row=1, col=col)
        axis.mark(fig, current_eps, label=False, row=1, col=col)
    fig.update_yaxes(range=[-0.02, 1.04], title_text=None)
    fig.update_yaxes(title_text=ACC_AXIS, col=1)
    fig.update_annotations(font={"size": 15})
    return fig
