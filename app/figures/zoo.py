"""The backbone zoo's figure: a sweep's bound against its empirical robust accuracy, one dot per (backbone, task, eps),
coloured by how the backbone was pretrained (:func:`rtcore.runs.zoo.pretraining_protocol`), one symbol per task."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from rtcore.config import eps_text
from rtcore.tables import table_norm

from .style import calibration_frame, layout, look

PROTOCOL_COLORS = {"adversarial": "#0072B2", "standard": "#E69F00", "self-supervised": "#009E73",
                   "random init": "#CC79A7", "unknown": "#7F7F7F"}
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down", "pentagon", "hexagon")


def calibration_figure(df: pd.DataFrame) -> go.Figure:
    """Bound against empirical robust accuracy, one dot per (backbone, task, eps), coloured by protocol,
    one symbol per task; the diagonal is where the bound predicts the attack exactly."""
    fig = go.Figure()
    calibration_frame(fig)
    tasks = list(dict.fromkeys(df["task"]))
    symbol = {t: SYMBOLS[i % len(SYMBOLS)] for i, t in enumerate(tasks)}
    norm = table_norm(df)
    for proto in [p for p in PROTOCOL_COLORS if p in set(df["protocol"])]:
        rows = df[df["protocol"] == proto]
        custom = list(zip(rows["backbone"], rows["task"], [eps_text(e, norm) for e in rows["eps"]],
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
    return fig
