"""Transfer-method figures: robust accuracy and bound against eps per method, mean Δ per method against the
base backbone's, and how far fine-tuning moved each block. Colour = method."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .style import ACC_AXIS, DASH, DELTA_AXIS, METRIC_NAMES, NEUTRAL, colours_for, eps_curves, hover_eps, \
    layout


def method_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Robust accuracy (solid, 95 % intervals) and bound (dashed) against eps, one colour per method."""
    dashes = {m: DASH[m] for m in ("robust_acc", "bound")}
    fig, _ = eps_curves(summary, "method", dashes, METRIC_NAMES, "Robust accuracy and bound per method", ACC_AXIS,
                        current_eps, ci=("robust_acc",), key=True)
    fig.update_yaxes(range=[-0.02, 1.04])
    return fig


def method_delta_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Mean Δ against eps per method, and the base backbone's (grey, dotted): did fine-tuning make the
    representation more or less vulnerable?"""
    fig, axis = eps_curves(summary, "method", {"mean_delta": "solid"}, {"mean_delta": "mean Δ"},
                           "Mean Δ per method, and of the base backbone", f"mean {DELTA_AXIS}", current_eps)
    if len(summary):
        first = summary[summary["method"] == summary["method"].iloc[0]].sort_values("eps")
        fig.add_scatter(x=axis.x(first["eps"]), y=first["mean_delta_base"], mode="lines",
                        name="base backbone (before)", line={"color": NEUTRAL, "dash": "dot", "width": 3},
                        customdata=hover_eps(first, axis.norm),
                        hovertemplate="base backbone<br>ε %{customdata}<br>mean Δ %{y:.3f}<extra></extra>")
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
