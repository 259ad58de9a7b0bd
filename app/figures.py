"""Plotly figures for the dashboard (landing and representation pages): pure functions from rtcore's
tidy DataFrames to figures; the loss, compare and trade-off figures are in :mod:`app.figures_more`,
the theory page's toy in :mod:`app.figures_toy`.

No streamlit here. Colours are explicit and mid-tone, so every figure reads on light and dark
backgrounds. Axis titles carry units: eps in [0,1] pixel units (linf ticks as k/255), accuracies
as fractions, Δ and ρ in the backbone's raw feature units (L2 norm).

Curves across eps use evenly spaced positions for the eps values (the grid doubles: 0, 1, 2, 4,
8, 16 /255), labelled with the eps itself, so the small eps where the bound lives are readable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rtcore.config import eps_key, eps_mask

from .state import eps_short

PALETTE: tuple[str, ...] = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#B279A2", "#72B7B2", "#EECA3B",
                            "#9D755D", "#FF9DA6", "#BAB0AC")
METRIC_COLORS: dict[str, str] = {"clean_acc": "#72B7B2", "robust_acc": "#4C78A8", "bound": "#F58518",
                                 "bound_head": "#B279A2"}
METRIC_NAMES: dict[str, str] = {"clean_acc": "clean accuracy", "robust_acc": "robust accuracy (attack)",
                                "bound": "bound (ρ > Δ)", "bound_head": "bound, head subspace (ρ > Δ_P)"}
STATUS_COLORS: dict[str, str] = {"criterion met (ρ > Δ)": "#54A24B", "robust, criterion not met": "#4C78A8",
                                 "broken or misclassified": "#E45756"}
NEUTRAL = "rgba(128,128,128,0.9)"
EPS_AXIS = "ε (pixel units, [0,1])"
ACC_AXIS = "accuracy (fraction of test points)"
DELTA_AXIS = "Δ(x) = ‖g(x′) − g(x)‖₂ (feature units)"
REL_AXIS = "Δ(x) / ‖g(x)‖₂ (relative feature shift)"
RHO_AXIS = "ρ(x): distance to the decision boundary (feature units)"
PENDING = "computing…"


def colors_for(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name (tasks or backbones), in the order given."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(dict.fromkeys(names))}


def eps_axis(norm: str | None = None) -> str:
    """The eps axis title, with the norm when known."""
    return f"ε (pixel units, [0,1], {norm})" if norm else EPS_AXIS


def norm_of(df: pd.DataFrame) -> str | None:
    vals = df["norm"].unique() if "norm" in df.columns and len(df) else []
    return str(vals[0]) if len(vals) == 1 else None


def layout(fig: go.Figure, title: str, x: str, y: str, height: int = 380, legend: str = "top",
           legend_title: str | None = None, **kw: Any) -> go.Figure:
    """Title, axis titles with units, and the legend: one row on top (few entries) or a column
    on the right (many entries), so that it never covers the title or the data."""
    if legend == "right":
        leg = {"orientation": "v", "yanchor": "top", "y": 1.0, "x": 1.02, "xanchor": "left",
               "title": {"text": legend_title} if legend_title else None}
    elif legend == "bottom":  # below the x-axis title: room for many entries in a narrow column
        leg = {"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0, "xanchor": "left",
               "title": {"text": legend_title + ":", "side": "left"} if legend_title else None}
    else:
        leg = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "xanchor": "left", "title": None}
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}},
        xaxis_title=x, yaxis_title=y, height=height,
        margin={"l": 10, "r": 10, "t": 80 if legend == "top" else 50, "b": 10},
        legend=leg, hovermode="closest", **kw,
    )
    return fig


def style_key(fig: go.Figure, entries: Sequence[tuple[str, str]]) -> None:
    """Legend-only entries that explain line styles (name, dash) in a neutral colour."""
    for name, dash in entries:
        fig.add_scatter(x=[None], y=[None], mode="lines", name=name, legendgroup="line style",
                        legendgrouptitle_text="line style" if name == entries[0][0] else None,
                        line={"color": NEUTRAL, "dash": dash, "width": 2}, hoverinfo="skip")


def at_eps(df: pd.DataFrame, eps: float) -> pd.DataFrame:
    return df[eps_mask(df["eps"], eps)] if len(df) else df


class EpsAxis:
    """Evenly spaced positions for the eps values of a figure, labelled with the eps."""

    def __init__(self, values: Iterable[float], norm: str | None, current: float | None = None) -> None:
        vals = {eps_key(v) for v in values}
        if current is not None:
            vals.add(eps_key(current))
        self.values = sorted(vals)
        self.norm = norm or "linf"
        self.pos = {v: i for i, v in enumerate(self.values)}

    def x(self, eps: Iterable[float]) -> list[int]:
        return [self.pos[eps_key(e)] for e in eps]

    def labels(self, eps: Iterable[float]) -> list[str]:
        return [eps_short(e, self.norm) for e in eps]

    def apply(self, fig: go.Figure, **where: Any) -> None:
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(self.values))),
                         ticktext=self.labels(self.values), range=[-0.3, max(len(self.values) - 0.7, 0.7)], **where)

    def mark(self, fig: go.Figure, eps: float | None, label: bool = True, **where: Any) -> None:
        """A dotted vertical line (and a label) at the current eps."""
        if eps is None or eps_key(eps) not in self.pos:
            return
        x = self.pos[eps_key(eps)]
        fig.add_vline(x=x, line_dash="dot", line_color=NEUTRAL, line_width=1.5, **where)
        if label:
            fig.add_annotation(x=x, y=1, yref="paper", xref="x", text=f"ε = {eps_short(eps, self.norm)}",
                               showarrow=False, xanchor="left", yanchor="bottom", font={"size": 11, "color": NEUTRAL})


def hover_eps(rows: pd.DataFrame, norm: str | None) -> list[str]:
    return [eps_short(e, norm or "linf") for e in rows["eps"]]


# ---------------------------------------------------------------- bound vs empirical

def accuracy_at_eps(summary: pd.DataFrame, eps: float) -> go.Figure:
    """Grouped bars per task at one eps: clean accuracy, robust accuracy (attack), bound; tasks
    whose eps is still being computed show their clean accuracy (from eps = 0) only."""
    norm = norm_of(summary) or "linf"
    tasks = list(dict.fromkeys(summary["task"])) if len(summary) else []
    rows = at_eps(summary, eps).set_index("task") if len(summary) else pd.DataFrame()
    clean = summary.groupby("task", sort=False)["clean_acc"].first() if len(summary) else pd.Series(dtype=float)
    fig = go.Figure()
    for m in ("clean_acc", "robust_acc", "bound"):
        ys = [(clean.get(t) if m == "clean_acc" else (rows[m].get(t) if m in rows else None)) for t in tasks]
        text = [f"{v:.2f}" if v is not None and not pd.isna(v) else PENDING for v in ys]
        fig.add_bar(x=tasks, y=[0 if v is None or pd.isna(v) else v for v in ys], name=METRIC_NAMES[m],
                    marker_color=METRIC_COLORS[m], text=text, textposition="outside", cliponaxis=False,
                    textfont={"size": 11}, hovertemplate="%{x}<br>" + METRIC_NAMES[m] + ": %{text}<extra></extra>")
    layout(fig, f"Per task at ε = {eps_short(eps, norm)} ({norm})", "downstream task", ACC_AXIS, barmode="group",
           height=400)
    fig.update_yaxes(range=[0, 1.15])
    return fig


def accuracy_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Robust accuracy (solid, attack), bound (dashed) and bound in the head subspace (dotted,
    once the head-subspace attack has run) against eps, one colour per task."""
    fig = go.Figure()
    norm = norm_of(summary)
    axis = EpsAxis(summary["eps"], norm, current_eps)
    colors = colors_for(summary["task"].tolist())
    for task, rows in summary.groupby("task", sort=False):
        rows = rows.sort_values("eps")
        c = colors[str(task)]
        head = rows[rows["head_attack"].astype(bool)] if "head_attack" in rows else rows.iloc[:0]
        for metric, data, dash, symbol, width in (("robust_acc", rows, "solid", "circle", 2.5),
                                                  ("bound", rows, "dash", "diamond-open", 2),
                                                  ("bound_head", head, "dot", "square-open", 2)):
            if data.empty or metric not in data:
                continue
            fig.add_scatter(x=axis.x(data["eps"]), y=data[metric], mode="lines+markers",
                            name=str(task) if metric == "robust_acc" else f"{task}: {METRIC_NAMES[metric]}",
                            line={"color": c, "dash": dash, "width": width}, marker={"symbol": symbol},
                            legendgroup=str(task), showlegend=metric == "robust_acc", customdata=hover_eps(data, norm),
                            hovertemplate=f"{task}<br>ε %{{customdata}}<br>{METRIC_NAMES[metric]} %{{y:.3f}}"
                                          "<extra></extra>")
    style_key(fig, [("robust accuracy (attack)", "solid"), ("bound: ρ > Δ", "dash"),
                    ("bound, head subspace: ρ > Δ_P", "dot")])
    layout(fig, "Robust accuracy and bounds across ε", eps_axis(norm), ACC_AXIS, legend="bottom",
           legend_title="task", height=520)
    fig.update_yaxes(range=[-0.02, 1.05])
    axis.apply(fig)
    axis.mark(fig, current_eps)
    return fig


