"""The theory page's figure: the exact 2-D linear picture of :mod:`rtcore.theory` in input and feature space."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rtcore.theory import LinearToy

from .style import INK, PALETTE, layout, look

BALL_FILL = "rgba(0,114,178,0.22)"


def linear_toy_figure(toy: LinearToy) -> go.Figure:
    """Input space (eps-ball around x, the boundary pulled back) and feature space (the ball's image under A,
    the Δ-circle, the boundary and the margin ρ) side by side, equal aspect."""
    blue, orange, green, boundary = PALETTE[0], PALETTE[1], PALETTE[2], INK
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=["input space: x and its ε-ball", "feature space: g(x) = A x"])
    fig.add_scatter(x=toy.ball[:, 0], y=toy.ball[:, 1], fill="toself", mode="lines", name=f"ε-ball ({toy.norm})",
                    line={"color": blue, "width": 2.5}, fillcolor=BALL_FILL, row=1, col=1)
    fig.add_scatter(x=[toy.x[0]], y=[toy.x[1]], mode="markers", name="x", marker={"color": blue, "size": 11},
                    row=1, col=1)
    if toy.boundary_input is not None:
        fig.add_scatter(x=toy.boundary_input[:, 0], y=toy.boundary_input[:, 1], mode="lines",
                        name="decision boundary (pulled back)", line={"color": boundary, "width": 3}, row=1, col=1)
    fig.add_scatter(x=toy.circle[:, 0], y=toy.circle[:, 1], mode="lines", line={"color": orange, "dash": "dash",
                    "width": 2.5}, name="circle of radius Δ (what the bound assumes)", row=1, col=2)
    fig.add_scatter(x=toy.image[:, 0], y=toy.image[:, 1], fill="toself", mode="lines", fillcolor=BALL_FILL,
                    name="image of the ε-ball (what the attack can reach)", line={"color": blue, "width": 2.5},
                    row=1, col=2)
    fig.add_scatter(x=[toy.gx[0], toy.gx[0] + toy.delta_direction[0]],
                    y=[toy.gx[1], toy.gx[1] + toy.delta_direction[1]], mode="lines", name="Δ (largest shift)",
                    line={"color": orange, "width": 4}, row=1, col=2)
    fig.add_scatter(x=[toy.gx[0], toy.foot[0]], y=[toy.gx[1], toy.foot[1]], mode="lines", name="ρ (margin)",
                    line={"color": green, "width": 4}, row=1, col=2)
    fig.add_scatter(x=[toy.gx[0]], y=[toy.gx[1]], mode="markers", name="g(x)", marker={"color": blue, "size": 11},
                    showlegend=False, row=1, col=2)
    if toy.boundary_feature is not None:
        fig.add_scatter(x=toy.boundary_feature[:, 0], y=toy.boundary_feature[:, 1], mode="lines",
                        name="decision boundary w·z + b = 0", line={"color": boundary, "width": 3}, row=1, col=2)
    layout(fig, "", "coordinate 1", "coordinate 2", height=640 if look().present else 520,
           legend="bottom")  # presenter: the legend takes 8 rows
    for col, (lo, hi) in ((1, toy.view_input), (2, toy.view_feature)):
        fig.update_xaxes(range=[lo[0], hi[0]], row=1, col=col)
        fig.update_yaxes(range=[lo[1], hi[1]], row=1, col=col)
    fig.update_xaxes(constrain="domain")
    fig.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain", row=1, col=1)
    fig.update_yaxes(scaleanchor="x2", scaleratio=1, constrain="domain", row=1, col=2)
    return fig
