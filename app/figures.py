"""Plotly figures for the dashboard: pure functions from rtcore's tidy DataFrames to figures.

No streamlit here. Colours are explicit and mid-tone, so every figure reads on light and dark
backgrounds (the dashboard draws them with ``theme="streamlit"``). Axis titles carry units:
eps in [0,1] pixel units, accuracies as fractions, Δ and ρ in feature-space (L2) units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE: tuple[str, ...] = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#B279A2", "#72B7B2", "#EECA3B",
                            "#9D755D", "#FF9DA6", "#BAB0AC")
METRIC_COLORS: dict[str, str] = {"clean_acc": "#72B7B2", "robust_acc": "#4C78A8", "bound": "#F58518"}
METRIC_NAMES: dict[str, str] = {"clean_acc": "clean accuracy", "robust_acc": "robust accuracy (attack)",
                                "bound": "bound (prediction from Δ)"}
LOSS_COLORS: dict[str, str] = {"clean_loss": "#72B7B2", "adv_loss": "#E45756", "loss_bound": "#F58518"}
LOSS_NAMES: dict[str, str] = {"clean_loss": "clean loss", "adv_loss": "adversarial loss (attack)",
                              "loss_bound": "bound (i)"}
STATUS_COLORS: dict[str, str] = {"criterion met (ρ > Δ)": "#54A24B", "robust, criterion not met": "#4C78A8",
                                 "broken or misclassified": "#E45756"}
NEUTRAL = "rgba(128,128,128,0.9)"
EPS_AXIS = "ε (pixel units, [0,1])"
ACC_AXIS = "accuracy (fraction of test points)"
DELTA_AXIS = "Δ(x) = ‖g(x′) − g(x)‖₂ (feature units)"
REL_AXIS = "Δ(x) / ‖g(x)‖₂ (relative feature shift)"
RHO_AXIS = "ρ(x): distance to the decision boundary (feature units)"
LOSS_AXIS = "cross-entropy loss (nats, log scale)"


def colors_for(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name (tasks or backbones), in the order given."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(dict.fromkeys(names))}


def eps_axis(norm: str | None = None) -> str:
    """The eps axis title, with the norm when known."""
    return f"ε (pixel units, [0,1], {norm})" if norm else EPS_AXIS


def _norm_of(df: pd.DataFrame) -> str | None:
    vals = df["norm"].unique() if "norm" in df.columns and len(df) else []
    return str(vals[0]) if len(vals) == 1 else None


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 380, legend: str = "top",
            legend_title: str | None = None, **kw: Any) -> go.Figure:
    """Title, axis titles with units, and the legend: one row on top (few entries) or a column
    on the right (many entries), so that it never covers the title or the data."""
    if legend == "right":
        leg = {"orientation": "v", "yanchor": "top", "y": 1.0, "x": 1.02, "xanchor": "left",
               "title": {"text": legend_title} if legend_title else None}
    else:
        leg = {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "xanchor": "left", "title": None}
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}},
        xaxis_title=x, yaxis_title=y, height=height,
        margin={"l": 10, "r": 10, "t": 70 if legend == "top" else 50, "b": 10},
        legend=leg, hovermode="closest", **kw,
    )
    return fig


def _style_key(fig: go.Figure, entries: Sequence[tuple[str, str]]) -> None:
    """Legend-only entries that explain line styles (name, dash) in a neutral colour."""
    for name, dash in entries:
        fig.add_scatter(x=[None], y=[None], mode="lines", name=name, legendgroup="line style",
                        legendgrouptitle_text="line style" if name == entries[0][0] else None,
                        line={"color": NEUTRAL, "dash": dash, "width": 2}, hoverinfo="skip")


def _at(df: pd.DataFrame, eps: float) -> pd.DataFrame:
    return df[np.isclose(df["eps"].astype(float), float(eps))]


def _mark_eps(fig: go.Figure, eps: float | None) -> None:
    """A dotted vertical line and a label at the current eps."""
    if eps is None:
        return
    fig.add_vline(x=eps, line_dash="dot", line_color=NEUTRAL, line_width=1.5)
    fig.add_annotation(x=eps, y=1, yref="paper", xref="x", text=f"current ε = {eps:g}", showarrow=False,
                       xanchor="left", yanchor="bottom", font={"size": 11, "color": NEUTRAL})


# ---------------------------------------------------------------- bound vs empirical

def accuracy_at_eps(summary: pd.DataFrame, eps: float) -> go.Figure:
    """Grouped bars per task at one eps: clean accuracy, robust accuracy (attack), bound."""
    rows = _at(summary, eps)
    fig = go.Figure()
    for m in ("clean_acc", "robust_acc", "bound"):
        fig.add_bar(x=rows["task"], y=rows[m], name=METRIC_NAMES[m], marker_color=METRIC_COLORS[m],
                    text=[f"{v:.2f}" for v in rows[m]], textposition="outside",
                    hovertemplate="%{x}<br>" + METRIC_NAMES[m] + ": %{y:.3f}<extra></extra>")
    _layout(fig, f"Per task at ε = {eps:g} ({_norm_of(summary) or ''})", "downstream task", ACC_AXIS,
            barmode="group")
    fig.update_yaxes(range=[0, 1.12])
    return fig


def accuracy_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Robust accuracy (solid, attack) and bound (dashed) against eps, one colour per task."""
    fig = go.Figure()
    colors = colors_for(summary["task"].tolist())
    for task, rows in summary.groupby("task", sort=False):
        rows = rows.sort_values("eps")
        c = colors[str(task)]
        fig.add_scatter(x=rows["eps"], y=rows["robust_acc"], mode="lines+markers", name=str(task),
                        line={"color": c, "width": 2.5}, legendgroup=str(task),
                        hovertemplate=f"{task}<br>ε %{{x:g}}<br>robust accuracy %{{y:.3f}}<extra></extra>")
        fig.add_scatter(x=rows["eps"], y=rows["bound"], mode="lines+markers", name=f"{task}: bound",
                        line={"color": c, "dash": "dash", "width": 2}, marker={"symbol": "diamond-open"},
                        legendgroup=str(task), showlegend=False,
                        hovertemplate=f"{task}<br>ε %{{x:g}}<br>bound %{{y:.3f}}<extra></extra>")
    _style_key(fig, [("robust accuracy (attack)", "solid"), ("bound (prediction)", "dash")])
    _layout(fig, "Robust accuracy and bound across ε", eps_axis(_norm_of(summary)), ACC_AXIS,
            legend="right", legend_title="task")
    fig.update_yaxes(range=[-0.02, 1.05])
    _mark_eps(fig, current_eps)
    return fig