def calibration_scatter(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Bound against empirical robust accuracy for every (task, eps), with the diagonal.

    On the diagonal the bound predicts the attack exactly; below it the bound is conservative
    (as it must be); above it would contradict the theory.
    """
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="bound = empirical",
                    line={"color": NEUTRAL, "dash": "dot", "width": 1.5}, hoverinfo="skip")
    norm = norm_of(summary)
    colors = colors_for(summary["task"].tolist())
    for task, rows in summary.groupby("task", sort=False):
        cur = (np.asarray(eps_mask(rows["eps"], current_eps)) if current_eps is not None
               else np.zeros(len(rows), bool))
        fig.add_scatter(
            x=rows["robust_acc"], y=rows["bound"], mode="markers", name=str(task),
            marker={"color": colors[str(task)], "size": np.where(cur, 15, 9),
                    "line": {"width": np.where(cur, 2, 0).tolist(), "color": NEUTRAL}},
            customdata=np.stack([hover_eps(rows, norm), rows["clean_acc"].map("{:.3f}".format)], axis=1),
            hovertemplate=(f"{task}<br>ε %{{customdata[0]}}<br>empirical %{{x:.3f}}<br>bound %{{y:.3f}}"
                           "<br>clean %{customdata[1]}<extra></extra>"))
    layout(fig, "Calibration: bound vs empirical (every task and ε; large = current ε)",
           "empirical robust accuracy (attack)", "bound (ρ > Δ)", height=520, legend="bottom", legend_title="task")
    fig.update_xaxes(range=[-0.03, 1.03])
    fig.update_yaxes(range=[-0.03, 1.03])
    return fig


# ---------------------------------------------------------------- representation vulnerability

def delta_distribution(samples: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Box plots of per-sample Δ(x) for every eps, one colour per task."""
    fig = go.Figure()
    norm = norm_of(samples)
    colors = colors_for(samples["task"].tolist())
    for task, rows in samples.groupby("task", sort=False):
        fig.add_box(x=hover_eps(rows, norm), y=rows["delta"], name=str(task),
                    marker_color=colors[str(task)], boxpoints=False, line={"width": 1.5})
    layout(fig, "Distribution of Δ(x) per ε (box: quartiles, whiskers: 1.5 IQR)", eps_axis(norm),
           DELTA_AXIS, boxmode="group", legend="right", legend_title="task")
    order = sorted(samples["eps"].unique())
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[eps_short(e, norm or "linf") for e in order])
    return fig


