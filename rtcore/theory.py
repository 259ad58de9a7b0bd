"""An exact picture of the theory: a linear representation ``g(x) = A x`` in two dimensions.

For a linear ``g`` the representation vulnerability has a closed form (clipping to [0, 1] ignored):

* l2:   ``Delta = sup_{||u||_2 <= eps} ||A u||_2 = eps * sigma_max(A)``;
* linf: ``Delta = sup_{||u||_inf <= eps} ||A u||_2 = eps * max_s ||A s||_2`` over sign vectors s
  (a convex function is maximised at a vertex of the box).

With a two-class head ``w . z + b`` (unit normal ``w``), the margin is ``rho = w . g(x) + b`` and the
exact end-to-end answer is: robust iff ``w . A x + b > eps * ||A^T w||_q`` (q = 1 for linf, 2 for
l2, the dual norm). The criterion ``rho > Delta`` implies it (Cauchy-Schwarz), so here, and only
here, a point meeting the criterion is *certified*. :func:`linear_toy` returns every quantity
and the outlines a figure draws (the eps-ball, its image, the Delta-circle, the boundaries).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from .config import check_norm

#: points on a drawn circle
CIRCLE_POINTS = 120


@dataclass(frozen=True)
class LinearToy:
    """``g(x) = A x`` with the head ``w . z + b`` at the point ``x`` and budget ``eps`` (see the module docstring).

    ``delta``: exact sup ``||A x' - A x||``; ``delta_direction``: ``A u`` for a maximiser u;
    ``rho``: signed distance of g(x) to the boundary; ``required``: ``eps * ||A^T w||_q``;
    ``certified``: ``rho > delta``; ``robust``: ``rho > required`` (the exact answer).
    Outlines (arrays of 2-D points): ``ball`` (the eps-ball around x), ``image`` (its image under
    A), ``circle`` (radius Delta around g(x)), ``foot`` (the point of the boundary nearest g(x)),
    ``boundary_input`` / ``boundary_feature`` (the head's boundary pulled back to input space and
    in feature space, clipped to the view boxes ``view_input`` / ``view_feature``: (lo, hi) corners;
    None where ``A^T w = 0``).
    """

    A: np.ndarray
    x: np.ndarray
    eps: float
    norm: str
    w: np.ndarray
    b: float
    gx: np.ndarray
    delta: float
    delta_direction: np.ndarray
    rho: float
    required: float
    certified: bool
    robust: bool
    ball: np.ndarray = field(repr=False)
    image: np.ndarray = field(repr=False)
    circle: np.ndarray = field(repr=False)
    foot: np.ndarray = field(repr=False)
    view_input: tuple[np.ndarray, np.ndarray] = field(repr=False)
    view_feature: tuple[np.ndarray, np.ndarray] = field(repr=False)
    boundary_input: np.ndarray | None = field(repr=False)
    boundary_feature: np.ndarray | None = field(repr=False)

    @property
    def correct(self) -> bool:
        """g(x) is on the class's side of the boundary (rho > 0)."""
        return self.rho > 0


def exact_delta(A: np.ndarray, eps: float, norm: str) -> tuple[float, np.ndarray]:
    """Exact ``Delta = sup_{||u||_p <= eps} ||A u||_2`` and a maximiser u (linear g, no clipping)."""
    A = np.asarray(A, dtype=float)
    norm = check_norm(norm)
    if norm == "l2":
        _, s, vt = np.linalg.svd(A)
        return float(eps * s[0]), eps * vt[0]
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=A.shape[1])))
    vals = np.linalg.norm(signs @ A.T, axis=1)
    k = int(np.argmax(vals))
    return float(eps * vals[k]), eps * signs[k]


def ball_outline(eps: float, norm: str, points: int = CIRCLE_POINTS) -> np.ndarray:
    """Closed outline (P, 2) of the 2-D eps-ball around the origin: a square (linf) or a disc (l2)."""
    if check_norm(norm) == "linf":
        return eps * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=float)
    t = np.linspace(0, 2 * np.pi, points)
    return eps * np.stack([np.cos(t), np.sin(t)], axis=1)


def view_box(points: np.ndarray, pad: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """A square view box ``(lo, hi)`` around ``points`` with ``pad`` of its side as margin on each side."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = float(max((hi - lo).max(), 1e-3))
    mid = (lo + hi) / 2
    half = span * (0.5 + pad)
    return mid - half, mid + half


def line_segment(w: np.ndarray, b: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """Two points of the line ``{z: w . z + b = 0}`` that reach beyond the box ``[lo, hi]`` (None if w = 0)."""
    if float(np.linalg.norm(w)) < 1e-12:
        return None
    p0 = -b * w / float(w @ w)
    d = np.array([-w[1], w[0]]) / float(np.linalg.norm(w))
    reach = float(np.linalg.norm(hi - lo)) + float(np.linalg.norm(p0 - (lo + hi) / 2))
    return np.stack([p0 - reach * d, p0 + reach * d])


def linear_toy(a11: float, a12: float, a21: float, a22: float, x1: float, x2: float, eps: float, norm: str,
               angle_deg: float, offset: float) -> LinearToy:
    """Everything about ``A = [[a11, a12], [a21, a22]]``, the point ``x`` and the head
    ``w = (cos theta, sin theta)``, ``b = offset`` (x's class is the side ``w . z + b > 0``)."""
    norm = check_norm(norm)
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps={eps!r} must be a finite number >= 0")
    A = np.array([[a11, a12], [a21, a22]], dtype=float)
    x = np.array([x1, x2], dtype=float)
    th = math.radians(angle_deg)
    w = np.array([math.cos(th), math.sin(th)])
    gx = A @ x
    delta, u = exact_delta(A, eps, norm)
    rho = float((w @ gx + offset) / np.linalg.norm(w))
    q = 1 if norm == "linf" else 2
    required = float(eps * np.linalg.norm(A.T @ w, ord=q))
    ball = x + ball_outline(eps, norm)
    image = ball @ A.T
    t = np.linspace(0, 2 * np.pi, CIRCLE_POINTS)
    circle = gx + delta * np.stack([np.cos(t), np.sin(t)], axis=1)
    foot = gx - rho * w / np.linalg.norm(w)
    view_in = view_box(np.vstack([ball, x[None]]))
    view_f = view_box(np.vstack([circle, image, foot[None], gx[None]]))
    return LinearToy(A, x, float(eps), norm, w, float(offset), gx, delta, A @ u, rho, required,
                     bool(rho > delta), bool(w @ gx + offset > required), ball, image, circle, foot, view_in, view_f,
                     line_segment(A.T @ w, float(offset), *view_in), line_segment(w, float(offset), *view_f))


__all__ = ["LinearToy", "ball_outline", "exact_delta", "line_segment", "linear_toy", "view_box"]
