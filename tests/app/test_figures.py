"""Figure builders of app.figures on small synthetic tables: traces, axes, intervals, the colour rule, and value
labels that never overlap (checked from each figure's layout: bar positions and label widths)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from app import figures as fx
from app.figures import style
from app.texts import texts
from rtcore.config import eps_grid
from rtcore.theory import linear_toy
from rtcore.stats import wilson_interval

TASKS = ("shapes", "glyphs")
EPS = (0.0, eps_grid("linf")[3], eps_grid("linf")[4])  # 0, 4/255, 8/255
N = 20


def with_ci(df: pd.DataFrame) -> pd.DataFrame:
    for m in ("clean_acc", "robust_acc", "bound", "bound_head"):
        lo, hi = wilson_interval(np.round(df[m].to_numpy() * N), np.full(len(df), N))
        df[f"{m}_lo"], df[f"{m}_hi"] = lo, hi
    return df


@pytest.fixture
def summary() -> pd.DataFrame:
    rows = []
    for t_i, task in enumerate(TASKS):
        for e in EPS:
            robust = 0.9 - 5 * e - 0.1 * t_i
            rows.append({"backbone": "bb", "task": task, "norm": "linf", "eps": e, "n": N, "clean_acc": 0.9 - 0.1 * t_i,
                         "robust_acc": robust, "bound": robust - 2 * e, "mean_delta": 10 * e, "median_delta": 9 * e,
                         "mean_relative_delta": e, "clean_loss": 0.3, "adv_loss": 0.3 + 5 * e,
                         "loss_bound_lse": 0.3 + 20 * e, "loss_bound": 0.3 + 50 * e, "bound_head": robust - e,
                         "head_attack": e < 0.03, "loss_attack": e < 0.03, "probe": "logistic"})
    return with_ci(pd.DataFrame(rows))


@pytest.fixture
def samples() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for task in TASKS:
        for e in EPS:
            delta = 10 * e * rng.uniform(0.5, 1.5, N)
            rho = rng.normal(0.5, 0.6, N)
            met = rho > delta
            frames.append(pd.DataFrame({"backbone": "bb", "task": task, "norm": "linf", "eps": e, "sample": np.arange(N),
                                        "delta": delta, "rho": rho, "criterion_met": met,
                                        "robust": met | (rng.uniform(size=N) < 0.3) & (rho > 0)}))
    return pd.concat(frames, ignore_index=True)


def names(fig: go.Figure) -> list[str]:
    return [t.name for t in fig.data]


def bar_traces(fig: go.Figure) -> list[go.Bar]:
    return [t for t in fig.data if isinstance(t, go.Bar)]


def label_traces(fig: go.Figure) -> list[go.Scatter]:
    return [t for t in fig.data if isinstance(t, go.Scatter) and t.mode == "text"]


def label_boxes(fig: go.Figure) -> list[tuple[str, float, float]]:
    """(x axis, left px, right px) of every bar label, from the figure's layout: categories share the panel's
    plot width (``meta.plot_px`` times the axis domain), ``bargap`` between them, the group's bars side by side;
    a label (a text trace in its bar's offset group) is centred on its bar and as wide as its text."""
    meta = fig.layout.meta
    gap = fig.layout.bargap if fig.layout.bargap is not None else 0.2
    boxes = []
    for axis in {t.xaxis or "x" for t in bar_traces(fig)}:
        group = [t for t in bar_traces(fig) if (t.xaxis or "x") == axis]
        order = [t.offsetgroup for t in group]
        layout_axis = fig.layout["xaxis" + axis[1:]]
        cats = list(layout_axis.categoryarray or dict.fromkeys(c for t in group for c in t.x))
        domain = layout_axis.domain or (0, 1)
        cat_px = meta["plot_px"] * (domain[1] - domain[0]) / len(cats)
        bar_px = cat_px * (1 - gap) / len(group)
        for t in label_traces(fig):
            if (t.xaxis or "x") != axis:
                continue
            j = order.index(t.offsetgroup)
            for x, text in zip(t.x, t.text):
                if text:
                    centre = (cats.index(x) + 0.5) * cat_px - cat_px * (1 - gap) / 2 + (j + 0.5) * bar_px
                    half = style.label_width(text, meta["label_font"]) / 2
                    assert half * 2 <= bar_px, f"label {text!r} is wider than its bar ({bar_px:.0f} px)"
                    boxes.append((axis, centre - half, centre + half))
    return boxes


def assert_labels_above_whiskers(fig: go.Figure) -> None:
    """Every value label is a text trace in its bar's offset group, at the top of the bar's whisker (or of the bar
    without one) and written above that point: no whisker runs through a label, a zero bar has one too."""
    assert fig.layout.scattermode == "group"
    for t in label_traces(fig):
        bar = next(b for b in bar_traces(fig) if b.offsetgroup == t.offsetgroup and (b.xaxis or "x") == (t.xaxis or "x"))
        assert list(t.x) == list(bar.x) and t.textposition == "top center"
        tops = np.asarray(bar.y, float) + (np.asarray(bar.error_y.array, float) if bar.error_y.array is not None else 0)
        assert np.allclose(np.asarray(t.y, float), tops), "labels sit on the whisker tops"


def fonts(fig: go.Figure) -> list[float]:
    """Every font size in effect in a figure (hover text aside): the layout's default and every explicit size."""
    found: list[float] = []

    def walk(node: object, in_font: bool = False) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if in_font and k == "size":
                    found.extend(v if isinstance(v, (list, tuple)) else [v])
                elif k != "hoverlabel":
                    walk(v, "font" in k.lower())
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v, in_font)

    spec = fig.to_plotly_json()
    walk(spec)
    return [float(spec["layout"]["font"]["size"]), *map(float, found)]


