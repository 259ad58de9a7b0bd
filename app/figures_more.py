"""Plotly figures of the loss, compare and probe trade-off pages (helpers in :mod:`app.figures`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import (
    ACC_AXIS,
    METRIC_NAMES,
    NEUTRAL,
    EpsAxis,
    at_eps,
    colors_for,
    eps_axis,
    hover_eps,
    layout,
    norm_of,
    style_key,
)
from .state import PROBE_LABELS, eps_short

LOSS_COLORS: dict[str, str] = {"clean_loss": "#72B7B2", "adv_loss": "#E45756", "loss_bound_lse": "#B279A2",
                               "loss_bound": "#F58518"}
LOSS_NAMES: dict[str, str] = {"clean_loss": "clean loss", "adv_loss": "adversarial loss (attack)",
                              "loss_bound_lse": "bound (ii): log-sum-exp", "loss_bound": "bound (i): max spread × Δ"}
LOSS_AXIS = "cross-entropy loss (nats, log scale)"
PROBE_COLORS: dict[str, str] = {"logistic": "#4C78A8", "logistic-std": "#9D755D", "robust": "#E45756"}


# ---------------------------------------------------------------- loss bounds

def loss_at_eps(summary: pd.DataFrame, eps: float) -> go.Figure:
    """Grouped bars per task at one eps: clean loss, adversarial loss, bound (ii), bound (i) (log scale)."""
    rows = at_eps(summary, eps)
    fig = go.Figure()
    for m in ("clean_loss", "adv_loss", "loss_bound_lse", "loss_bound"):
        if m not in rows:
            continue
        fig.add_bar(x=rows["task"], y=rows[m], name=LOSS_NAMES[m], marker_color=LOSS_COLORS[m],
                    text=[f"{v:.3g}" for v in rows[m]], textposition="outside", cliponaxis=False,
                    hovertemplate="%{x}<br>" + LOSS_NAMES[m] + ": %{y:.4g}<extra></extra>")
    layout(fig, f"Mean loss per task at ε = {eps_short(eps, norm_of(summary) or 'linf')}", "downstream task",
           LOSS_AXIS, barmode="group", height=500, legend="bottom")
    fig.update_yaxes(type="log", dtick=1)
    return fig


def loss_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Adversarial loss (solid), bound (ii) (dash-dot) and bound (i) (dashed) against eps per task;
    at eps = 0 all three are the clean loss."""
    fig = go.Figure()
    norm = norm_of(summary)
    axis = EpsAxis(summary["eps"], norm, current_eps)
    colors = colors_for(summary["task"].tolist())
    for task, rows in summary.groupby("task", sort=False):
        rows = rows.sort_values("eps")
        c = colors[str(task)]
        for m, dash, symbol in (("adv_loss", "solid", "circle"), ("loss_bound_lse", "dashdot", "square-open"),
                                ("loss_bound", "dash", "diamond-open")):
            if m not in rows:
                continue
            fig.add_scatter(x=axis.x(rows["eps"]), y=rows[m], mode="lines+markers",
                            name=str(task) if m == "adv_loss" else f"{task}: {LOSS_NAMES[m]}",
                            line={"color": c, "dash": dash, "width": 2.5 if m == "adv_loss" else 2},
                            legendgroup=str(task), showlegend=m == "adv_loss", marker={"size": 6, "symbol": symbol},
                            customdata=hover_eps(rows, norm),
                            hovertemplate=f"{task}<br>ε %{{customdata}}<br>{LOSS_NAMES[m]} %{{y:.4g}}<extra></extra>")
    style_key(fig, [("adversarial loss (attack)", "solid"), ("bound (ii): log-sum-exp", "dashdot"),
                    ("bound (i): max spread × Δ", "dash")])
    layout(fig, "Loss against ε (at ε = 0 all equal the clean loss)", eps_axis(norm), LOSS_AXIS,
           height=500, legend="bottom", legend_title="task")
    fig.update_yaxes(type="log", dtick=1)
    axis.apply(fig)
    axis.mark(fig, current_eps)
    return fig


# ---------------------------------------------------------------- compare backbones

def compare_at_eps(summary: pd.DataFrame, eps: float) -> go.Figure:
    """Two panels at one eps: robust accuracy (left) and bound (right) per task and backbone.

    Every bar is labelled with its value, so a zero-height bar reads "0.00"; a bound panel where
    every value is 0 says so in words.
    """
    rows = at_eps(summary, eps)
    colors = colors_for(summary["backbone"].tolist())
    norm = norm_of(summary) or "linf"
    fig = make_subplots(rows=1, cols=2, subplot_titles=["robust accuracy (attack)", "bound (ρ > Δ), hatched"],
                        shared_yaxes=True, horizontal_spacing=0.04)
    for bb, r in rows.groupby("backbone", sort=False):
        c = colors[str(bb)]
        for col, metric, pattern in ((1, "robust_acc", ""), (2, "bound", "/")):
            fig.add_bar(x=r["task"], y=r[metric], name=str(bb), marker_color=c, marker_pattern_shape=pattern,
                        legendgroup=str(bb), showlegend=col == 1, text=[f"{v:.2f}" for v in r[metric]],
                        textposition="outside", cliponaxis=False, textfont={"size": 10},
                        hovertemplate=f"{bb}<br>%{{x}}: %{{y:.3f}}<extra></extra>", row=1, col=col)
    if len(rows) and float(rows["bound"].max()) == 0.0:
        fig.add_annotation(text="every bound is 0 at this ε:<br>no test point has ρ(x) > Δ(x)", xref="x2 domain",
                           yref="y2 domain", x=0.5, y=0.6, showarrow=False, font={"size": 13, "color": NEUTRAL})
    layout(fig, f"Robust accuracy (left) and bound (right) per task at ε = {eps_short(eps, norm)}", "", ACC_AXIS,
           barmode="group", height=440, legend="right", legend_title="backbone")
    fig.update_yaxes(range=[0, 1.12])
    fig.update_xaxes(title_text="downstream task")
    return fig


