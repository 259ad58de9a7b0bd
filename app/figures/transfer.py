"""Transfer-method figures: robust accuracy and bound against eps per method, mean Δ per method against the
base backbone's, and how far fine-tuning moved each block. Colour = method."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .style import (
    ACC_AXIS,
    DASH,
    DELTA_AXIS,
    METRIC_NAMES,
    NEUTRAL,
    EpsAxis,
    ci_text,
    colours_for,
    hover_eps,
    interval,
    layout,
    legend_key,
    norm_of,
)


def method_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Robust accuracy (solid, 95 % intervals) and bound (dashed) against eps, one colour per method."""
    fig = go.Figure()
    norm = norm_of(summary)
    axis = EpsAxis(summary["eps"], norm)
    colours = colours_for(summary["method"])
    for method, rows in summary.groupby("method", sort=False):
        rows = rows.sort_values("eps")
        for metric in ("robust_acc", "bound"):
            fig.add_scatter(x=axis.x(rows["eps"]), y=rows[metric], mode="lines+markers", name=str(method),
                            legendgroup=str(method), showlegend=metric == "robust_acc", marker={"size": 7},
                            line={"color": colours[str(method)], "dash": DASH[metric], "width": 3},
                            error_y=interval(rows, metric) if metric == "robust_acc" else None,
                            customdata=list(zip(hover_eps(rows, norm), ci_text(rows, metric))),
                            hovertemplate=f"{method}<br>ε %{{customdata[0]}}<br>{METRIC_NAMES[metric]}: "
                                          "%{customdata[1]}<extra></extra>")
    legend_key(fig, [(METRIC_NAMES[m], {"line": {"dash": DASH[m]}}) for m in ("robust_acc", "bound")],
               group="line style")
    layout(fig, "Robust accuracy and bound per method", "", ACC_AXIS, legend_title="method (colour)")
    fig.update_yaxes(range=[-0.02, 1.04])
    axis.apply(fig)
    axis.mark(fig, current_eps)
    return fig


def method_delta_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Mean Δ against eps per method, and the base backbone's (grey, dotted): did fine-tuning make the
    representation more or less vulnerable?"""
    fig = go.Figure()
    norm = norm_of(summary)
    axis = EpsAxis(summary["eps"], norm)
    colours = colours_for(summary["method"])
    first = None
    for method, rows in summary.groupby("method", sort=False):
        rows = rows.sort_values("eps")
        first = rows if first is None else first
        fig.add_scatter(x=axis.x(rows["eps"]), y=rows["mean_delta"], mode="lines+markers", name=str(method),
                        line={"color": colours[str(method)], "width": 3}, customdata=hover_eps(rows, norm),
                        hovertemplate=f"{method}<br>ε %{{customdata}}<br>mean Δ %{{y:.3f}}<extra></extra>")
    if first is not None:
        fig.add_scatter(x=axis.x(first["eps"]), y=first["mean_delta_base"], mode="lines",
                        name="base backbone (before)", line={"color": NEUTRAL, "dash": "dot", "width": 3},
                        customdata=hover_eps(first, norm),
                        hovertemplate="base backbone<br>ε %{customdata}<br>mean Δ %{y:.3f}<extra></extra>")
    layout(fig, "Mean Δ per method, and of the base backbone", "", f"mean {DELTA_AXIS}",
           legend_title="method (colour)")
    axis.apply(fig)
    axis.mark(fig, current_eps)
    return fig


def block_distance_bars(distances: dict[str, dict[str, float]]) -> go.Figure:
    """Per-block L2 distance of the fine-tuned weights from the pretrained ones, grouped by method
    (``distances[method][block]``)."""
    fig = go.Figure()
    colours = colours_for(distances)
    for label, blocks in distances.items():
        fig.add_bar(x=list(blocks), y=list(blocks.values()), name=label, marker_color=colours[label],
                    hovertemplate=f"{label}<br>block %{{x}}<br>distance %{{y:.3f}}<extra></extra>")
    layout(fig, "How far fine-tuning moved each block", "block (forward order)", "‖θ − θ₀‖₂ (L2 weight distance)",
           barmode="group", legend_title="method (colour)")
    return fig