def assert_no_overlap(fig: go.Figure) -> int:
    boxes = sorted(label_boxes(fig))
    for (a1, l1, r1), (a2, l2, r2) in zip(boxes, boxes[1:]):
        assert a1 != a2 or r1 <= l2, f"labels overlap on {a1}: [{l1:.0f}, {r1:.0f}] and [{l2:.0f}, {r2:.0f}] px"
    return len(boxes)


def test_accuracy_at_eps(summary: pd.DataFrame) -> None:
    fig = fx.accuracy_at_eps(summary, EPS[1], TASKS)
    bars = bar_traces(fig)
    assert [t.name for t in bars] == [fx.METRIC_NAMES[m] for m in ("clean_acc", "robust_acc", "bound")]
    assert all(list(t.x) == list(TASKS) for t in bars)
    assert list(bars[1].y) == pytest.approx([0.9 - 5 * EPS[1], 0.8 - 5 * EPS[1]])
    assert bars[1].error_y.array is not None, "95 % intervals as error bars"
    assert fig.layout.yaxis.title.text == fx.ACC_AXIS and "4/255" in fig.layout.title.text
    colours = {tuple(t.marker.color) for t in bars}
    assert len(colours) == 1, "colour = task in every quantity; the quantity is the fill"
    assert assert_no_overlap(fig) == 6, "two tasks: every bar carries its value"
    assert_labels_above_whiskers(fig)
    assert fig.layout.yaxis.range[1] > 1.1, "room above 1 for a label over a whisker that ends at 1"


def test_short_and_zero_bars_carry_labels_above_their_whiskers(summary: pd.DataFrame) -> None:
    """Short bars (0.06, 0.04) and a zero bound: each has its label, written above the top of its whisker."""
    short = summary.assign(robust_acc=0.06, robust_acc_lo=0.01, robust_acc_hi=0.19, bound=0.0, bound_lo=0.0,
                           bound_hi=0.16)
    fig = fx.accuracy_at_eps(short, EPS[1], TASKS)
    labels = {t.offsetgroup: list(t.text) for t in label_traces(fig)}
    assert labels["robust_acc"] == ["0.06", "0.06"] and labels["bound"] == ["0.00", "0.00"], "a zero bar says 0.00"
    assert_labels_above_whiskers(fig)
    bound = next(t for t in label_traces(fig) if t.offsetgroup == "bound")
    assert list(bound.y) == pytest.approx([0.16, 0.16]), "above the whisker's top, not inside it"


