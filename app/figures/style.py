"""What every figure shares: colours, fonts, the layout (title, legend, margins), the linear eps axis, interval
error bars and value labels that fit their bars. No streamlit, no numeric work: figures draw the library's
tables.

Projector rules: fonts of at least 13 px in near-black on white; one colour meaning per page (tasks,
backbones, probes or methods: :func:`colours_for`), quantities told apart by line style, marker or fill;
the legend never covers the title (right of the plot, or below it in the figure's bottom margin); eps on
a linear axis whose ticks are the computed eps values, the same on every page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ..state import eps_axis_title, eps_short, eps_tick

#: Okabe-Ito colours (colour-blind safe), darkest first; yellow left out (too light on white)
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#8C564B", "#4D4D4D")
INK, GRID, NEUTRAL = "#1a1a1a", "#d0d0d0", "#555555"
#: palette colours on which white text has the higher contrast (WCAG ratio 5.2-8.5); ink on the others
WHITE_TEXT_ON = frozenset({"#0072B2", "#8C564B", "#4D4D4D"})
FONT, TICK_FONT, TITLE_FONT, LABEL_FONT = 15, 14, 18, 13
#: the plot-area width (px) a figure's bar labels are sized for; narrower plots hide what does not fit
PLOT_PX = {"full": 900, "half": 430}
CHAR_PX = 0.62  # width of a digit in units of the font size (label width estimate)
ACC_AXIS = "accuracy (share of test points)"
DELTA_AXIS = "Δ(x) = ‖g(x′) − g(x)‖₂ (feature units)"
REL_AXIS = "Δ(x) / ‖g(x)‖₂ (relative feature shift)"
RHO_AXIS = "ρ(x), margin (feature units)"
LOSS_AXIS = "cross-entropy loss (nats, log scale)"
METRIC_NAMES: dict[str, str] = {"clean_acc": "clean accuracy", "robust_acc": "robust accuracy (attack)",
                                "bound": "bound (ρ > Δ)", "bound_head": "bound, head subspace (ρ > Δ_P)"}
#: line styles of the quantities on curves (colour is the task, backbone, probe or method)
DASH: dict[str, str] = {"robust_acc": "solid", "bound": "dash", "bound_head": "dot"}


def colours_for(names: Iterable[str]) -> dict[str, str]:
    """A stable colour per name (tasks, backbones, probes, methods), in the order given."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(dict.fromkeys(names))}


def layout(fig: go.Figure, title: str, x: str, y: str, *, height: int = 420, legend: str = "right",
           legend_title: str | None = None, subtitle: str | None = None, plot: str = "full",
           **kw: Any) -> go.Figure:
    """Title (top left), axis titles, fonts and the legend: ``right`` (a column right of the plot) or
    ``bottom`` (a row in the figure's bottom margin, below the x-axis title); both push the margins, so the
    legend never covers the title, the plot or the axis titles."""
    if legend == "bottom":
        leg: dict[str, Any] = {"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom", "x": 0,
                               "xanchor": "left"}
    else:
        leg = {"orientation": "v", "yanchor": "top", "y": 1.0, "x": 1.02, "xanchor": "left",
               "groupclick": "toggleitem"}
    leg.update(font={"size": LABEL_FONT + 1}, title={"text": legend_title} if legend_title else None)
    fig.update_layout(
        template="plotly_white", height=height, hovermode="closest", legend=leg,
        title={"text": title, "x": 0, "xanchor": "left", "yref": "container", "y": 0.98, "yanchor": "top",
               "font": {"size": TITLE_FONT, "color": INK},
               "subtitle": {"text": subtitle or "", "font": {"size": LABEL_FONT + 1, "color": NEUTRAL}}},
        font={"size": FONT, "color": INK}, margin={"l": 10, "r": 10, "t": 84 if subtitle else 60, "b": 10},
        meta={"plot_px": PLOT_PX[plot], "label_font": LABEL_FONT, "char_px": CHAR_PX},
        uniformtext={"minsize": LABEL_FONT, "mode": "hide"}, **kw)
    fig.update_xaxes(title_text=x, tickfont={"size": TICK_FONT, "color": INK}, gridcolor=GRID, linecolor=NEUTRAL,
                     zeroline=False, automargin=True)
    fig.update_yaxes(title_text=y, tickfont={"size": TICK_FONT, "color": INK}, gridcolor=GRID, linecolor=NEUTRAL,
                     zeroline=False, automargin=True)
    return fig