def compare_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Per task (one panel each): robust accuracy (solid) and bound (dashed) against eps per backbone."""
    tasks = list(dict.fromkeys(summary["task"].tolist()))
    cols = max(1, min(3, len(tasks)))
    nrows = max(1, -(-len(tasks) // cols))
    norm = norm_of(summary)
    axis = EpsAxis(summary["eps"], norm, current_eps)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=tasks, shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=0.16)
    colors = colors_for(summary["backbone"].tolist())
    for i, task in enumerate(tasks):
        r, c = i // cols + 1, i % cols + 1
        for bb, rows in summary[summary["task"] == task].groupby("backbone", sort=False):
            rows = rows.sort_values("eps")
            for metric, dash in (("robust_acc", "solid"), ("bound", "dash")):
                fig.add_scatter(x=axis.x(rows["eps"]), y=rows[metric], mode="lines+markers",
                                name=str(bb) if metric == "robust_acc" else f"{bb}: bound",
                                line={"color": colors[str(bb)], "width": 2.5 if dash == "solid" else 2, "dash": dash},
                                marker={"size": 5}, legendgroup=str(bb), showlegend=i == 0 and metric == "robust_acc",
                                customdata=hover_eps(rows, norm),
                                hovertemplate=f"{bb}<br>ε %{{customdata}}<br>{METRIC_NAMES[metric]} %{{y:.3f}}"
                                              "<extra></extra>", row=r, col=c)
        axis.apply(fig, row=r, col=c)
        axis.mark(fig, current_eps, label=False, row=r, col=c)
    style_key(fig, [("robust accuracy (attack)", "solid"), ("bound: ρ > Δ", "dash")])
    layout(fig, "Robust accuracy and bound against ε, per task (dotted line: current ε)", "", "",
           height=300 * nrows + 90, legend="right", legend_title="backbone")
    fig.update_yaxes(range=[-0.02, 1.05])
    fig.update_yaxes(title_text=ACC_AXIS, col=1)
    fig.update_xaxes(title_text=eps_axis(norm), row=nrows)
    return fig


# ---------------------------------------------------------------- probe trade-off

TRADEOFF_PANELS = (("robust_acc", "robust accuracy (attack); at ε = 0: clean"), ("bound", "bound: ρ > Δ"),
                   ("bound_head", "bound, head subspace: ρ > Δ_P"))


def probe_tradeoff(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """For one backbone and task: robust accuracy, bound and bound (head subspace) against eps,
    one colour per probe kind (what a Δ-aware head buys in bound and costs in clean accuracy)."""
    norm = norm_of(summary)
    axis = EpsAxis(summary["eps"], norm, current_eps)
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in TRADEOFF_PANELS], shared_yaxes=True,
                        horizontal_spacing=0.05)
    for probe, rows in summary.groupby("probe", sort=False):
        rows = rows.sort_values("eps")
        c = PROBE_COLORS.get(str(probe), NEUTRAL)
        for col, (metric, _) in enumerate(TRADEOFF_PANELS, start=1):
            data = rows[rows["head_attack"].astype(bool)] if metric == "bound_head" and "head_attack" in rows else rows
            if data.empty:
                continue
            fig.add_scatter(x=axis.x(data["eps"]), y=data[metric], mode="lines+markers",
                            name=PROBE_LABELS.get(str(probe), str(probe)), legendgroup=str(probe),
                            showlegend=col == 1, line={"color": c, "width": 2.5}, customdata=hover_eps(data, norm),
                            hovertemplate=f"{probe}<br>ε %{{customdata}}<br>{METRIC_NAMES[metric]} %{{y:.3f}}"
                                          "<extra></extra>", row=1, col=col)
    for col in (1, 2, 3):
        axis.apply(fig, row=1, col=col)
        axis.mark(fig, current_eps, label=False, row=1, col=col)
    layout(fig, "What a Δ-aware head buys and costs (dotted line: current ε)", "", ACC_AXIS, height=430)
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0, "xanchor": "left"},
                      margin={"l": 10, "r": 10, "t": 60, "b": 10})
    fig.update_yaxes(range=[-0.02, 1.05])
    fig.update_xaxes(title_text=eps_axis(norm))
    return fig