def test_tasks_not_started_stay_on_the_axis(summary: pd.DataFrame) -> None:
    first = summary[(summary["eps"] == 0.0) & (summary["task"] == "shapes")]
    fig = fx.accuracy_at_eps(first, EPS[1], (*TASKS, "fmnist-seen"))
    assert list(fig.layout.xaxis.categoryarray) == [*TASKS, "fmnist-seen"]
    ticks = list(fig.layout.xaxis.ticktext)
    assert all("computing" in t for t in ticks), "no task is done at 4/255 yet"
    bars = bar_traces(fig)
    assert list(bars[0].x) == ["shapes"] and list(bars[0].y) == pytest.approx([0.9]), "its clean accuracy"
    assert "computing" not in " ".join(str(t.text) for t in fig.data), "no 'computing…' labels on bars"


def test_before_any_result_the_bars_frame_lists_every_task() -> None:
    fig = fx.accuracy_at_eps(pd.DataFrame(), EPS[1], TASKS, norm="l2")
    assert list(fig.layout.xaxis.categoryarray) == list(TASKS) and all("computing" in t for t in fig.layout.xaxis.ticktext)
    assert all(len(t.x) == 0 for t in fig.data) and "(l2)" in fig.layout.title.text


def test_labels_are_dropped_where_bars_are_narrow(summary: pd.DataFrame) -> None:
    many = pd.concat([summary.assign(task=f"task-{i}") for i in range(12)], ignore_index=True)
    fig = fx.accuracy_at_eps(many, EPS[1], plot="half")
    assert assert_no_overlap(fig) == 0 and all(not any(t.text) for t in label_traces(fig)), "too narrow"
    assert all(t.hovertemplate for t in bar_traces(fig)), "the values stay in the hover"


def test_a_chart_shows_every_label_or_none(summary: pd.DataFrame) -> None:
    """The loss chart once showed a lone "0.3": where one label does not fit, no label is drawn."""
    rows = summary.assign(clean_loss=0.3, adv_loss=12.345, loss_bound_lse=123.4, loss_bound=1234.5)
    mixed = pd.concat([rows.assign(task=f"task-{i}") for i in range(4)], ignore_index=True)
    texts = [x for t in label_traces(fx.loss_at_eps(mixed, EPS[1])) for x in t.text]
    assert all(texts) or not any(texts), texts
    assert not any(texts), "1.23e+03 does not fit a bar of a 4-task chart"
    assert all(all(t.text) for t in label_traces(fx.loss_at_eps(rows, EPS[1]))), "two tasks: they all fit"


def test_curves_are_small_multiples_one_task_per_panel(summary: pd.DataFrame) -> None:
    """The curves chart once drew 15 lines on one plot: now one panel per task, its lines in the task's colour."""
    five = pd.concat([summary.assign(task=t) for t in ("fmnist-novel", "fmnist-seen", "fmnist-torso", "shapes",
                                                        "glyphs")], ignore_index=True)
    for build in (fx.accuracy_curves, fx.loss_curves, fx.delta_curves):
        fig = build(five, EPS[1])
        lines = [t for t in fig.data if t.x is not None and t.x[0] is not None]
        by_axis: dict[str, set[str]] = {}
        for t in lines:
            by_axis.setdefault(t.xaxis or "x", set()).add(t.name)
        assert len(by_axis) == 5 and all(len(v) == 1 for v in by_axis.values()), build.__name__
        assert max(sum(1 for t in lines if (t.xaxis or "x") == a) for a in by_axis) <= 3
        assert len({t.line.color for t in lines}) == 5


def test_no_curve_of_the_head_subspace_bound_before_its_attack_ran(summary: pd.DataFrame) -> None:
    before = summary.assign(head_attack=False)
    for fig in (fx.accuracy_curves(before), fx.probe_tradeoff(before)):
        assert all(t.x is None or len(t.x) for t in fig.data), "no trace without points"
        assert not [t for t in fig.data if t.line.dash == "dot" and t.x is not None and len(t.x) and t.x[0] is not None]
    after = fx.accuracy_curves(summary)
    dotted = [t for t in after.data if t.line.dash == "dot" and t.x is not None and len(t.x) and t.x[0] is not None]
    assert sum(len(t.x) for t in dotted) == int(summary["head_attack"].sum()), "the points where it ran"