def task_ticks(fig: go.Figure, names: Sequence[str], colours: dict[str, str], done: Iterable[str]) -> None:
    """Category ticks that show each name's colour (a square before it) and "computing…" under a name
    whose values are not there yet, so a name never disappears from the axis."""
    from ..state import PENDING

    ready = set(done)
    text = [f'<span style="color:{colours[n]}">■</span> {n}' + ("" if n in ready else f"<br><i>{PENDING}</i>")
            for n in names]
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=list(names), tickvals=list(names),
                     ticktext=text, showgrid=False)


def legend_key(fig: go.Figure, dashes: dict[str, str], names: dict[str, str], group: str = "line style") -> None:
    """Legend-only lines in a neutral colour that explain the line styles, in their own group."""
    for i, (metric, dash) in enumerate(dashes.items()):
        fig.add_scatter(x=[None], y=[None], mode="lines+markers", name=names.get(metric, metric), legendgroup=group,
                        legendgrouptitle_text=group if i == 0 else None, hoverinfo="skip", legendrank=1000 + i,
                        line={"color": NEUTRAL, "width": 2.5, "dash": dash}, marker={"color": NEUTRAL})


def curves(fig: go.Figure, summary: pd.DataFrame, by: str, dashes: dict[str, str], names: dict[str, str],
           axis: EpsAxis, *, ci: Sequence[str] = (), legend: bool = True, fmt: str = ".3f",
           colours: dict[str, str] | None = None, **where: Any) -> None:
    """One line per value of ``by`` (its colour) and metric (its dash) against eps, with 95 % error bars for the
    metrics in ``ci``; ``bound_head`` only where the head-subspace attack has run."""
    colours = colours or colours_for(summary[by])
    for key, rows in summary.groupby(by, sort=False):
        rows = rows.sort_values("eps")
        for i, (metric, dash) in enumerate(dashes.items()):
            data = rows[rows["head_attack"].astype(bool)] if metric == "bound_head" else rows
            if data.empty or metric not in data:
                continue
            text = ci_text(data, metric) if metric in ci else [f"{v:{fmt}}" for v in data[metric]]
            fig.add_scatter(x=axis.x(data["eps"]), y=data[metric], mode="lines+markers", name=str(key),
                            legendgroup=str(key), showlegend=legend and i == 0, marker={"size": 7},
                            line={"color": colours[str(key)], "dash": dash, "width": 3 if i == 0 else 2.5},
                            error_y=interval(data, metric) if metric in ci else None,
                            customdata=list(zip(hover_eps(data, axis.norm), text)),
                            hovertemplate=f"{key}<br>ε %{{customdata[0]}}<br>{names.get(metric, metric)}: "
                                          "%{customdata[1]}<extra></extra>", **where)


def bars(fig: go.Figure, values: pd.DataFrame, names: Sequence[str], styles: dict[str, dict[str, Any]],
         labels: dict[str, str], slot_px: float, colours: dict[str, str], *, fmt: str = "{:.2f}",
         ci: bool = True) -> None:
    """Grouped bars per name (its colour; ``values`` indexed by name), one trace per quantity of ``styles`` (its
    fill), with 95 % whiskers and value labels where they fit."""
    for m, style in styles.items():
        have = [t for t in names if t in values.index and m in values and not pd.isna(values.at[t, m])]
        data = values.loc[have] if have else values.iloc[:0]
        vals = data[m].tolist() if have else []
        fig.add_bar(x=have, y=vals, name=labels[m], showlegend=False, legendgroup=m,
                    marker={"color": [colours[t] for t in have], "line": {"color": [colours[t] for t in have],
                                                                          "width": 1.5}, **style},
                    text=fitted_labels(vals, slot_px, fmt), error_y=interval(data, m, NEUTRAL) if ci and have else None,
                    customdata=ci_text(data, m) if have else [],
                    hovertemplate="%{x}<br>" + labels[m] + ": %{customdata}<extra></extra>",
                    **bar_text([colours[t] for t in have], style.get("opacity", 1) < 1))


def at_eps(df: pd.DataFrame, eps: float) -> pd.DataFrame:
    """The rows of ``df`` at one eps (rounded as the library rounds eps)."""
    from rtcore.config import eps_mask

    return df[eps_mask(df["eps"], eps)] if len(df) else df


def norm_of(df: pd.DataFrame) -> str:
    vals = df["norm"].unique() if "norm" in df.columns and len(df) else []
    return str(vals[0]) if len(vals) == 1 else "linf"