def calibration_scatter(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Bound against empirical robust accuracy for every (task, eps), with the diagonal.

    Points on the diagonal: the bound predicts the attack exactly; below it: the bound is
    conservative (as it must be); above it would contradict the theory.
    """
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="bound = empirical",
                    line={"color": NEUTRAL, "dash": "dot", "width": 1.5}, hoverinfo="skip")
    colors = colors_for(summary["task"].tolist())
    for task, rows in summary.groupby("task", sort=False):
        cur = (np.isclose(rows["eps"].astype(float), current_eps) if current_eps is not None
               else np.zeros(len(rows), bool))
        fig.add_scatter(
            x=rows["robust_acc"], y=rows["bound"], mode="markers", name=str(task),
            marker={"color": colors[str(task)], "size": np.where(cur, 15, 9),
                    "line": {"width": np.where(cur, 2, 0).tolist(), "color": NEUTRAL}},
            customdata=np.stack([rows["eps"], rows["clean_acc"]], axis=1),
            hovertemplate=(f"{task}<br>ε %{{customdata[0]:g}}<br>empirical %{{x:.3f}}<br>bound %{{y:.3f}}"
                           "<br>clean %{customdata[1]:.3f}<extra></extra>"))
    _layout(fig, "Calibration: bound vs empirical (all tasks and ε; large = current ε)",
            "empirical robust accuracy (attack)", "bound (prediction from Δ)", height=420, legend="right",
            legend_title="task")
    fig.update_xaxes(range=[-0.03, 1.03])
    fig.update_yaxes(range=[-0.03, 1.03])
    return fig


# ---------------------------------------------------------------- representation vulnerability

def delta_distribution(samples: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Box plots of per-sample Δ(x) for every eps, one colour per task."""
    fig = go.Figure()
    colors = colors_for(samples["task"].tolist())
    for task, rows in samples.groupby("task", sort=False):
        fig.add_box(x=rows["eps"].map(lambda e: f"{e:g}"), y=rows["delta"], name=str(task),
                    marker_color=colors[str(task)], boxpoints=False, line={"width": 1.5})
    _layout(fig, "Distribution of Δ(x) per ε (box: quartiles, whiskers: 1.5 IQR)", eps_axis(_norm_of(samples)),
            DELTA_AXIS, boxmode="group", legend="right", legend_title="task")
    order = sorted(samples["eps"].unique())
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[f"{e:g}" for e in order])
    return fig