def test_quantities_differ_in_line_style_and_marker(summary: pd.DataFrame) -> None:
    """Dotted and dashed lines alone were hard to tell apart: each quantity also has its own marker shape."""
    for fig in (fx.accuracy_curves(summary), fx.loss_curves(summary), fx.compare_curves(summary)):
        lines = [t for t in fig.data if t.xaxis in (None, "x") and t.x is not None and t.x[0] is not None]
        styles = {(t.line.dash, t.marker.symbol) for t in lines}
        assert len({d for d, _ in styles}) == len({m for _, m in styles}) == len(styles) >= 2


def test_curves_use_a_linear_eps_axis_with_the_grid_as_ticks(summary: pd.DataFrame) -> None:
    fig = fx.accuracy_curves(summary, EPS[1])
    assert names(fig)[:3] == ["shapes"] * 3 and [t.line.dash for t in fig.data[:3]] == ["solid", "dash", "dot"]
    assert fig.data[0].line.color == fig.data[1].line.color
    assert list(fig.data[0].x) == pytest.approx([0, 4, 8]), "ε in steps of 1/255 on a linear axis"
    assert list(fig.layout.xaxis.tickvals) == pytest.approx([0, 4, 8]) and list(fig.layout.xaxis.ticktext) == \
        ["0", "4", "8"]
    assert list(fig.data[2].x) == pytest.approx([0, 4]), "bound (head subspace) only where the head attack ran"
    assert [s.x0 for s in fig.layout.shapes] == pytest.approx([4, 4]), "the cursor at 4/255 in both panels"
    assert fig.data[0].error_y.array is not None, "intervals"
    assert all("k/255" in fig.layout[a].title.text for a in ("xaxis", "xaxis2")), "units under every column"


def test_the_eps_axis_is_the_same_on_every_page(summary: pd.DataFrame) -> None:
    figs = [fx.accuracy_curves(summary, EPS[1]), fx.loss_curves(summary, EPS[1]), fx.delta_curves(summary, EPS[1]),
            fx.compare_curves(summary, EPS[1]), fx.probe_tradeoff(summary, EPS[1]),
            fx.method_curves(summary.assign(method="lp"), EPS[1])]
    for fig in figs:
        axes = [fig.layout[k] for k in fig.layout if k.startswith("xaxis")]
        assert all(list(a.ticktext) == ["0", "4", "8"] and a.type in (None, "linear", "-") for a in axes)


def test_tick_labels_never_crowd() -> None:
    grid = [*eps_grid("linf"), 3 / 255]
    fig = go.Figure()
    style.EpsAxis(grid, "linf").apply(fig)
    ticks = list(fig.layout.xaxis.tickvals)
    assert ticks[0] == 0 and ticks[-1] == pytest.approx(16)
    assert min(np.diff(ticks)) >= 0.045 * 16 - 1e-9


def test_calibration_scatter(summary: pd.DataFrame) -> None:
    fig = fx.calibration_scatter(summary, EPS[2])
    assert list(fig.data[0].x) == [0, 1] and list(fig.data[0].y) == [0, 1]
    assert names(fig)[1:] == list(TASKS) and len(fig.data[1].x) == len(EPS)
    assert list(fig.data[1].marker.size) == [8, 8, 16], "the cursor's eps is drawn larger"
    assert fig.data[1].error_x.array is not None and fig.data[1].error_y.array is not None


@pytest.mark.parametrize("build", [lambda s: fx.calibration_scatter(s), lambda s: fx.linear_toy_figure(
    linear_toy(**texts("theory")["examples"][0]["values"]))])
def test_equal_scale_axes_keep_their_ranges(summary: pd.DataFrame, build) -> None:  # noqa: ANN001
    """The calibration's share axis once ran from -0.2 to 1.2: with equal scales both axes must give way in
    their domain (the plot shrinks), never in their range."""
    fig = build(summary)
    for name in [k for k in fig.layout if k.startswith("yaxis") and fig.layout[k].scaleanchor]:
        y = fig.layout[name]
        x = fig.layout[y.scaleanchor.replace("x", "xaxis", 1)]
        assert y.constrain == "domain" and x.constrain == "domain", name
        assert y.range is not None and x.range is not None
    assert list(fx.calibration_scatter(summary).layout.yaxis.range) == [-0.03, 1.03], "a share stays in [0, 1]"