class EpsAxis:
    """A linear eps axis in grid steps (k/255 for linf, the radius for l2) whose ticks are the eps values drawn
    (the grid and any added eps), labelled ``0 1 2 4 8 16`` (linf) or ``0 0.1 0.2 ...`` (l2)."""

    def __init__(self, values: Iterable[float], norm: str) -> None:
        self.norm = norm
        self.values = sorted({round(float(v), 9) for v in values})

    def x(self, eps: Iterable[float]) -> list[float]:
        scale = 255.0 if self.norm == "linf" else 1.0
        return [float(e) * scale for e in eps]

    def apply(self, fig: go.Figure, title: bool = True, **where: Any) -> None:
        xs = self.x(self.values)
        top = max(xs, default=1.0) or 1.0
        ticks = _spaced(xs, self.values, top)
        fig.update_xaxes(tickmode="array", tickvals=self.x(ticks), ticktext=[eps_tick(e, self.norm) for e in ticks],
                         range=[-0.03 * top, 1.03 * top], title_text=eps_axis_title(self.norm) if title else None,
                         **where)

    def mark(self, fig: go.Figure, eps: float | None, label: bool = True, **where: Any) -> None:
        """A dotted vertical line (and a label) at the cursor's eps."""
        if eps is None:
            return
        fig.add_vline(x=self.x([eps])[0], line_dash="dot", line_color=NEUTRAL, line_width=2, **where)
        if label:
            fig.add_annotation(x=self.x([eps])[0], y=1, yref="paper", text=f" ε = {eps_short(eps, self.norm)}",
                               showarrow=False, xanchor="left", yanchor="bottom",
                               font={"size": LABEL_FONT, "color": NEUTRAL})


def _spaced(xs: Sequence[float], values: Sequence[float], top: float, min_gap: float = 0.045) -> list[float]:
    """The eps values whose ticks are at least ``min_gap`` of the axis apart (0 and the largest always kept),
    so tick labels never overlap; the others stay on the curves and in the hover text."""
    keep: list[tuple[float, float]] = []
    for x, v in sorted(zip(xs, values), reverse=True):
        if not keep or (keep[-1][0] - x) >= min_gap * top or x == 0:
            if keep and x == 0 and (keep[-1][0] - x) < min_gap * top:
                keep.pop()
            keep.append((x, v))
    return sorted(v for _, v in keep)


def hover_eps(rows: pd.DataFrame, norm: str) -> list[str]:
    return [eps_short(e, norm) for e in rows["eps"]]


def interval(rows: pd.DataFrame, metric: str, colour: str | None = None) -> dict[str, Any] | None:
    """Error bars of ``metric`` from its ``_lo`` / ``_hi`` columns (the library's 95 % Wilson interval)."""
    lo, hi = f"{metric}_lo", f"{metric}_hi"
    if lo not in rows or hi not in rows:
        return None
    bar: dict[str, Any] = {"type": "data", "symmetric": False, "array": (rows[hi] - rows[metric]).tolist(),
                           "arrayminus": (rows[metric] - rows[lo]).tolist(), "thickness": 1.5, "width": 4}
    if colour:
        bar["color"] = colour
    return bar


def ci_text(rows: pd.DataFrame, metric: str) -> list[str]:
    """``0.912 [0.87, 0.94]`` per row (value and 95 % interval), for hover text."""
    lo, hi = f"{metric}_lo", f"{metric}_hi"
    if lo not in rows:
        return [f"{v:.3f}" for v in rows[metric]]
    return [f"{v:.3f} [{a:.2f}, {b:.2f}]" for v, a, b in zip(rows[metric], rows[lo], rows[hi])]


def label_width(text: str, font: int = LABEL_FONT) -> float:
    """Estimated pixel width of a value label."""
    return len(text) * CHAR_PX * font + 4


def bar_slot_px(plot_px: float, categories: int, bars_per_category: int, bargap: float = 0.2) -> float:
    """Pixel width of one bar in a grouped bar chart (plotly: categories share the plot, ``bargap`` between)."""
    return plot_px / max(categories, 1) * (1 - bargap) / max(bars_per_category, 1)


def bar_text(colours: Sequence[str], light: bool = False) -> dict[str, Any]:
    """How bars show their value labels: inside at the foot of the bar (clear of the whiskers) when they fit (white or ink, whichever contrasts
    more with the bar, ink on a light fill), else above the bar in ink."""
    inside = [INK if light or c not in WHITE_TEXT_ON else "white" for c in colours]
    return {"textposition": "auto", "insidetextanchor": "start", "cliponaxis": False,
            "insidetextfont": {"size": LABEL_FONT, "color": inside}, "outsidetextfont": {"size": LABEL_FONT, "color": INK}}


def fitted_labels(values: Sequence[float | None], slot_px: float, fmt: str = "{:.2f}") -> list[str]:
    """Value labels, blank where a label is wider than its bar (the value stays in the hover and the table)."""
    texts = ["" if v is None or pd.isna(v) else fmt.format(v) for v in values]
    return [t if t and label_width(t) <= slot_px else "" for t in texts]
