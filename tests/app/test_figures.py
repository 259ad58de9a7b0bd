"""Figure builders of rtcore.figures on small synthetic DataFrames: traces, axis titles, markers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from app import figures as fx
from app import figures_more, toy

TASKS = ("shapes", "glyphs")
EPS = (0.0, 0.015686275, 0.031372549)  # 0, 4/255, 8/255


@pytest.fixture
def summary() -> pd.DataFrame:
    rows = []
    for t_i, task in enumerate(TASKS):
        for e in EPS:
            robust = 0.9 - 5 * e - 0.1 * t_i
            rows.append({"backbone": "bb", "task": task, "norm": "linf", "eps": e, "n": 20,
                         "clean_acc": 0.9 - 0.1 * t_i,
                         "robust_acc": robust, "bound": robust - 2 * e, "mean_delta": 10 * e, "median_delta": 9 * e,
                         "mean_relative_delta": e, "clean_loss": 0.3, "adv_loss": 0.3 + 5 * e,
                         "loss_bound_lse": 0.3 + 20 * e, "loss_bound": 0.3 + 50 * e,
                         "bound_head": robust - e, "head_attack": e < 0.03, "loss_attack": e < 0.03,
                         "probe": "logistic"})
    return pd.DataFrame(rows)


@pytest.fixture
def samples() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for task in TASKS:
        for e in EPS:
            n = 20
            delta = 10 * e * rng.uniform(0.5, 1.5, n)
            rho = rng.normal(0.5, 0.6, n)
            certified = rho > delta
            robust = certified | (rng.uniform(size=n) < 0.3) & (rho > 0)
            frames.append(pd.DataFrame({"backbone": "bb", "task": task, "norm": "linf", "eps": e,
                                        "sample": np.arange(n),
                                        "delta": delta, "rho": rho, "criterion_met": certified, "robust": robust}))
    return pd.concat(frames, ignore_index=True)


def names(fig: go.Figure) -> list[str]:
    return [t.name for t in fig.data]


def test_accuracy_at_eps(summary: pd.DataFrame) -> None:
    fig = fx.accuracy_at_eps(summary, EPS[1])
    assert names(fig) == [fx.METRIC_NAMES[m] for m in ("clean_acc", "robust_acc", "bound")]
    assert all(isinstance(t, go.Bar) and list(t.x) == list(TASKS) for t in fig.data)
    assert list(fig.data[1].y) == pytest.approx([0.9 - 5 * EPS[1], 0.8 - 5 * EPS[1]])
    assert fig.layout.yaxis.title.text == fx.ACC_AXIS and "4/255" in fig.layout.title.text


def test_bars_show_clean_accuracy_while_an_eps_is_computing(summary: pd.DataFrame) -> None:
    first = summary[summary["eps"] == 0.0]
    fig = fx.accuracy_at_eps(first, EPS[1])
    assert list(fig.data[0].y) == pytest.approx([0.9, 0.8]), "clean accuracy from eps = 0"
    assert list(fig.data[1].text) == [fx.PENDING, fx.PENDING], "robust accuracy: still computing"


def test_accuracy_curves_mark_the_current_eps(summary: pd.DataFrame) -> None:
    fig = fx.accuracy_curves(summary, EPS[1])
    assert names(fig)[:3] == ["shapes", "shapes: bound (ρ > Δ)", "shapes: bound, head subspace (ρ > Δ_P)"]
    assert fig.data[1].line.dash == "dash" and fig.data[2].line.dash == "dot"
    assert fig.data[0].line.color == fig.data[1].line.color and fig.data[1].showlegend is False
    assert list(fig.data[2].x) == [0, 1], "bound (head subspace) only where the head attack ran"
    assert names(fig)[-3:] == ["robust accuracy (attack)", "bound: ρ > Δ", "bound, head subspace: ρ > Δ_P"]
    assert "pixel units" in fig.layout.xaxis.title.text and "linf" in fig.layout.xaxis.title.text
    assert list(fig.layout.xaxis.ticktext) == ["0", "4/255", "8/255"], "ticks read k/255"
    assert [s.x0 for s in fig.layout.shapes] == [1], "the cursor at the position of 4/255"


def test_calibration_scatter_has_the_diagonal(summary: pd.DataFrame) -> None:
    fig = fx.calibration_scatter(summary, EPS[2])
    diag = fig.data[0]
    assert list(diag.x) == [0, 1] and list(diag.y) == [0, 1]
    assert names(fig)[1:] == list(TASKS)
    assert len(fig.data[1].x) == len(EPS)
    assert list(fig.data[1].marker.size) == [9, 9, 15], "the current eps is drawn larger"
    assert "empirical" in fig.layout.xaxis.title.text and "bound" in fig.layout.yaxis.title.text


def test_delta_figures(summary: pd.DataFrame, samples: pd.DataFrame) -> None:
    box = fx.delta_distribution(samples)
    assert [type(t) for t in box.data] == [go.Box, go.Box]
    assert box.layout.yaxis.title.text == fx.DELTA_AXIS and "pixel units" in box.layout.xaxis.title.text
    assert list(box.layout.xaxis.categoryarray) == ["0", "4/255", "8/255"]
    curves = fx.delta_curves(summary, EPS[1])
    assert names(curves) == ["shapes", "shapes: median", "glyphs", "glyphs: median", "mean", "median"]
    rel = fx.relative_delta_curves(summary, EPS[1])
    assert rel.layout.yaxis.title.text == fx.REL_AXIS and len(rel.data) == 2


def test_rho_delta_scatter_splits_by_status(samples: pd.DataFrame) -> None:
    at = samples[np.isclose(samples["eps"], EPS[2])]
    fig = fx.rho_delta_scatter(samples, EPS[2])
    assert fig.data[0].name == "ρ = Δ" and fig.data[0].x[0] == 0 and fig.data[0].x[1] == fig.data[0].y[1]
    counts = [len(t.x) for t in fig.data[1:]]
    assert sum(counts) == len(at)
    met = fig.data[1]
    assert all(r > d for r, d in zip(met.y, met.x, strict=False)), "points meeting the criterion lie above the line"
    assert fig.layout.xaxis.title.text == fx.DELTA_AXIS and fig.layout.yaxis.title.text == fx.RHO_AXIS


def test_gallery_has_three_rows_of_images() -> None:
    x = torch.rand(4, 1, 28, 28)
    x_adv = (x + 0.05 * torch.sign(torch.randn_like(x))).clamp(0, 1)
    fig = fx.gallery(x, x_adv, 0.05, ["a", "b", "c", "d"])
    assert len(fig.data) == 12 and all(isinstance(t, go.Heatmap) for t in fig.data)
    pert = np.asarray(fig.data[8].z)
    assert np.abs(pert).max() <= 1 + 1e-6, "perturbation amplified by 1/eps stays in [-1, 1]"
    assert [a.text for a in fig.layout.annotations][:4] == ["a", "b", "c", "d"]
    assert np.asarray(fx.gallery(x, x, 0.0).data[8].z).max() == 0, "eps = 0 draws no perturbation"


def test_loss_figures_show_both_bounds(summary: pd.DataFrame) -> None:
    bars = fx.loss_at_eps(summary, EPS[2])
    assert names(bars) == [fx.LOSS_NAMES[m] for m in ("clean_loss", "adv_loss", "loss_bound_lse", "loss_bound")]
    assert bars.layout.yaxis.type == "log" and bars.layout.yaxis.title.text == fx.LOSS_AXIS
    curves = fx.loss_curves(summary, EPS[2])
    assert len(curves.data) == 3 * len(TASKS) + 3 and curves.layout.yaxis.type == "log"
    assert list(curves.data[2].y) == pytest.approx([0.3 + 50 * e for e in EPS]), "bound (i) per eps"
    assert curves.data[1].line.dash == "dashdot", "bound (ii) log-sum-exp"
    assert "pixel units" in curves.layout.xaxis.title.text


def test_compare_figures(summary: pd.DataFrame) -> None:
    two = pd.concat([summary, summary.assign(backbone="other", robust_acc=summary["robust_acc"] / 2)])
    bars = fx.compare_at_eps(two, EPS[1])
    assert len(bars.data) == 4 and bars.data[1].marker.pattern.shape == "/"
    assert [t.name for t in bars.data if t.showlegend is not False] == ["bb", "other"]
    assert "(left)" in bars.layout.title.text and "(right)" in bars.layout.title.text
    assert all(t.text is not None and len(t.text) == len(TASKS) for t in bars.data), "every bar is labelled"
    zero = fx.compare_at_eps(two.assign(bound=0.0), EPS[1])
    assert any("every bound is 0" in a.text for a in zero.layout.annotations), "an empty panel says why"
    curves = fx.compare_curves(two, EPS[1])
    assert len(curves.data) == 2 * 2 * len(TASKS) + 2
    assert [a.text for a in curves.layout.annotations][: len(TASKS)] == list(TASKS)
    assert "pixel units" in curves.layout.xaxis.title.text


def test_probe_tradeoff_has_a_panel_per_quantity(summary: pd.DataFrame) -> None:
    three = pd.concat([summary[summary["task"] == "shapes"].assign(probe=p, bound=summary["bound"] + i * 0.1)
                       for i, p in enumerate(["logistic", "logistic-std", "robust"])])
    fig = fx.probe_tradeoff(three, EPS[1])
    assert [a.text for a in fig.layout.annotations][:3] == [t for _, t in figures_more.TRADEOFF_PANELS]
    assert [t.legendgroup for t in fig.data if t.showlegend] == ["logistic", "logistic-std", "robust"]
    assert len(fig.data) == 3 * 3


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_toy_figure(norm: str) -> None:
    tm = toy.linear_toy(1.5, 0.5, 0.3, 0.8, 0.6, 0.4, 0.2, norm, -30, -0.4)
    fig = fx.linear_toy_figure(tm)
    labels = " | ".join(names(fig))
    for part in ("ε-ball", "radius Δ", "image of the ε-ball", "ρ (margin)", "decision boundary w·z + b = 0"):
        assert part in labels
    image = next(t for t in fig.data if t.name.startswith("image of"))
    assert np.allclose(np.c_[image.x, image.y], tm.image)
    if norm == "linf":
        assert len(image.x) == 5, "a parallelogram: the image of the square"