def _per_task_lines(summary: pd.DataFrame, column: str, current_eps: float | None, title: str, y: str,
                    median: str | None = None) -> go.Figure:
    fig = go.Figure()
    norm = norm_of(summary)
    axis = EpsAxis(summary["eps"], norm, current_eps)
    colors = colors_for(summary["task"].tolist())
    for task, rows in summary.groupby("task", sort=False):
        rows = rows.sort_values("eps")
        c = colors[str(task)]
        fig.add_scatter(x=axis.x(rows["eps"]), y=rows[column], mode="lines+markers", name=str(task),
                        line={"color": c, "width": 2.5}, legendgroup=str(task), customdata=hover_eps(rows, norm),
                        hovertemplate=f"{task}<br>ε %{{customdata}}<br>%{{y:.4g}}<extra></extra>")
        if median:
            fig.add_scatter(x=axis.x(rows["eps"]), y=rows[median], mode="lines", name=f"{task}: median",
                            line={"color": c, "dash": "dot"}, legendgroup=str(task), showlegend=False)
    if median:
        style_key(fig, [("mean", "solid"), ("median", "dot")])
    layout(fig, title, eps_axis(norm), y, legend="bottom", legend_title="task", height=460)
    axis.apply(fig)
    axis.mark(fig, current_eps)
    return fig


