"""What every figure shares: colours, fonts, the layout (title, legend, margins), the linear eps axis, interval
error bars, value labels above the whiskers and small multiples. No streamlit, no numeric work: figures draw the
library's tables.

Projector rules: every font at least 14 px in near-black on white, at least 18 px in presenter mode
(:func:`.look.presenting`, thicker lines and larger markers too); a colour is fixed per name (a task is the same
colour on every page, whatever else is chosen: :func:`colours_for`), quantities are told apart by line style
and marker shape together; the legend never covers the title (right of the plot, or below it in the figure's
bottom margin); eps on a linear axis whose ticks are the computed eps values, the same on every page; at most
one task per panel for curves (small multiples, :func:`panel_grid`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rtcore.config import eps_text
from rtcore.tables import head_masked, table_norm

from .look import GRID, INK, NEUTRAL, PALETTE, look

PENDING = "computing…"  # a value not computed yet (the browser test and scripts/classroom_load.py look for it)
MISSING = "—"  # a value that does not apply
#: the plot-area width (px) bar labels are sized for: a 1280 px window with the sidebar open
PLOT_PX = {"full": 760, "half": 360}
CHAR_PX = 0.62  # width of a digit in units of the font size (label width estimate)
ACC_AXIS = "accuracy (share of test points)"
#: the accuracy axis of bar charts, with room above 1 for the value labels over the whiskers
ACC_BARS: dict[str, Any] = {"range": [0, 1.16], "tickvals": [0, 0.2, 0.4, 0.6, 0.8, 1.0]}
DELTA_AXIS = "Δ(x) = ‖g(x′) − g(x)‖₂ (feature units)"
REL_AXIS = "Δ(x) / ‖g(x)‖₂ (relative feature shift)"
RHO_AXIS = "ρ(x), margin (feature units)"
LOSS_AXIS = "cross-entropy loss (nats, log scale)"
METRIC_NAMES: dict[str, str] = {"clean_acc": "clean accuracy", "robust_acc": "robust accuracy (attack)",
                                "bound": "bound (ρ > Δ)", "bound_head": "bound, head subspace (ρ > Δ_P)"}
CURSOR = "dotted line: the cursor's ε"
PANEL_KEY = f"one panel per task · {CURSOR}"
#: line styles of the quantities on curves (colour is the task, backbone, probe or method)
DASH: dict[str, str] = {"robust_acc": "solid", "bound": "dash", "bound_head": "dot"}
#: every line style has its own marker, so two quantities differ in both (a dash alone is hard to tell apart)
SYMBOL: dict[str, str] = {"solid": "circle", "dash": "square-open", "dot": "diamond", "dashdot": "triangle-up-open",
                          "longdash": "x"}


def _known_names() -> list[list[str]]:
    from rtcore import list_backbones, list_tasks
    from rtcore.probes import list_probes
    from rtcore.transfer import TRANSFER_METHODS

    tasks = list(dict.fromkeys([*list_tasks(offline_only=True), *list_tasks()]))
    return [tasks, list(list_backbones()), list(list_probes()), list(TRANSFER_METHODS)]


def colour_of(name: str) -> str:
    """The fixed colour of a name: its place in its registry (offline tasks first), else a hash of the name,
    so a task keeps its colour whatever else is chosen, on every page."""
    for names in _known_names():
        if name in names:
            return PALETTE[names.index(name) % len(PALETTE)]
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def colours_for(names: Iterable[str]) -> dict[str, str]:
    """:func:`colour_of` for each name."""
    return {str(n): colour_of(str(n)) for n in dict.fromkeys(names)}


def layout(fig: go.Figure, title: str, x: str, y: str, *, height: int = 420, legend: str = "right",
           legend_title: str | None = None, subtitle: str | None = None, plot: str = "full",
           **kw: Any) -> go.Figure:
    """Title (top left), axis titles, every font of the current :func:`look` and the legend: ``right`` (a column
    right of the plot) or ``bottom`` (a row in the figure's bottom margin, below the x-axis title; always in
    presenter mode); both push the margins, so the legend never covers the title, the plot or the axis titles."""
    lk = look()
    if legend == "bottom" or lk.present:
        leg: dict[str, Any] = {"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom", "x": 0,
                               "xanchor": "left"}
    else:
        leg = {"orientation": "v", "yanchor": "top", "y": 1.0, "x": 1.02, "xanchor": "left",
               "groupclick": "toggleitem"}
    leg.update(font={"size": lk.label}, title={"text": legend_title, "font": {"size": lk.label}}
               if legend_title else None, grouptitlefont={"size": lk.label})
    subtitle = _wrapped(subtitle or "", PLOT_PX[plot] / (0.55 * lk.label))
    fig.update_layout(
        template="plotly_white", height=round(height * (1.15 if lk.present else 1)), hovermode="closest",
        legend=leg, font={"size": lk.font, "color": INK},
        title={"text": title, "x": 0, "xanchor": "left", "yref": "container", "y": 0.98, "yanchor": "top",
               "font": {"size": lk.title, "color": INK},
               "subtitle": {"text": subtitle or "", "font": {"size": lk.label, "color": NEUTRAL}}},
        margin={"l": 10, "r": 10, "b": 10, "t": lk.title * 2 + 24 + (lk.label + 8) * (subtitle.count("<br>") + 1)
                * bool(subtitle) + (lk.font + 10) * _has_panel_titles(fig)},
        meta={"plot_px": PLOT_PX[plot], "label_font": lk.label, "char_px": CHAR_PX, "present": lk.present},
        uniformtext={"minsize": lk.label, "mode": "hide"}, **kw)
    for update in (fig.update_xaxes, fig.update_yaxes):
        update(title_text=y if update == fig.update_yaxes else x, tickfont={"size": lk.tick, "color": INK},
               title_font={"size": lk.font}, gridcolor=GRID, linecolor=NEUTRAL, zeroline=False, automargin=True)
    fig.update_annotations(font_size=lk.font)
    return fig


def _has_panel_titles(fig: go.Figure) -> bool:
    """Whether the figure has subplot titles (they sit in the top margin, above the first row)."""
    return any(a.yref == "paper" and a.yanchor == "bottom" and a.y == 1.0 for a in fig.layout.annotations)


def _wrapped(text: str, chars: float) -> str:
    """``text`` broken into lines of at most ``chars`` characters at its " · " separators (subtitles do not wrap)."""
    lines: list[str] = []
    for part in text.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= chars:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return "<br>".join(lines)


def task_ticks(fig: go.Figure, names: Sequence[str], colours: dict[str, str], done: Iterable[str]) -> None:
    """Category ticks that show each name's colour (a square before it) and "computing…" under a name
    whose values are not there yet, so a name never disappears from the axis."""
    ready = set(done)
    text = [f'<span style="color:{colours[n]}">■</span> {n}' + ("" if n in ready else f"<br><i>{PENDING}</i>")
            for n in names]
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=list(names), tickvals=list(names),
                     ticktext=text, showgrid=False)


def legend_key(fig: go.Figure, dashes: dict[str, str], names: dict[str, str], group: str = "line style") -> None:
    """Legend-only lines in a neutral colour that explain the line styles and markers, in their own group."""
    lk = look()
    for i, (metric, dash) in enumerate(dashes.items()):
        fig.add_scatter(x=[None], y=[None], mode="lines+markers", name=names.get(metric, metric), legendgroup=group,
                        legendgrouptitle_text=group if i == 0 else None, hoverinfo="skip", legendrank=1000 + i,
                        line={"color": NEUTRAL, "width": lk.line, "dash": dash},
                        marker={"color": NEUTRAL, "symbol": SYMBOL[dash], "size": lk.marker})


def curves(fig: go.Figure, summary: pd.DataFrame, by: str, dashes: dict[str, str], names: dict[str, str],
           axis: EpsAxis, *, ci: Sequence[str] = (), legend: bool = True, fmt: str = ".3f",
           colours: dict[str, str] | None = None, **where: Any) -> None:
    """One line per value of ``by`` (its colour) and metric (its dash and marker) against eps, with 95 % error
    bars for the metrics in ``ci``; ``bound_head`` only where the head-subspace attack has run."""
    colours = colours or colours_for(summary[by])
    lk = look()
    for key, rows in summary.groupby(by, sort=False):
        rows = rows.sort_values("eps")
        for i, (metric, dash) in enumerate(dashes.items()):
            if metric not in rows:
                continue
            data = head_masked(rows).dropna(subset=[metric]) if metric == "bound_head" else rows
            if data.empty:
                continue
            text = ci_text(data, metric) if metric in ci else [f"{v:{fmt}}" for v in data[metric]]
            fig.add_scatter(x=axis.x(data["eps"]), y=data[metric], mode="lines+markers", name=str(key),
                            legendgroup=str(key), showlegend=legend and i == 0,
                            marker={"size": lk.marker, "symbol": SYMBOL[dash],
                                    "line": {"width": 2, "color": colours[str(key)]}},
                            line={"color": colours[str(key)], "dash": dash, "width": lk.line},
                            error_y=interval(data, metric) if metric in ci else None,
                            customdata=list(zip(hover_eps(data, axis.norm), text)),
                            hovertemplate=f"{key}<br>ε %{{customdata[0]}}<br>{names.get(metric, metric)}: "
                                          "%{customdata[1]}<extra></extra>", **where)


def panel_grid(names: Sequence[str], colours: dict[str, str] | None = None,
               shared_y: bool = True) -> tuple[go.Figure, list[tuple[int, int]]]:
    """Small multiples: one panel per name (at most 3 a row), titled with the name (and its colour's square);
    returns the figure and each name's (row, col)."""
    cols = max(1, min(3, len(names)))
    rows = max(1, -(-len(names) // cols))
    titles = [f'<span style="color:{colours[n]}">■</span> {n}' if colours else str(n) for n in names]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles or [""], shared_yaxes=shared_y,
                        horizontal_spacing=0.05, vertical_spacing=min(0.3, 0.45 / rows))
    return fig, [(i // cols + 1, i % cols + 1) for i in range(len(names))]


def panel_axes(fig: go.Figure, axis: EpsAxis, cells: Sequence[tuple[int, int]], current_eps: float | None) -> None:
    """The eps axis on every panel (its title with units under the lowest panel of each column) and the cursor."""
    lowest = {c: max(r for r, cc in cells if cc == c) for _, c in cells}
    for r, c in cells:
        axis.apply(fig, title=r == lowest[c], short=True, row=r, col=c)
        axis.mark(fig, current_eps, label=False, row=r, col=c)


def eps_curves(summary: pd.DataFrame, by: str, dashes: dict[str, str], names: dict[str, str], title: str,
               y_title: str, current_eps: float | None, *, ci: Sequence[str] = (), fmt: str = ".3f",
               key: bool = False, **kw: Any) -> tuple[go.Figure, EpsAxis]:
    """One panel against eps: a line per value of ``by`` (its colour, in the legend right of the plot) and
    quantity of ``dashes`` (:func:`curves`; ``key``: with the line styles' key), the eps axis and the cursor."""
    fig = go.Figure()
    axis = EpsAxis(summary["eps"], table_norm(summary))
    curves(fig, summary, by, dashes, names, axis, ci=ci, fmt=fmt)
    if key:
        legend_key(fig, dashes, names)
    layout(fig, title, "", y_title, legend_title=f"{by} (colour)", **kw)
    axis.apply(fig)
    axis.mark(fig, current_eps)
    return fig, axis


def task_panels(summary: pd.DataFrame, by: str, dashes: dict[str, str], names: dict[str, str], title: str,
                current_eps: float | None, y_title: str, *, ci: Sequence[str] = (), fmt: str = ".3f",
                shared_y: bool = True, accuracy: bool = False) -> go.Figure:
    """Small multiples against eps, one panel per task (:func:`panel_grid`, 300 px a row): a line per value of
    ``by`` (its colour) and quantity of ``dashes`` (:func:`curves`), the line styles' key, the eps axis and the
    cursor on every panel (:func:`panel_axes`); ``accuracy``: every panel's y range is [0, 1]. Colour by task: the
    legend is the key alone, below the panels; else the colours' legend is right of them."""
    tasks = list(dict.fromkeys(summary["task"]))
    per_task = by == "task"
    colours = colours_for(summary[by])
    fig, cells = panel_grid(tasks, colours if per_task else None, shared_y)
    axis = EpsAxis(summary["eps"], table_norm(summary))
    for i, (task, (r, c)) in enumerate(zip(tasks, cells)):
        curves(fig, summary[summary["task"] == task], by, dashes, names, axis, ci=ci, fmt=fmt,
               legend=not per_task and i == 0, colours=colours, row=r, col=c)
    legend_key(fig, dashes, names, group="per panel" if per_task else "line style")
    layout(fig, title, "", "", subtitle=PANEL_KEY, height=300 * max((r for r, _ in cells), default=1) + 190,
           legend="bottom" if per_task else "right", legend_title=None if per_task else f"{by} (colour)")
    panel_axes(fig, axis, cells, current_eps)
    if accuracy:
        fig.update_yaxes(range=[-0.02, 1.04])
    fig.update_yaxes(title_text=y_title, col=1)
    return fig


def task_bars(values: pd.DataFrame, tasks: Sequence[str], ready: Iterable[str], styles: dict[str, dict[str, Any]],
              labels: dict[str, str], title: str, y_title: str, subtitle: str, plot: str = "full", *,
              fmt: str = "{:.2f}", ci: bool = True) -> go.Figure:
    """Grouped bars per task (its colour; ``values`` indexed by task), one trace per quantity of ``styles`` (its
    fill), with 95 % whiskers (``ci``) and value labels above them (:func:`value_labels`, all or none); every task
    stays on the axis, one not ``ready`` reads "computing…" (:func:`task_ticks`)."""
    fig, colours = go.Figure(), colours_for(tasks)
    have = {m: [t for t in tasks if t in values.index and m in values and not pd.isna(values.at[t, m])]
            for m in styles}
    texts = fitted_labels({m: [values.at[t, m] for t in have[m]] for m in styles},
                          bar_slot_px(PLOT_PX[plot], len(tasks), len(styles)), fmt)
    for m, style in styles.items():
        data = values.loc[have[m]] if have[m] else values.iloc[:0]
        col = [colours[t] for t in have[m]]
        fig.add_bar(x=have[m], y=data[m].tolist() if have[m] else [], name=labels[m], showlegend=False,
                    legendgroup=m, offsetgroup=m, marker={"color": col, "line": {"color": col, "width": 1.5}, **style},
                    error_y=interval(data, m, NEUTRAL) if ci and have[m] else None,
                    customdata=ci_text(data, m) if have[m] else [],
                    hovertemplate="%{x}<br>" + labels[m] + ": %{customdata}<extra></extra>")
        value_labels(fig, have[m], data, m, texts[m], m, ci)
    layout(fig, title, "downstream task", y_title, barmode="group", height=460, bargap=0.2, showlegend=False,
           plot=plot, subtitle=subtitle)
    task_ticks(fig, tasks, colours, ready)
    return fig


def value_labels(fig: go.Figure, x: Sequence[str], rows: pd.DataFrame, metric: str, texts: Sequence[str],
                 group: str, ci: bool = True, **where: Any) -> None:
    """The bars' value labels as text above the top of each whisker (the bar's top without one), in the bar's
    offset group, so a whisker never runs through a label and a zero bar has one too."""
    hi = f"{metric}_hi"
    top = rows[hi] if ci and hi in rows else rows[metric] if len(rows) else []
    fig.add_scatter(x=list(x), y=list(top), text=list(texts), mode="text", textposition="top center",
                    offsetgroup=group, showlegend=False, hoverinfo="skip", cliponaxis=False, name=f"{group} values",
                    textfont={"size": look().label, "color": INK}, **where)
    fig.update_layout(scattermode="group")


def calibration_frame(fig: go.Figure) -> None:
    """The diagonal where the bound equals the empirical robust accuracy (dotted), and both axes fixed to the
    shares' range [0, 1]."""
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="bound = empirical", hoverinfo="skip",
                    line={"color": NEUTRAL, "dash": "dot", "width": look().line})
    fig.update_xaxes(range=[-0.03, 1.03], constrain="domain")
    fig.update_yaxes(range=[-0.03, 1.03], constrain="domain")


class EpsAxis:
    """A linear eps axis in grid steps (k/255 for linf, the radius for l2) whose ticks are the eps values drawn
    (the grid and any added eps), labelled ``0 1 2 4 8 16`` (linf) or ``0 0.1 0.2 ...`` (l2)."""

    def __init__(self, values: Iterable[float], norm: str) -> None:
        self.norm = norm
        self.values = sorted({round(float(v), 9) for v in values})

    def x(self, eps: Iterable[float]) -> list[float]:
        scale = 255.0 if self.norm == "linf" else 1.0
        return [float(e) * scale for e in eps]

    def apply(self, fig: go.Figure, title: bool = True, short: bool = False, **where: Any) -> None:
        """Ticks and range; the title with units (``short``: the compact one of a small panel)."""
        xs = self.x(self.values)
        top = max(xs, default=1.0) or 1.0
        ticks = _spaced(xs, self.values, top, (0.1 if look().present else 0.06) if short else 0.045)
        name = ("ε = k/255" if self.norm == "linf" else "ε (l2 radius)") if short else \
            ("ε in steps of 1/255 (linf, pixels in [0, 1])" if self.norm == "linf" else
             "ε (l2 radius, pixels in [0, 1])")
        fig.update_xaxes(tickmode="array", tickvals=self.x(ticks), ticktext=[eps_tick(e, self.norm) for e in ticks],
                         range=[-0.03 * top, 1.03 * top], title_text=name if title else None, **where)

    def mark(self, fig: go.Figure, eps: float | None, label: bool = True, **where: Any) -> None:
        """A dotted vertical line (and a label) at the cursor's eps."""
        if eps is None:
            return
        fig.add_vline(x=self.x([eps])[0], line_dash="dot", line_color=NEUTRAL, line_width=2, **where)
        if label:
            fig.add_annotation(x=self.x([eps])[0], y=1, yref="paper", text=f" ε = {eps_text(eps, self.norm)}",
                               showarrow=False, xanchor="left", yanchor="bottom",
                               font={"size": look().label, "color": NEUTRAL})


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
    return [str(eps_text(e, norm)) for e in rows["eps"]]


def eps_tick(eps: float, norm: str) -> str:
    """An eps axis tick: the number of 1/255 steps (linf) or the radius (l2)."""
    return str(eps_text(eps, norm)).removesuffix("/255")


def interval(rows: pd.DataFrame, metric: str, colour: str | None = None) -> dict[str, Any] | None:
    """Error bars of ``metric`` from its ``_lo`` / ``_hi`` columns (the library's 95 % Wilson interval)."""
    lo, hi = f"{metric}_lo", f"{metric}_hi"
    if lo not in rows or hi not in rows:
        return None
    bar: dict[str, Any] = {"type": "data", "symmetric": False, "array": (rows[hi] - rows[metric]).tolist(),
                           "arrayminus": (rows[metric] - rows[lo]).tolist(), "thickness": 2, "width": 5}
    if colour:
        bar["color"] = colour
    return bar


def ci_text(rows: pd.DataFrame, metric: str) -> list[str]:
    """``0.912 [0.87, 0.94]`` per row (the value and its 95 % interval; the value alone without one, a dash where it
    is missing): hover text and tables."""
    lo, hi = (rows.get(f"{metric}_{end}", pd.Series(float("nan"), rows.index)) for end in ("lo", "hi"))
    return [MISSING if pd.isna(v) else f"{v:.3f}" if pd.isna(a) else f"{v:.3f} [{a:.2f}, {b:.2f}]"
            for v, a, b in zip(rows.get(metric, pd.Series(float("nan"), rows.index)), lo, hi)]


def label_width(text: str, font: int | None = None) -> float:
    """Estimated pixel width of a value label."""
    return len(text) * CHAR_PX * (font or look().label) + 4


def bar_slot_px(plot_px: float, categories: int, bars_per_category: int, bargap: float = 0.2) -> float:
    """Pixel width of one bar in a grouped bar chart (plotly: categories share the plot, ``bargap`` between)."""
    return plot_px / max(categories, 1) * (1 - bargap) / max(bars_per_category, 1)


def fitted_labels(values: dict[str, Sequence[float | None]], slot_px: float,
                  fmt: str = "{:.2f}") -> dict[str, list[str]]:
    """Value labels per trace, all of them or none: blank everywhere when one label is wider than its bar (the
    values stay in the hover and the table), so a chart never shows a lone label."""
    texts = {k: ["" if v is None or pd.isna(v) else fmt.format(v) for v in vs] for k, vs in values.items()}
    fits = all(label_width(t) <= slot_px for ts in texts.values() for t in ts if t)
    return texts if fits else {k: [""] * len(ts) for k, ts in texts.items()}
