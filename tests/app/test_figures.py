"""Figure builders of rtcore.figures on small synthetic DataFrames: traces, axis titles, markers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from app import toy
from app import figures as fx

TASKS = ("shapes", "glyphs")
EPS = (0.0, 0.03, 0.1)


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
                         "loss_bound": 0.3 + 50 * e})
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
    fig = fx.accuracy_at_eps(summary, 0.03)
    assert names(fig) == [fx.METRIC_NAMES[m] for m in ("clean_acc", "robust_acc", "bound")]
    assert all(isinstance(t, go.Bar) and list(t.x) == list(TASKS) for t in fig.data)
    assert list(fig.data[1].y) == pytest.approx([0.75, 0.65])
    assert fig.layout.yaxis.title.text == fx.ACC_AXIS and "0.03" in fig.layout.title.text


def test_accuracy_curves_mark_the_current_eps(summary: pd.DataFrame) -> None:
    fig = fx.accuracy_curves(summary, 0.03)
    assert len(fig.data) == 2 * len(TASKS) + 2, "robust and bound per task, and a line-style key"
    assert names(fig)[:2] == ["shapes", "shapes: bound"] and fig.data[1].showlegend is False
    assert fig.data[1].line.dash == "dash" and fig.data[0].line.color == fig.data[1].line.color
    assert names(fig)[-2:] == ["robust accuracy (attack)", "bound (prediction)"]
    assert "pixel units" in fig.layout.xaxis.title.text and "linf" in fig.layout.xaxis.title.text
    assert fig.layout.yaxis.title.text == fx.ACC_AXIS
    assert [s.x0 for s in fig.layout.shapes] == [0.03]


def test_calibration_scatter_has_the_diagonal(summary: pd.DataFrame) -> None:
    fig = fx.calibration_scatter(summary, 0.1)
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
    assert list(box.layout.xaxis.categoryarray) == ["0", "0.03", "0.1"]
    curves = fx.delta_curves(summary, 0.03)
    assert names(curves) == ["shapes", "shapes: median", "glyphs", "glyphs: median", "mean", "median"]
    rel = fx.relative_delta_curves(summary, 0.03)
    assert rel.layout.yaxis.title.text == fx.REL_AXIS and len(rel.data) == 2


def test_rho_delta_scatter_splits_by_status(samples: pd.DataFrame) -> None:
    at = samples[np.isclose(samples["eps"], 0.1)]
    fig = fx.rho_delta_scatter(samples, 0.1)
    assert fig.data[0].name == "ρ = Δ" and fig.data[0].x[0] == 0 and fig.data[0].x[1] == fig.data[0].y[1]
    counts = [len(t.x) for t in fig.data[1:]]
    assert sum(counts) == len(at)
    certified = fig.data[1]
    assert all(r > d for r, d in zip(certified.y, certified.x, strict=False)), "points meeting the criterion lie above the line"
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


def test_loss_figures_are_log_scaled(summary: pd.DataFrame) -> None:
    bars = fx.loss_at_eps(summary, 0.1)
    assert names(bars) == [fx.LOSS_NAMES[m] for m in ("clean_loss", "adv_loss", "loss_bound")]
    assert bars.layout.yaxis.type == "log" and bars.layout.yaxis.title.text == fx.LOSS_AXIS
    curves = fx.loss_curves(summary, 0.1)
    assert len(curves.data) == 2 * len(TASKS) + 2 and curves.layout.yaxis.type == "log"
    assert list(curves.data[1].y) == pytest.approx([0.3, 1.8, 5.3]), "bound (i) per eps"
    assert "pixel units" in curves.layout.xaxis.title.text


def test_compare_figures(summary: pd.DataFrame) -> None:
    two = pd.concat([summary, summary.assign(backbone="other", robust_acc=summary["robust_acc"] / 2)])
    bars = fx.compare_at_eps(two, 0.03)
    assert len(bars.data) == 4 and bars.data[1].marker.pattern.shape == "/"
    assert [t.name for t in bars.data if t.showlegend is not False] == ["bb", "other"]
    curves = fx.compare_curves(two, 0.03)
    assert len(curves.data) == 2 * 2 * len(TASKS) + 2
    assert [a.text for a in curves.layout.annotations][: len(TASKS)] == list(TASKS)
    assert "pixel units" in curves.layout.xaxis.title.text


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
