"""Accuracy figures: bars per task at the cursor's eps, curves across eps (one panel per task), the calibration
scatter (landing page) and the probe trade-off. Colour = task (or probe kind); the quantity = fill, or line
style and marker."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rtcore.config import eps_text
from rtcore.tables import at_eps, table_norm

from .style import ACC_AXIS, ACC_BARS, CURSOR, DASH, METRIC_NAMES, EpsAxis, calibration_frame, ci_text, colours_for, \
    curves, hover_eps, interval, layout, look, panel_axes, task_bars, task_panels

#: the bars' quantities and their fill (colour is the task): light, solid, hatched
BAR_STYLE: dict[str, dict[str, object]] = {
    "clean_acc": {"opacity": 0.45},
    "robust_acc": {"opacity": 1.0},
    "bound": {"pattern": {"shape": "/", "fillmode": "overlay", "fgcolor": "white", "size": 9}}}
BAR_KEY = "per task: light = clean · solid = robust (attack) · hatched = bound (ρ > Δ) · whiskers: 95 % intervals"


def accuracy_at_eps(summary: pd.DataFrame, eps: float, tasks: Sequence[str] = (), plot: str = "full",
                    norm: str | None = None) -> go.Figure:
    """Grouped bars per task at one eps: clean accuracy, robust accuracy (attack), bound, each with its 95 %
    interval and its value above the whisker (all labels, or none where they do not fit). Every task of
    ``tasks`` stays on the axis: one still computing reads "computing…". With no results yet it is the empty
    frame of the chart: every task "computing…"."""
    norm = norm or table_norm(summary)
    tasks = list(dict.fromkeys([*tasks, *(summary["task"] if len(summary) else [])]))
    rows = at_eps(summary, eps).drop_duplicates("task").set_index("task") if len(summary) else pd.DataFrame()
    clean = summary[summary["eps"] == 0].drop_duplicates("task").set_index("task") if len(summary) else rows
    values = pd.concat([clean[[c for c in clean if c.startswith("clean_acc")]],
                        rows[[c for c in rows if c.startswith(("robust_acc", "bound"))]]], axis=1) \
        if len(summary) else pd.DataFrame()
    fig = task_bars(values, tasks, rows.index, BAR_STYLE, METRIC_NAMES,
                    f"Per task at ε = {eps_text(eps, norm)} ({norm})", ACC_AXIS, BAR_KEY, plot)
    fig.update_yaxes(**ACC_BARS)
    return fig


def accuracy_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """One panel per task (its colour): robust accuracy (solid, circles), bound (dashed, squares) and bound in
    the head subspace (dotted, diamonds, once the head-subspace attack has run) against eps, with 95 % intervals
    on the first two."""
    return task_panels(summary, "task", DASH, METRIC_NAMES, "Robust accuracy and bounds across ε", current_eps,
                       "accuracy", ci=("robust_acc", "bound"), accuracy=True)


def calibration_scatter(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Bound against empirical robust accuracy for every (task, eps) with both intervals, and the diagonal: on it
    the bound predicts the attack exactly, below it it is conservative. Both axes are shares, fixed to [0, 1]
    (equal scales: the plot shrinks, the ranges never grow)."""
    fig = go.Figure()
    lk = look()
    calibration_frame(fig)
    norm = table_norm(summary)
    colours = colours_for(summary["task"])
    for task, rows in summary.groupby("task", sort=False):
        big = [current_eps is not None and abs(e - current_eps) < 1e-9 for e in rows["eps"]]
        fig.add_scatter(x=rows["robust_acc"], y=rows["bound"], mode="markers", name=str(task),
                        marker={"color": colours[str(task)], "size": [lk.marker * 2 if b else lk.marker for b in big],
                                "line": {"width": [2 if b else 0 for b in big], "color": "#1a1a1a"}},
                        error_x=interval(rows, "robust_acc"), error_y=interval(rows, "bound"),
                        customdata=list(zip(hover_eps(rows, norm), ci_text(rows, "robust_acc"), ci_text(rows, "bound"))),
                        hovertemplate=(f"{task}<br>ε %{{customdata[0]}}<br>empirical %{{customdata[1]}}"
                                       "<br>bound %{customdata[2]}<extra></extra>"))
    layout(fig, "Calibration: bound vs empirical", "empirical robust accuracy (attack)", "bound (ρ > Δ)",
           height=560, legend="bottom", legend_title="task (colour)", subtitle="large dot: the cursor's ε")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


TRADEOFF_PANELS = (("robust_acc", "robust accuracy"), ("bound", "bound: ρ > Δ"), ("bound_head", "bound: ρ > Δ_P"))


def probe_tradeoff(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """One backbone and task: robust accuracy, bound and bound (head subspace) against eps with 95 % intervals,
    one colour per probe kind (what a Δ-aware head buys in bound and costs in clean accuracy)."""
    axis = EpsAxis(summary["eps"], table_norm(summary))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in TRADEOFF_PANELS], shared_yaxes=True,
                        horizontal_spacing=0.04)
    for col, (metric, _) in enumerate(TRADEOFF_PANELS, start=1):
        curves(fig, summary, "probe", {metric: "solid"}, METRIC_NAMES, axis, ci=(metric,), legend=col == 1,
               row=1, col=col)
    layout(fig, "What a Δ-aware head buys and costs", "", ACC_AXIS, height=460, subtitle=CURSOR,
           legend="bottom", legend_title="probe (colour)")
    panel_axes(fig, axis, [(1, 1), (1, 2), (1, 3)], current_eps)
    fig.update_yaxes(range=[-0.02, 1.04], title_text=None)
    fig.update_yaxes(title_text=ACC_AXIS, col=1)
    return fig