def delta_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Mean (solid) and median (dotted) Δ against eps, one colour per task."""
    fig = go.Figure()
    colors = colors_for(summary["task"].tolist())
    for task, rows in summary.groupby("task", sort=False):
        rows = rows.sort_values("eps")
        c = colors[str(task)]
        fig.add_scatter(x=rows["eps"], y=rows["mean_delta"], mode="lines+markers", name=str(task),
                        line={"color": c, "width": 2.5}, legendgroup=str(task))
        fig.add_scatter(x=rows["eps"], y=rows["median_delta"], mode="lines", name=f"{task}: median",
                        line={"color": c, "dash": "dot"}, legendgroup=str(task), showlegend=False)
    _style_key(fig, [("mean", "solid"), ("median", "dot")])
    _layout(fig, "Representation vulnerability Δ against ε", eps_axis(_norm_of(summary)), DELTA_AXIS,
            legend="right", legend_title="task")
    _mark_eps(fig, current_eps)
    return fig


def relative_delta_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Mean relative shift Δ(x)/‖g(x)‖ against eps, one colour per task."""
    fig = go.Figure()
    colors = colors_for(summary["task"].tolist())
    for task, rows in summary.groupby("task", sort=False):
        rows = rows.sort_values("eps")
        fig.add_scatter(x=rows["eps"], y=rows["mean_relative_delta"], mode="lines+markers", name=str(task),
                        line={"color": colors[str(task)], "width": 2.5})
    _layout(fig, "Relative feature shift Δ/‖g(x)‖ against ε (mean)", eps_axis(_norm_of(summary)), REL_AXIS,
            legend="right", legend_title="task")
    fig.update_yaxes(tickformat=".0%")
    _mark_eps(fig, current_eps)
    return fig


def sample_status(samples: pd.DataFrame) -> pd.Series:
    """Per sample: criterion met, robust to the attack without meeting the criterion, or broken/misclassified."""
    keys = list(STATUS_COLORS)
    status = np.where(samples["criterion_met"].astype(bool), keys[0],
                      np.where(samples["robust"].astype(bool), keys[1], keys[2]))
    return pd.Series(status, index=samples.index)


def rho_delta_scatter(samples: pd.DataFrame, eps: float) -> go.Figure:
    """ρ(x) against Δ(x) at one eps with the line ρ = Δ: points above it meet the criterion."""
    rows = _at(samples, eps)
    status = sample_status(rows)
    top = float(max(rows["delta"].max() if len(rows) else 1.0, rows["rho"].max() if len(rows) else 1.0, 1e-6))
    fig = go.Figure()
    fig.add_scatter(x=[0, top * 1.05], y=[0, top * 1.05], mode="lines", name="ρ = Δ",
                    line={"color": NEUTRAL, "dash": "dash"}, hoverinfo="skip")
    for label, color in STATUS_COLORS.items():
        sel = rows[status == label]
        fig.add_scatter(x=sel["delta"], y=sel["rho"], mode="markers", name=f"{label} ({len(sel)})",
                        marker={"color": color, "size": 7, "opacity": 0.8},
                        customdata=np.stack([sel["task"], sel["sample"]], axis=1) if len(sel) else None,
                        hovertemplate="%{customdata[0]} #%{customdata[1]}<br>Δ %{x:.3f}<br>ρ %{y:.3f}<extra></extra>")
    _layout(fig, f"Margin ρ(x) against Δ(x) at ε = {eps:g}: above the line the criterion is met", DELTA_AXIS, RHO_AXIS,
            height=420, legend="right", legend_title="test points")
    fig.add_hline(y=0, line_color=NEUTRAL, line_width=1)
    return fig


