"""Confidence intervals for the shares the tables report (accuracies and bounds are shares of n test points).

:func:`wilson_interval` is the Wilson score interval of a binomial proportion (Wilson 1927): for k
successes out of n and ``z`` the two-sided normal quantile (1.96 for 95 %),

    centre = (p + z^2 / 2n) / (1 + z^2 / n),   half = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

with p = k / n. Unlike the normal ("Wald") interval it stays inside [0, 1] and does not collapse
to a point at k = 0 or k = n (at k = 0 its upper end is z^2 / (n + z^2)), which is where the
bound often lives. It treats the n test points as a random sample of the task's test
distribution: it says how much the share could move with another draw of n points, not how
far an attack estimate is from the true robust accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

import numpy as np
import pandas as pd

#: the two-sided 95 % quantile of the standard normal distribution
Z95 = 1.959963984540054


def _check(k: np.ndarray, n: np.ndarray, z: float) -> None:
    if not (isinstance(z, (int, float)) and math.isfinite(z) and z > 0):
        raise ValueError(f"z={z!r} must be a positive number (1.96 for a 95 % interval)")
    if np.any(n <= 0) or np.any(~np.isfinite(n)):
        raise ValueError(f"n={n.tolist()!r} must be positive counts of test points")
    if np.any(k < 0) or np.any(k > n) or np.any(~np.isfinite(k)):
        raise ValueError(f"k={k.tolist()!r} must be counts between 0 and n={n.tolist()!r}")


@overload
def wilson_interval(k: float, n: float, z: float = Z95) -> tuple[float, float]: ...
@overload
def wilson_interval(k: np.ndarray, n: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray]: ...


def wilson_interval(k, n, z: float = Z95):  # type: ignore[no-untyped-def]
    """The Wilson score interval ``(lo, hi)`` of ``k`` successes in ``n`` trials (scalars or arrays).

    ``z`` = 1.96 gives 95 % (the default). Raises ``ValueError`` for n <= 0 or k outside [0, n].
    """
    scalar = np.ndim(k) == 0 and np.ndim(n) == 0
    k_arr = np.asarray(k, dtype=np.float64)
    n_arr = np.asarray(n, dtype=np.float64)
    _check(k_arr, n_arr, z)
    p = k_arr / n_arr
    z2 = z * z
    denom = 1.0 + z2 / n_arr
    centre = (p + z2 / (2 * n_arr)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n_arr + z2 / (4 * n_arr * n_arr))
    lo = np.where(k_arr == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    hi = np.where(k_arr == n_arr, 1.0, np.clip(centre + half, 0.0, 1.0))
    if scalar:
        return float(lo), float(hi)
    return lo, hi


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two closed intervals ``(lo, hi)`` share a point (two shares whose 95 % intervals overlap
    are not told apart by this sample)."""
    return bool(a[0] <= b[1] and b[0] <= a[1])


def overlapping(lo: Sequence[float], hi: Sequence[float], groups: Sequence[object]) -> list[list[int]]:
    """For each interval ``(lo[i], hi[i])``: the indices of the other intervals of the same group that overlap
    it (shares the sample cannot order, e.g. two backbones' robust accuracies on one task)."""
    if not len(lo) == len(hi) == len(groups):
        raise ValueError(f"lo, hi and groups must have one entry per interval, got {len(lo)}, {len(hi)}, {len(groups)}")
    return [[j for j in range(len(lo)) if j != i and groups[j] == groups[i]
             and intervals_overlap((lo[i], hi[i]), (lo[j], hi[j]))] for i in range(len(lo))]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two equally long sequences: Pearson's correlation of their ranks (ties
    share their mean rank); NaN when either is constant (no order to compare)."""
    if len(a) != len(b):
        raise ValueError(f"a and b must be equally long, got {len(a)} and {len(b)}")
    ra, rb = (pd.Series(np.asarray(x, dtype=np.float64)).rank() for x in (a, b))
    return float(ra.corr(rb))


__all__ = ["Z95", "intervals_overlap", "overlapping", "spearman", "wilson_interval"]