def delta_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Mean (solid) and median (dotted) Δ against eps, one colour per task."""
    return _per_task_lines(summary, "mean_delta", current_eps, "Representation vulnerability Δ against ε",
                           DELTA_AXIS, median="median_delta" if "median_delta" in summary else None)


def relative_delta_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Mean relative shift Δ(x)/‖g(x)‖ against eps, one colour per task."""
    fig = _per_task_lines(summary, "mean_relative_delta", current_eps,
                          "Relative feature shift Δ/‖g(x)‖ against ε (mean)", REL_AXIS)
    fig.update_yaxes(tickformat=".0%")
    return fig


def sample_status(samples: pd.DataFrame) -> pd.Series:
    """Per sample: criterion met, robust to the attack without meeting the criterion, or broken/misclassified."""
    keys = list(STATUS_COLORS)
    status = np.where(samples["criterion_met"].astype(bool), keys[0],
                      np.where(samples["robust"].astype(bool), keys[1], keys[2]))
    return pd.Series(status, index=samples.index)


def rho_delta_scatter(samples: pd.DataFrame, eps: float) -> go.Figure:
    """ρ(x) against Δ(x) at one eps with the line ρ = Δ: points above it meet the criterion."""
    rows = at_eps(samples, eps)
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
    layout(fig, f"Margin ρ(x) against Δ(x) at ε = {eps_short(eps, norm_of(samples) or 'linf')}: above the line "
                "the criterion is met", DELTA_AXIS, RHO_AXIS, height=420, legend="right", legend_title="test points")
    fig.add_hline(y=0, line_color=NEUTRAL, line_width=1)
    return fig


def gallery(x: Any, x_adv: Any, eps: float, labels: Sequence[str] | None = None, max_items: int = 8,
            norm: str = "linf") -> go.Figure:
    """Clean images, feature-attack images, and the perturbation (x′ − x)/ε amplified to [−1, 1]
    (``x``, ``x_adv``: (N, C, H, W) in [0, 1]; several channels are averaged to grey)."""
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
    for r, (name, *_) in enumerate(rows):
        fig.add_annotation(text=name, x=-0.005, xref="paper", xanchor="right", y=1 - (r + 0.5) / 3, yref="paper",
                           showarrow=False, textangle=-90, font={"size": 12})
    fig.update_layout(title={"text": f"Feature-attack gallery at ε = {eps_short(eps, norm)} (perturbation "
                                      "amplified by 1/ε: red brighter, blue darker)", "x": 0, "font": {"size": 15}},
                      height=170 * 3 + 60, margin={"l": 30, "r": 10, "t": 70, "b": 10})
    return fig


def _gray(x: Any) -> np.ndarray:
    arr = x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=float)
    if arr.ndim == 4:
        arr = arr.mean(axis=1)
    return arr


# re-exported for the pages and app.transfer_view
from .figures_more import (
    LOSS_AXIS,
    LOSS_NAMES,
    compare_at_eps,
    compare_curves,
    loss_at_eps,
    loss_curves,
    probe_tradeoff,
)
from .figures_toy import linear_toy_figure

__all__ = ["ACC_AXIS", "DELTA_AXIS", "LOSS_AXIS", "LOSS_NAMES", "REL_AXIS", "RHO_AXIS", "accuracy_at_eps",
           "accuracy_curves", "calibration_scatter", "colors_for", "compare_at_eps", "compare_curves",
           "delta_curves", "delta_distribution", "eps_axis", "gallery", "linear_toy_figure", "loss_at_eps",
           "loss_curves", "probe_tradeoff", "relative_delta_curves", "rho_delta_scatter", "sample_status"]