def test_delta_figures(summary: pd.DataFrame, samples: pd.DataFrame) -> None:
    box = fx.delta_distribution(samples)
    assert [type(t) for t in box.data] == [go.Box, go.Box] and list(box.layout.xaxis.categoryarray) == ["0", "4", "8"]
    curves = fx.delta_curves(summary, EPS[1])
    assert names(curves) == ["shapes", "shapes", "glyphs", "glyphs", "mean", "median"]
    assert {curves.data[0].xaxis, curves.data[2].xaxis} == {"x", "x2"}, "one panel per task"
    rel = fx.relative_delta_curves(summary, EPS[1])
    assert rel.layout.yaxis.title.text == fx.REL_AXIS and len(rel.data) == 2


def test_rho_delta_scatter_splits_by_status_in_the_task_colour(samples: pd.DataFrame) -> None:
    rows = samples[samples["task"] == "shapes"]
    at = rows[np.isclose(rows["eps"], EPS[2])]
    fig = fx.rho_delta_scatter(rows, EPS[2], "#123456")
    assert fig.data[0].name == "ρ = Δ"
    assert sum(len(t.x) for t in fig.data[1:]) == len(at)
    assert {t.marker.color for t in fig.data[1:]} == {"#123456"}, "one colour: the task; the status is the marker"
    assert len({t.marker.symbol for t in fig.data[1:]}) == 3
    met = fig.data[1]
    assert all(r > d for r, d in zip(met.y, met.x, strict=False)), "points meeting the criterion lie above the line"


def test_big_scatters_are_decimated(samples: pd.DataFrame) -> None:
    big = pd.concat([samples.assign(sample=samples["sample"] + 1000 * i) for i in range(60)], ignore_index=True)
    rows = big[big["task"] == "shapes"]
    fig = fx.rho_delta_scatter(rows, EPS[2])
    assert all(len(t.x) <= fx.vulnerability.MAX_POINTS for t in fig.data[1:])
    counts = [int(t.name.rsplit("(", 1)[1].rstrip(")")) for t in fig.data[1:]]
    assert sum(counts) == int(np.isclose(rows["eps"], EPS[2]).sum()), "the legend counts every point"


def test_gallery_has_three_rows_of_images() -> None:
    x = torch.rand(4, 1, 28, 28)
    x_adv = (x + 0.05 * torch.sign(torch.randn_like(x))).clamp(0, 1)
    fig = fx.gallery(x, x_adv, 0.05, ["a", "b", "c", "d"])
    assert len(fig.data) == 12 and all(isinstance(t, go.Heatmap) for t in fig.data)
    assert np.abs(np.asarray(fig.data[8].z)).max() <= 1 + 1e-6, "perturbation amplified by 1/eps stays in [-1, 1]"
    assert [a.text for a in fig.layout.annotations][:4] == ["a", "b", "c", "d"]


def test_loss_figures(summary: pd.DataFrame) -> None:
    bars = fx.loss_at_eps(summary, EPS[2])
    assert [t.name for t in bar_traces(bars)] == list(fx.LOSS_NAMES.values()) and bars.layout.yaxis.type == "log"
    assert_no_overlap(bars)
    assert_labels_above_whiskers(bars)
    assert all(len(t) <= 5 for tr in label_traces(bars) for t in tr.text), "three significant digits"
    curves = fx.loss_curves(summary, EPS[2])
    assert len(curves.data) == 3 * len(TASKS) + 3 and curves.layout.yaxis.type == "log"
    assert list(curves.data[2].y) == pytest.approx([0.3 + 50 * e for e in EPS]), "bound (i) per eps"