def gallery(x: Any, x_adv: Any, eps: float, labels: Sequence[str] | None = None, max_items: int = 8) -> go.Figure:
    """Clean images, feature-attack images, and the perturbation (x′ − x)/ε amplified to [−1, 1].

    ``x`` and ``x_adv``: arrays or tensors (N, C, H, W) in [0, 1] (the first channel is shown
    for multi-channel images is averaged to grey).
    """
    a, b = _gray(x)[:max_items], _gray(x_adv)[:max_items]
    k = a.shape[0]
    pert = (b - a) / eps if eps > 0 else np.zeros_like(a)
    titles = [str(labels[i]) if labels is not None and i < len(labels) else f"#{i}" for i in range(k)]
    fig = make_subplots(rows=3, cols=max(k, 1), horizontal_spacing=0.01, vertical_spacing=0.06,
                        subplot_titles=titles + [""] * (2 * k))
    rows = [("clean x", a, "gray", 0.0, 1.0), ("feature attack x′", b, "gray", 0.0, 1.0),
            ("(x′ − x)/ε", pert, "RdBu_r", -1.0, 1.0)]
    for r, (_, imgs, cmap, lo, hi) in enumerate(rows, start=1):
        for c in range(k):
            fig.add_heatmap(z=imgs[c], colorscale=cmap, zmin=lo, zmax=hi, showscale=(r == 3 and c == k - 1),
                            colorbar={"title": {"text": "(x′−x)/ε"}, "len": 0.33, "y": 0.15, "thickness": 10},
                            hovertemplate="value %{z:.3f}<extra></extra>", row=r, col=c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    for r, (name, *_ ) in enumerate(rows):
        fig.add_annotation(text=name, x=-0.005, xref="paper", xanchor="right", y=1 - (r + 0.5) / 3, yref="paper",
                           showarrow=False, textangle=-90, font={"size": 12})
    fig.update_layout(title={"text": f"Feature-attack gallery at ε = {eps:g} (perturbation "
                                      "amplified by 1/ε: red brighter, blue darker)", "x": 0, "font": {"size": 15}},
                      height=170 * 3 + 60, margin={"l": 30, "r": 10, "t": 70, "b": 10})
    return fig


def _gray(x: Any) -> np.ndarray:
    arr = x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=float)
    if arr.ndim == 4:
        arr = arr.mean(axis=1)
    return arr


# ---------------------------------------------------------------- loss bound

def loss_at_eps(summary: pd.DataFrame, eps: float) -> go.Figure:
    """Grouped bars per task at one eps: clean loss, adversarial loss, bound (i) (log scale)."""
    rows = _at(summary, eps)
    fig = go.Figure()
    for m in ("clean_loss", "adv_loss", "loss_bound"):
        fig.add_bar(x=rows["task"], y=rows[m], name=LOSS_NAMES[m], marker_color=LOSS_COLORS[m],
                    text=[f"{v:.3g}" for v in rows[m]], textposition="outside",
                    hovertemplate="%{x}<br>" + LOSS_NAMES[m] + ": %{y:.4g}<extra></extra>")
    _layout(fig, f"Mean loss per task at ε = {eps:g}", "downstream task", LOSS_AXIS, barmode="group")
    fig.update_yaxes(type="log", dtick=1)
    return fig


