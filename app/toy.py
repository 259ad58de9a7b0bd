"""The theory page's exact model: a 2-D linear representation with a two-class linear head."""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the linear toy (theory page)

@dataclass(frozen=True)
class LinearToy:
    """A 2-D linear representation ``g(x) = A x`` with a two-class linear head ``w·z + b``.

    ``delta``: exact ``sup ||A x' - A x||`` over the eps-ball (l2: eps·σ_max(A); linf:
    eps·max over sign vectors s of ||A s||); ``rho``: signed distance of g(x) to the head's
    boundary; ``certified``: rho > delta (the criterion); ``robust``: the exact end-to-end answer
    w·A x + b > eps·||Aᵀw||_q (q = 1 for linf, 2 for l2). Clipping to [0,1] is ignored.
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

    @property
    def correct(self) -> bool:
        return self.rho > 0


def exact_delta(A: np.ndarray, eps: float, norm: str) -> tuple[float, np.ndarray]:
    """Exact Δ = sup_{||u||_p <= eps} ||A u||_2 and a maximiser u (linear g, no clipping)."""
    A = np.asarray(A, dtype=float)
    if norm == "l2":
        _, s, vt = np.linalg.svd(A)
        return float(eps * s[0]), eps * vt[0]
    if norm == "linf":
        signs = np.array(list(itertools.product([-1.0, 1.0], repeat=A.shape[1])))
        vals = np.linalg.norm(signs @ A.T, axis=1)
        k = int(np.argmax(vals))
        return float(eps * vals[k]), eps * signs[k]
    raise ValueError(f"norm={norm!r} must be 'linf' or 'l2'")


def ball_outline(eps: float, norm: str, points: int = 120) -> np.ndarray:
    """Closed outline (P, 2) of the 2-D eps-ball around the origin: a square (linf) or a disc (l2)."""
    if norm == "linf":
        return eps * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=float)
    t = np.linspace(0, 2 * np.pi, points)
    return eps * np.stack([np.cos(t), np.sin(t)], axis=1)


def linear_toy(a11: float, a12: float, a21: float, a22: float, x1: float, x2: float, eps: float, norm: str,
               angle_deg: float, offset: float) -> LinearToy:
    """Everything the theory page draws for ``A = [[a11, a12], [a21, a22]]``, point ``x``, and the
    head ``w = (cos θ, sin θ)``, ``b = offset`` (class y is the side ``w·z + b > 0``)."""
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
    return LinearToy(A, x, float(eps), norm, w, float(offset), gx, delta, A @ u, rho, required,
                     bool(rho > delta), bool(w @ gx + offset > required), ball, image)
