"""Compare-backbones figures: robust accuracy and bound per task and backbone at the cursor's eps (bars with
95 % intervals), and both against eps, one panel per task. Colour = backbone; the bound is hatched, or dashed
with square markers."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rtcore.config import eps_text
from rtcore.tables import at_eps, table_norm

from .style import ACC_AXIS, ACC_BARS, DASH, METRIC_NAMES, NEUTRAL, PLOT_PX, bar_slot_px, ci_text, colours_for, \
    fitted_labels, interval, layout, look, task_panels, value_labels

PANELS = (("robust_acc", "robust accuracy (attack)", ""), ("bound", "bound (ρ > Δ), hatched", "/"))


def compare_at_eps(summary: pd.DataFrame, eps: float, plot: str = "full") -> go.Figure:
    """Two panels at one eps: robust accuracy (left) and bound (right) per task and backbone with 95 %
    intervals; values above the whiskers where every label fits (hover and the table always have them); a
    bound panel of zeros says so in words."""
    rows = at_eps(summary, eps)
    colours = colours_for(summary["backbone"])
    tasks = list(dict.fromkeys(summary["task"]))
    groups = list(rows.groupby("backbone", sort=False))
    slot = bar_slot_px(PLOT_PX[plot] / 2, len(tasks), max(1, len(groups)))
    texts = fitted_labels({(bb, m): r[m].tolist() for bb, r in groups for m, _, _ in PANELS}, slot)
    fig = make_subplots(rows=1, cols=2, subplot_titles=[t for _, t, _ in PANELS], shared_yaxes=True,
                        horizontal_spacing=0.05)
    for bb, r in groups:
        c = colours[str(bb)]
        for col, (metric, _, pattern) in enumerate(PANELS, start=1):
            fig.add_bar(x=r["task"], y=r[metric], name=str(bb), legendgroup=str(bb), showlegend=col == 1,
                        offsetgroup=str(bb), error_y=interval(r, metric, NEUTRAL), customdata=ci_text(r, metric),
                        marker={"color": c, "line": {"color": c, "width": 1.5},
                                "pattern": {"shape": pattern, "fillmode": "overlay", "fgcolor": "white", "size": 9}},
                        hovertemplate=f"{bb}<br>%{{x}}: %{{customdata}}<extra></extra>", row=1, col=col)
            value_labels(fig, r["task"].tolist(), r, metric, texts[(bb, metric)], str(bb), row=1, col=col)
    if len(rows) and float(rows["bound"].max()) == 0.0:
        fig.add_annotation(text="every bound is 0 at this ε:<br>no test point has ρ(x) > Δ(x)", xref="x2 domain",
                           yref="y2 domain", x=0.5, y=0.6, showarrow=False,
                           font={"size": look().label, "color": NEUTRAL})
    layout(fig, f"Robust accuracy (left) and bound (right) per task at ε = {eps_text(eps, table_norm(summary))}",
           "", ACC_AXIS, barmode="group", height=480, legend_title="backbone (colour)", plot=plot,
           subtitle="whiskers: 95 % intervals; values in the table below")
    fig.update_yaxes(**ACC_BARS, title_text=None)
    fig.update_yaxes(title_text=ACC_AXIS, col=1)
    fig.update_xaxes(title_text="downstream task", type="category", categoryorder="array", categoryarray=tasks,
                     showgrid=False)
    return fig


def compare_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Per task (one panel each): robust accuracy (solid, circles) and bound (dashed, squares) against eps per
    backbone, with 95 % intervals; every column's lowest panel names the eps axis and its units."""
    dashes = {m: DASH[m] for m in ("robust_acc", "bound")}
    return task_panels(summary, "backbone", dashes, METRIC_NAMES, "Robust accuracy and bound against ε", current_eps,
                       "accuracy", ci=tuple(dashes), accuracy=True)
