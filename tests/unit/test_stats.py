"""Confidence intervals: the Wilson score interval against hand-computed answers, and the interval
columns of the summary table (one per share, computed by that one function)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rtcore.stats import Z95, intervals_overlap, overlapping, wilson_interval
from rtcore.tables import SHARES, summarise


def test_wilson_interval_exact_answers() -> None:
    # 5 of 10: centre 0.5, half = z/(1+z^2/10) * sqrt(0.025 + z^2/400)
    z2 = Z95 ** 2
    half = Z95 / (1 + z2 / 10) * math.sqrt(0.025 + z2 / 400)
    assert wilson_interval(5, 10) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-15)
    assert wilson_interval(5, 10) == pytest.approx((0.236593090512564, 0.763406909487436), abs=1e-12)
    # k = 0 and k = n: one end is exact, the other z^2 / (n + z^2) away
    assert wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2), abs=1e-15))
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2), abs=1e-15), 1.0)
    assert wilson_interval(0, 200)[1] == pytest.approx(z2 / (200 + z2), abs=1e-15)


def test_wilson_interval_is_symmetric_and_vectorised() -> None:
    k, n = np.array([0, 3, 17, 20]), np.array([20, 20, 20, 20])
    lo, hi = wilson_interval(k, n)
    lo_rev, hi_rev = wilson_interval(n - k, n)
    assert np.allclose(lo, 1 - hi_rev) and np.allclose(hi, 1 - lo_rev)
    assert np.all(lo <= k / n) and np.all(k / n <= hi)
    assert [wilson_interval(int(a), 20) for a in k] == list(zip(lo.tolist(), hi.tolist()))


@pytest.mark.parametrize(("k", "n", "z"), [(1, 0, Z95), (-1, 10, Z95), (11, 10, Z95), (5, 10, 0.0),
                                           (float("nan"), 10, Z95)])
def test_wilson_interval_refuses_bad_counts(k: float, n: float, z: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        wilson_interval(k, n, z)


def test_intervals_overlap() -> None:
    assert intervals_overlap((0.1, 0.3), (0.3, 0.5)) and intervals_overlap((0.2, 0.4), (0.1, 0.25))
    assert not intervals_overlap((0.1, 0.29), (0.3, 0.5)) and not intervals_overlap((0.6, 0.7), (0.1, 0.5))


def test_overlapping_within_groups() -> None:
    lo, hi = [0.1, 0.25, 0.5, 0.1, 0.3], [0.3, 0.4, 0.6, 0.2, 0.4]
    assert overlapping(lo, hi, ["a", "a", "a", "b", "b"]) == [[1], [0], [], [], []]
    assert overlapping(lo, hi, ["a"] * 5) == [[1, 3, 4], [0, 4], [], [0], [0, 1]]
    with pytest.raises(ValueError, match="one entry per interval"):
        overlapping([0.1], [0.2, 0.3], ["a"])


def test_summary_has_an_interval_per_share() -> None:
    """Two groups of 4 and 5 points with known counts: every share's interval is the Wilson interval of
    that count, and the shares' own numbers are unchanged."""
    rows = []
    for eps, flags in ((0.0, [1, 1, 1, 0]), (0.1, [1, 0, 0, 0, 1])):
        for i, f in enumerate(flags):
            rows.append({"backbone": "b", "task": "t", "transfer": "lp", "probe": "logistic", "norm": "linf",
                         "eps": eps, "correct": True, "robust": bool(f), "criterion_met": False,
                         "criterion_met_head": bool(f), "criterion_met_feature_only": bool(f), "rho": float(i),
                         "delta": 1.5, "delta_head": 0.5, "delta_feature": 1.0, "feature_norm": 2.0,
                         "clean_loss": 0.1, "adv_loss": 0.2, "loss_bound_lse": 0.3, "loss_bound": 0.4,
                         "probe_C": 1.0, "probe_radius": 0.0})
    out = summarise(pd.DataFrame(rows))
    assert list(out["n"]) == [4, 5]
    assert list(out.columns[-2 * len(SHARES):]) == [f"{s}_{e}" for s in SHARES for e in ("lo", "hi")]
    assert out.columns.get_loc("bound_kind") == len(out.columns) - 2 * len(SHARES) - 1, "appended after the rest"
    expected = {"clean_acc": [4, 5], "robust_acc": [3, 2], "bound": [0, 0], "bound_head": [3, 2],
                "bound_feature_only": [3, 2], "bound_mean_delta": [2, 3]}  # rho > 1.5: i = 2, 3 (and 4)
    for share, ks in expected.items():
        for row, k in zip(out.itertuples(), ks):
            n = row.n
            assert getattr(row, share) == pytest.approx(k / n)
            assert (getattr(row, f"{share}_lo"), getattr(row, f"{share}_hi")) == wilson_interval(k, n)


def test_spearman_exact_answers() -> None:
    """Rank correlation: 1 for any increasing relation, -1 for a decreasing one, ties share their mean rank, and a
    constant sequence (no order) is NaN."""
    from rtcore.stats import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 300, 4000]) == 1.0 and spearman([1, 2, 3], [3, 2, 1]) == -1.0
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1])
    assert math.isnan(spearman([0, 0, 0], [1, 2, 3]))
    with pytest.raises(ValueError, match="equally long"):
        spearman([1, 2], [1])