def test_compare_figures(summary: pd.DataFrame) -> None:
    two = pd.concat([summary, with_ci(summary.assign(backbone="other", robust_acc=summary["robust_acc"] / 2))])
    bars = fx.compare_at_eps(two, EPS[1])
    assert len(bar_traces(bars)) == 4 and bar_traces(bars)[1].marker.pattern.shape == "/"
    assert [t.name for t in bar_traces(bars) if t.showlegend is not False] == ["bb", "other"]
    assert all(t.error_y.array is not None for t in bar_traces(bars))
    assert assert_no_overlap(bars) == 8
    assert_labels_above_whiskers(bars)
    zero = fx.compare_at_eps(two.assign(bound=0.0, bound_lo=0.0), EPS[1])
    assert any("every bound is 0" in a.text for a in zero.layout.annotations), "an empty panel says why"
    curves = fx.compare_curves(two, EPS[1])
    assert len(curves.data) == 2 * 2 * len(TASKS) + 2
    assert [a.text for a in curves.layout.annotations][: len(TASKS)] == list(TASKS)


def test_compare_curves_name_the_eps_axis_and_draw_whiskers(summary: pd.DataFrame) -> None:
    """The compare page's chart against eps once had no x-axis title, no units and no whiskers."""
    five = pd.concat([summary.assign(task=f"task-{i}") for i in range(5)], ignore_index=True)
    fig = fx.compare_curves(five, EPS[1])
    rows = {k: fig.layout[k] for k in fig.layout if k.startswith("xaxis")}
    columns = {round(a.domain[0], 3) for a in rows.values()}
    titled = {round(a.domain[0], 3) for a in rows.values() if a.title.text and "k/255" in a.title.text}
    assert titled == columns and len(columns) == 3, "every column names the axis and its units"
    lines = [t for t in fig.data if t.x is not None and t.x[0] is not None]
    assert all(t.error_y.array is not None for t in lines), "95 % intervals on every line"


def test_compare_bars_at_the_default_selection_never_overlap(summary: pd.DataFrame) -> None:
    """The compare page's default: every bundled backbone on every offline task."""
    import rtcore
    from app import state

    backbones, tasks = state.session_defaults()["compare_backbones"], rtcore.list_tasks(offline_only=True)
    row = summary[summary["eps"] == EPS[1]].iloc[0]
    rows = [{**row.to_dict(), "backbone": b, "task": t, "robust_acc": 0.98 - 0.01 * i, "bound": 0.0}
            for i, b in enumerate(backbones) for t in tasks]
    fig = fx.compare_at_eps(pd.DataFrame(rows), EPS[1])
    assert len(bar_traces(fig)) == 2 * len(backbones)
    shown = assert_no_overlap(fig)
    assert shown in (0, 2 * len(backbones) * len(tasks)), "all labels fit, or none is drawn"
    assert all(t.hovertemplate and t.customdata is not None for t in bar_traces(fig)), "values on hover"


def test_probe_tradeoff_has_a_panel_per_quantity(summary: pd.DataFrame) -> None:
    three = pd.concat([summary[summary["task"] == "shapes"].assign(probe=p) for p in ["logistic", "logistic-std",
                                                                                        "robust"]])
    fig = fx.probe_tradeoff(three, EPS[1])
    assert [a.text for a in fig.layout.annotations][:3] == [t for _, t in fx.TRADEOFF_PANELS]
    assert [t.legendgroup for t in fig.data if t.showlegend] == ["logistic", "logistic-std", "robust"]
    assert len(fig.data) == 3 * 3


def test_legends_never_cover_titles(summary: pd.DataFrame) -> None:
    """Right of the plot, or in the bottom margin of the figure: never in the title's band."""
    figs = [fx.accuracy_curves(summary), fx.calibration_scatter(summary), fx.loss_curves(summary),
            fx.compare_at_eps(summary, EPS[1]), fx.probe_tradeoff(summary), fx.method_curves(summary.assign(method="a"))]
    for fig in figs:
        leg = fig.layout.legend
        assert leg.x >= 1.0 or (leg.yref == "container" and leg.y == 0 and leg.yanchor == "bottom")
        assert fig.layout.title.yref == "container"
        assert fig.layout.font.size >= 14 and fig.layout.title.font.size >= 16


