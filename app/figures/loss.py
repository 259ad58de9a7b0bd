"""Loss-bound figures: bars per task at the cursor's eps and curves across eps (log scale, nats).
Colour = task; the quantity = fill (bars) or line style (curves)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from ..state import eps_short
from .style import (
    LOSS_AXIS,
    PLOT_PX,
    INK,
    EpsAxis,
    at_eps,
    bar_slot_px,
    colours_for,
    fitted_labels,
    hover_eps,
    bar_text,
    layout,
    legend_key,
    norm_of,
    task_ticks,
)

LOSS_NAMES: dict[str, str] = {"clean_loss": "clean loss", "adv_loss": "adversarial loss (attack)",
                              "loss_bound_lse": "bound (ii): log-sum-exp", "loss_bound": "bound (i): max spread × Δ"}
LOSS_BARS: dict[str, dict[str, object]] = {
    "clean_loss": {"opacity": 0.45},
    "adv_loss": {"opacity": 1.0},
    "loss_bound_lse": {"pattern": {"shape": ".", "fillmode": "overlay", "fgcolor": "white", "size": 8}},
    "loss_bound": {"pattern": {"shape": "/", "fillmode": "overlay", "fgcolor": "white", "size": 9}}}
LOSS_DASH: dict[str, str] = {"adv_loss": "solid", "loss_bound_lse": "dashdot", "loss_bound": "dash"}


def loss_at_eps(summary: pd.DataFrame, eps: float, tasks: Sequence[str] = (), plot: str = "full") -> go.Figure:
    """Grouped bars per task at one eps: clean loss, adversarial loss, bound (ii), bound (i), on a log scale;
    value labels (3 significant digits) only where they fit; a task still computing says so on its axis label."""
    rows = at_eps(summary, eps).drop_duplicates("task").set_index("task") if len(summary) else pd.DataFrame()
    tasks = list(dict.fromkeys([*tasks, *rows.index]))
    colours = colours_for(tasks)
    have = [t for t in tasks if t in rows.index]
    slot = bar_slot_px(PLOT_PX[plot], len(tasks), len(LOSS_BARS))
    fig = go.Figure()
    for m, style in LOSS_BARS.items():
        values = rows.loc[have, m].tolist() if have else []
        fig.add_bar(x=have, y=values, name=LOSS_NAMES[m], showlegend=False, legendgroup=m,
                    marker={"color": [colours[t] for t in have], "line": {"color": [colours[t] for t in have],
                                                                          "width": 1.5}, **style},
                    text=fitted_labels(values, slot, "{:.3g}"), **bar_text([colours[t] for t in have], style.get("opacity", 1) < 1),
                    hovertemplate="%{x}<br>" + LOSS_NAMES[m] + ": %{y:.4g} nats<extra></extra>")
    layout(fig, f"Mean loss per task at ε = {eps_short(eps, norm_of(summary))}", "downstream task", LOSS_AXIS,
           barmode="group", height=460, showlegend=False, plot=plot,
           subtitle="light = clean loss · solid = adversarial loss (attack) · dotted = bound (ii) log-sum-exp · "
                    "hatched = bound (i)")
    task_ticks(fig, tasks, colours, rows.index)
    fig.update_yaxes(type="log", dtick="D2")
    return fig


def loss_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Adversarial loss (solid), bound (ii) (dash-dot) and bound (i) (dashed) against eps per task; at eps = 0
    all three are the clean loss."""
    fig = go.Figure()
    norm = norm_of(summary)
    axis = EpsAxis(summary["eps"], norm)
    colours = colours_for(summary["task"])
    for task, rows in summary.groupby("task", sort=False):
        rows = rows.sort_values("eps")
        for m, dash in LOSS_DASH.items():
            fig.add_scatter(x=axis.x(rows["eps"]), y=rows[m], mode="lines+markers", name=str(task),
                            line={"color": colours[str(task)], "dash": dash, "width": 3 if m == "adv_loss" else 2.5},
                            legendgroup=str(task), showlegend=m == "adv_loss", marker={"size": 7},
                            customdata=hover_eps(rows, norm),
                            hovertemplate=f"{task}<br>ε %{{customdata}}<br>{LOSS_NAMES[m]} %{{y:.4g}}<extra></extra>")
    legend_key(fig, [(LOSS_NAMES[m], {"line": {"dash": d}}) for m, d in LOSS_DASH.items()], group="line style")
    layout(fig, "Loss against ε (at ε = 0 all equal the clean loss)", "", LOSS_AXIS, height=460,
           legend_title="task (colour)")
    fig.update_yaxes(type="log", dtick="D2")
    axis.apply(fig)
    axis.mark(fig, current_eps)
    return fig
