"""Compare-backbones figures: robust accuracy and bound per task and backbone at the cursor's eps (bars with
95 % intervals), and both against eps per task. Colour = backbone; the bound is hatched or dashed."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..state import eps_short
from .style import ACC_AXIS, DASH, METRIC_NAMES, NEUTRAL, PLOT_PX, EpsAxis, at_eps, bar_slot_px, bar_text, \
    ci_text, colours_for, curves, fitted_labels, interval, layout, legend_key, norm_of

PANELS = (("robust_acc", "robust accuracy (attack)", ""), ("bound", "bound (ρ > Δ), hatched", "/"))


def compare_at_eps(summary: pd.DataFrame, eps: float, plot: str = "full") -> go.Figure:
    """Two panels at one eps: robust accuracy (left) and bound (right) per task and backbone with 95 %
    intervals. A bar carries its value only where the label fits (hover and the table always have it); a
    bound panel of zeros says so in words."""
    rows = at_eps(summary, eps)
    colours = colours_for(summary["backbone"])
    tasks = list(dict.fromkeys(summary["task"]))
    n_bb = max(1, rows["backbone"].nunique())
    slot = bar_slot_px(PLOT_PX[plot] / 2, len(tasks), n_bb)
    fig = make_subplots(rows=1, cols=2, subplot_titles=[t for _, t, _ in PANELS], shared_yaxes=True,
                        horizontal_spacing=0.05)
    for bb, r in rows.groupby("backbone", sort=False):
        c = colours[str(bb)]
        for col, (metric, _, pattern) in enumerate(PANELS, start=1):
            fig.add_bar(x=r["task"], y=r[metric], name=str(bb), legendgroup=str(bb), showlegend=col == 1,
                        marker={"color": c, "line": {"color": c, "width": 1.5},
                                "pattern": {"shape": pattern, "fillmode": "overlay", "fgcolor": "white", "size": 9}},
                        text=fitted_labels(r[metric].tolist(), slot), **bar_text([c] * len(r)),
                        error_y=interval(r, metric, NEUTRAL), customdata=ci_text(r, metric),
                        hovertemplate=f"{bb}<br>%{{x}}: %{{customdata}}<extra></extra>", row=1, col=col)
    if len(rows) and float(rows["bound"].max()) == 0.0:
        fig.add_annotation(text="every bound is 0 at this ε:<br>no test point has ρ(x) > Δ(x)", xref="x2 domain",
                           yref="y2 domain", x=0.5, y=0.6, showarrow=False, font={"size": 15, "color": NEUTRAL})
    layout(fig, f"Robust accuracy (left) and bound (right) per task at ε = {eps_short(eps, norm_of(summary))}",
           "", ACC_AXIS, barmode="group", height=480, legend_title="backbone (colour)", plot=plot,
           subtitle="whiskers: 95 % intervals; values in the table below")
    fig.update_yaxes(range=[0, 1.08], title_text=None)
    fig.update_yaxes(title_text=ACC_AXIS, col=1)
    fig.update_xaxes(title_text="downstream task", type="category", categoryorder="array", categoryarray=tasks,
                     showgrid=False)
    fig.update_annotations(font={"size": 15})
    return fig


def compare_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Per task (one panel each): robust accuracy (solid) and bound (dashed) against eps per backbone."""
    tasks = list(dict.fromkeys(summary["task"]))
    cols = max(1, min(3, len(tasks)))
    nrows = max(1, -(-len(tasks) // cols))
    norm = norm_of(summary)
    axis = EpsAxis(summary["eps"], norm)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=tasks, shared_yaxes=True, horizontal_spacing=0.04,
                        vertical_spacing=0.2 / nrows + 0.08)
    dashes = {m: DASH[m] for m in ("robust_acc", "bound")}
    colours = colours_for(summary["backbone"])
    for i, task in enumerate(tasks):
        r, c = i // cols + 1, i % cols + 1
        curves(fig, summary[summary["task"] == task], "backbone", dashes, METRIC_NAMES, axis, legend=i == 0,
               colours=colours, row=r, col=c)
        axis.apply(fig, title=r == nrows, row=r, col=c)
        axis.mark(fig, current_eps, label=False, row=r, col=c)
    legend_key(fig, dashes, METRIC_NAMES)
    layout(fig, "Robust accuracy and bound against ε, per task (dotted line: cursor ε)", "", "",
           height=300 * nrows + 110, legend_title="backbone (colour)")
    fig.update_yaxes(range=[-0.02, 1.04])
    fig.update_yaxes(title_text=ACC_AXIS, col=1)
    fig.update_annotations(font={"size": 15})
    return fig