def every_figure(summary: pd.DataFrame, samples: pd.DataFrame) -> dict[str, go.Figure]:
    two = pd.concat([summary, summary.assign(backbone="other")])
    x = torch.rand(2, 1, 8, 8)
    return {"accuracy_at_eps": fx.accuracy_at_eps(summary, EPS[1], TASKS), "accuracy_curves": fx.accuracy_curves(
        summary, EPS[1]), "calibration": fx.calibration_scatter(summary, EPS[1]),
        "probe_tradeoff": fx.probe_tradeoff(summary.assign(probe="robust"), EPS[1]),
        "compare_at_eps": fx.compare_at_eps(two, EPS[1]), "compare_curves": fx.compare_curves(two, EPS[1]),
        "loss_at_eps": fx.loss_at_eps(summary, EPS[1]), "loss_curves": fx.loss_curves(summary, EPS[1]),
        "delta_curves": fx.delta_curves(summary, EPS[1]), "relative": fx.relative_delta_curves(summary, EPS[1]),
        "delta_box": fx.delta_distribution(samples), "rho_delta": fx.rho_delta_scatter(samples, EPS[1]),
        "gallery": fx.gallery(x, x.clamp(0, 0.9), 0.05, ["a", "b"]),
        "toy": fx.linear_toy_figure(linear_toy(**texts("theory")["examples"][0]["values"])),
        "method_curves": fx.method_curves(summary.assign(method="lp", mean_delta_base=1.0), EPS[1]),
        "method_delta": fx.method_delta_curves(summary.assign(method="lp", mean_delta_base=1.0), EPS[1]),
        "blocks": fx.block_distance_bars({"ft": {"b1": 0.5}})}


@pytest.mark.parametrize("present, smallest", [(False, 14), (True, 18)])
def test_every_font_of_every_figure_is_large_enough(summary: pd.DataFrame, samples: pd.DataFrame, present: bool,
                                                    smallest: int) -> None:
    """Ticks and legends were 12-13 px on a projector: every font in every figure is at least 14 px, and at least
    18 px in presenter mode (ticks, legend, titles, subtitles, annotations, labels); lines get thicker there."""
    with fx.presenting(present):
        figs = every_figure(summary, samples)
    for name, fig in figs.items():
        assert min(fonts(fig)) >= smallest, (name, sorted(set(fonts(fig))))
        assert fig.layout.meta is None or fig.layout.meta.get("present", present) == present
        titles = [a for a in fig.layout.annotations if a.yref == "paper" and a.yanchor == "bottom" and a.y == 1]
        stack = fig.layout.title.font.size + (fig.layout.title.subtitle.text.count("<br>") + 1) * smallest * bool(
            fig.layout.title.subtitle.text) + (max((a.font.size for a in titles), default=0))
        assert fig.layout.margin.t >= 1.2 * stack, f"{name}: title, subtitle and panel titles need room above the plot"
    widths = [t.line.width for t in figs["accuracy_curves"].data if t.line.width]
    assert min(widths) >= (4 if present else 2.5)


def test_a_task_keeps_its_colour_whatever_else_is_chosen() -> None:
    """Task colours followed list position (shapes pink with five tasks, orange with two): now by name."""
    import rtcore

    offline = rtcore.list_tasks(offline_only=True)
    alone = fx.colours_for(["shapes"])["shapes"]
    assert fx.colours_for(offline)["shapes"] == alone == fx.colours_for(["glyphs", "shapes"])["shapes"]
    assert len(set(fx.colours_for(offline).values())) == len(offline), "the offline tasks never share a colour"
    okabe_ito = {"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000"}
    assert set(fx.colours_for(offline).values()) <= okabe_ito, "a colour-blind-safe palette"
    assert fx.colour_of("folder:/data/x") == fx.colour_of("folder:/data/x"), "your own task: a fixed colour too"
    with fx.presenting():
        assert fx.colours_for(["shapes"])["shapes"] == alone, "the same colour in presenter mode"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_toy_figure(norm: str) -> None:
    tm = linear_toy(**texts("theory")["examples"][0 if norm == "linf" else 2]["values"])
    fig = fx.linear_toy_figure(tm)
    labels = " | ".join(names(fig))
    for part in ("ε-ball", "radius Δ", "image of the ε-ball", "ρ (margin)", "decision boundary w·z + b = 0"):
        assert part in labels
    image = next(t for t in fig.data if t.name.startswith("image of"))
    assert np.allclose(np.c_[image.x, image.y], tm.image)
