"""The theory page's figure: the exact 2-D linear toy in input and feature space (no streamlit)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import PALETTE

# ---------------------------------------------------------------- theory: the linear toy

def linear_toy_figure(toy: Any) -> go.Figure:
    """Input space (eps-ball around x) and feature space (its image under A, the Δ-circle,
    the head's decision boundary and the margin ρ) side by side, equal aspect."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=["input space: x and its ε-ball", "feature space: g(x) = A x"])
    # input space
    fig.add_scatter(x=toy.ball[:, 0], y=toy.ball[:, 1], fill="toself", mode="lines", name=f"ε-ball ({toy.norm})",
                    line={"color": PALETTE[0]}, fillcolor="rgba(76,120,168,0.25)", row=1, col=1)
    fig.add_scatter(x=[toy.x[0]], y=[toy.x[1]], mode="markers", name="x", marker={"color": PALETTE[0], "size": 10},
                    row=1, col=1)
    pre = toy.A.T @ toy.w  # boundary pre-image: pre·x + b = 0
    lo_in, hi_in = _box(np.vstack([toy.ball, toy.x[None]]))
    seg = _line_segment(pre, toy.b, lo_in, hi_in)
    if seg is not None:
        fig.add_scatter(x=seg[:, 0], y=seg[:, 1], mode="lines", name="decision boundary (pulled back)",
                        line={"color": PALETTE[3], "width": 2.5}, row=1, col=1)
    # feature space
    circle = toy.gx + toy.delta * np.stack([np.cos(np.linspace(0, 2 * np.pi, 120)),
                                            np.sin(np.linspace(0, 2 * np.pi, 120))], axis=1)
    fig.add_scatter(x=circle[:, 0], y=circle[:, 1], mode="lines", name="circle of radius Δ (what the bound assumes)",
                    line={"color": PALETTE[1], "dash": "dash"}, row=1, col=2)
    fig.add_scatter(x=toy.image[:, 0], y=toy.image[:, 1], fill="toself", mode="lines",
                    name="image of the ε-ball (what the attack can reach)", line={"color": PALETTE[0]},
                    fillcolor="rgba(76,120,168,0.25)", row=1, col=2)
    fig.add_scatter(x=[toy.gx[0], toy.gx[0] + toy.delta_direction[0]],
                    y=[toy.gx[1], toy.gx[1] + toy.delta_direction[1]], mode="lines", name="Δ (largest shift)",
                    line={"color": PALETTE[1], "width": 3}, row=1, col=2)
    foot = toy.gx - toy.rho * toy.w / np.linalg.norm(toy.w)
    fig.add_scatter(x=[toy.gx[0], foot[0]], y=[toy.gx[1], foot[1]], mode="lines", name="ρ (margin)",
                    line={"color": PALETTE[2], "width": 3}, row=1, col=2)
    fig.add_scatter(x=[toy.gx[0]], y=[toy.gx[1]], mode="markers", name="g(x)", marker={"color": PALETTE[0], "size": 10},
                    showlegend=False, row=1, col=2)
    lo_f, hi_f = _box(np.vstack([circle, toy.image, foot[None], toy.gx[None]]))
    seg = _line_segment(toy.w, toy.b, lo_f, hi_f)
    if seg is not None:
        fig.add_scatter(x=seg[:, 0], y=seg[:, 1], mode="lines", name="decision boundary w·z + b = 0",
                        line={"color": PALETTE[3], "width": 2.5}, row=1, col=2)
    for col, (lo, hi) in ((1, (lo_in, hi_in)), (2, (lo_f, hi_f))):
        fig.update_xaxes(range=[lo[0], hi[0]], title_text="coordinate 1", row=1, col=col)
        fig.update_yaxes(range=[lo[1], hi[1]], title_text="coordinate 2", row=1, col=col)
    fig.update_yaxes(scaleanchor="x", scaleratio=1, row=1, col=1)
    fig.update_yaxes(scaleanchor="x2", scaleratio=1, row=1, col=2)
    fig.update_layout(height=470, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.15, "x": 0})
    return fig


def _box(points: np.ndarray, pad: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """A square-ish view box around points with some padding."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = float(max((hi - lo).max(), 1e-3))
    mid = (lo + hi) / 2
    half = span * (0.5 + pad)
    return mid - half, mid + half


def _line_segment(w: np.ndarray, b: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """The part of the line {z: w·z + b = 0} inside the box [lo, hi] (None if w = 0)."""
    if float(np.linalg.norm(w)) < 1e-12:
        return None
    p0 = -b * w / float(w @ w)
    d = np.array([-w[1], w[0]]) / float(np.linalg.norm(w))
    reach = float(np.linalg.norm(hi - lo)) + float(np.linalg.norm(p0 - (lo + hi) / 2))
    return np.stack([p0 - reach * d, p0 + reach * d])