def loss_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Adversarial loss (solid) and bound (i) (dashed) against eps per task; at eps = 0 both are
    the clean loss."""
    fig = go.Figure()
    colors = colors_for(summary["task"].tolist())
    for task, rows in summary.groupby("task", sort=False):
        rows = rows.sort_values("eps")
        c = colors[str(task)]
        fig.add_scatter(x=rows["eps"], y=rows["adv_loss"], mode="lines+markers", name=str(task),
                        line={"color": c, "width": 2.5}, legendgroup=str(task), marker={"size": 6},
                        hovertemplate=f"{task}<br>ε %{{x:g}}<br>adversarial loss %{{y:.4g}}<extra></extra>")
        fig.add_scatter(x=rows["eps"], y=rows["loss_bound"], mode="lines+markers", name=f"{task}: bound (i)",
                        line={"color": c, "dash": "dash"}, legendgroup=str(task), showlegend=False,
                        marker={"size": 6, "symbol": "diamond-open"},
                        hovertemplate=f"{task}<br>ε %{{x:g}}<br>bound (i) %{{y:.4g}}<extra></extra>")
    _style_key(fig, [("adversarial loss (attack)", "solid"), ("bound (i)", "dash")])
    _layout(fig, "Loss against ε (at ε = 0 both equal the clean loss)", eps_axis(_norm_of(summary)), LOSS_AXIS,
            height=420, legend="right", legend_title="task")
    fig.update_yaxes(type="log", dtick=1)
    _mark_eps(fig, current_eps)
    return fig


# ---------------------------------------------------------------- compare backbones

def compare_at_eps(summary: pd.DataFrame, eps: float) -> go.Figure:
    """Robust accuracy (solid bars) and bound (hatched bars) per task and backbone at one eps."""
    rows = _at(summary, eps)
    colors = colors_for(summary["backbone"].tolist())
    fig = make_subplots(rows=1, cols=2, subplot_titles=["robust accuracy (attack)", "bound (prediction from Δ)"],
                        shared_yaxes=True, horizontal_spacing=0.04)
    for bb, r in rows.groupby("backbone", sort=False):
        c = colors[str(bb)]
        fig.add_bar(x=r["task"], y=r["robust_acc"], name=str(bb), marker_color=c, legendgroup=str(bb),
                    hovertemplate=f"{bb}<br>%{{x}}: %{{y:.3f}}<extra></extra>", row=1, col=1)
        fig.add_bar(x=r["task"], y=r["bound"], name=str(bb), marker_color=c, marker_pattern_shape="/",
                    legendgroup=str(bb), showlegend=False,
                    hovertemplate=f"{bb}<br>%{{x}}: %{{y:.3f}}<extra></extra>", row=1, col=2)
    _layout(fig, f"Backbones side by side at ε = {eps:g} (hatched: bound)", "", ACC_AXIS, barmode="group",
            height=420, legend="right", legend_title="backbone")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_xaxes(title_text="downstream task")
    return fig


def compare_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Per task (one panel each): robust accuracy (solid) and bound (dashed) against eps per backbone."""
    tasks = list(dict.fromkeys(summary["task"].tolist()))
    cols = max(1, min(3, len(tasks)))
    nrows = max(1, -(-len(tasks) // cols))
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=tasks, shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=0.14)
    colors = colors_for(summary["backbone"].tolist())
    for i, task in enumerate(tasks):
        r, c = i // cols + 1, i % cols + 1
        for bb, rows in summary[summary["task"] == task].groupby("backbone", sort=False):
            rows = rows.sort_values("eps")
            fig.add_scatter(x=rows["eps"], y=rows["robust_acc"], mode="lines+markers", name=f"{bb}",
                            line={"color": colors[str(bb)], "width": 2.5}, legendgroup=str(bb), showlegend=i == 0,
                            row=r, col=c)
            fig.add_scatter(x=rows["eps"], y=rows["bound"], mode="lines", name=f"{bb}: bound",
                            line={"color": colors[str(bb)], "dash": "dash"}, legendgroup=str(bb), showlegend=False,
                            row=r, col=c)
        if current_eps is not None:
            fig.add_vline(x=current_eps, line_dash="dot", line_color=NEUTRAL, row=r, col=c)
    _style_key(fig, [("robust accuracy (attack)", "solid"), ("bound (prediction)", "dash")])
    _layout(fig, "Robust accuracy and bound against ε, per task (dotted: current ε)", "", "",
            height=300 * nrows + 80, legend="right", legend_title="backbone")
    fig.update_yaxes(range=[-0.02, 1.02])
    fig.update_yaxes(title_text=ACC_AXIS, col=1)
    fig.update_xaxes(title_text=eps_axis(_norm_of(summary)), row=nrows)
    return fig


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
