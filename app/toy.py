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


# ---------------------------------------------------------------- the theory page's examples

@dataclass(frozen=True)
class ToyExample:
    """Slider values that demonstrate what ``label`` says; ``certified``/``robust``: the verdicts it must show
    (checked by tests/app/test_app.py::test_toy_examples_show_what_their_labels_say)."""

    label: str
    values: dict[str, float | str]
    certified: bool
    robust: bool
    lesson: str


def _values(a: tuple[float, float, float, float], x: tuple[float, float], eps: float, norm: str, angle: float,
            offset: float) -> dict[str, float | str]:
    return {"toy_a11": a[0], "toy_a12": a[1], "toy_a21": a[2], "toy_a22": a[3], "toy_x1": x[0], "toy_x2": x[1],
            "toy_eps": eps, "toy_norm": norm, "toy_angle": angle, "toy_offset": offset}


TOY_EXAMPLES: tuple[ToyExample, ...] = (
    ToyExample("loose: safe, not certified", _values((1.5, 0.5, 0.3, 0.8), (0.6, 0.4), 0.2, "linf", -30, -0.4),
               certified=False, robust=True,
               lesson="the criterion is loose: ρ ≤ Δ, yet no point of the ball crosses, because Δ's direction is not "
                      "the boundary's normal."),
    ToyExample("worst direction: broken", _values((1.5, 0.5, 0.3, 0.8), (0.6, 0.4), 0.2, "linf", 30, -0.9),
               certified=False, robust=False,
               lesson="the worst direction hits the boundary: the largest shift points across it, so an attacker "
                      "flips the prediction."),
    ToyExample("isotropic A = I (l2): exact", _values((1.0, 0.0, 0.0, 1.0), (0.5, 0.5), 0.2, "l2", 45, -0.5),
               certified=True, robust=True,
               lesson="an isotropic representation: Δ = ε in every direction, so ρ > Δ is exactly the end-to-end "
                      "condition (criterion and exact answer agree)."),
    ToyExample("contracting g: certified",
               _values((0.4, 0.1, -0.1, 0.3), (0.6, 0.4), 0.2, "linf", 30, -0.05), certified=True, robust=True,
               lesson="a contracting (robust) representation: the same ε-ball maps to a small image (Δ ≈ 0.11 "
                      "instead of 0.46 above), so the margin clears it."),
)


def example_toy(example: ToyExample) -> LinearToy:
    """The toy model an example's slider values describe."""
    v = example.values
    return linear_toy(float(v["toy_a11"]), float(v["toy_a12"]), float(v["toy_a21"]), float(v["toy_a22"]),
                      float(v["toy_x1"]), float(v["toy_x2"]), float(v["toy_eps"]), str(v["toy_norm"]),
                      float(v["toy_angle"]), float(v["toy_offset"]))


def verdict(toy: LinearToy) -> str:
    """One sentence that explains the current picture ("certified" only here: Δ is exact)."""
    dual = "ε‖Aᵀw‖₁" if toy.norm == "linf" else "ε‖Aᵀw‖₂"
    if not toy.correct:
        return "g(x) lies on the wrong side of the boundary (ρ ≤ 0): the point is misclassified even without attack."
    if toy.certified:
        return (f"ρ = {toy.rho:.3f} > Δ = {toy.delta:.3f}: the dashed circle stays on the correct side, so no point of "
                "the ε-ball can be misclassified. Δ is exact here, so x is **certified** (and the exact answer agrees).")
    if toy.robust:
        return (f"ρ = {toy.rho:.3f} ≤ Δ = {toy.delta:.3f}, yet the exact answer is *robust*: the image of the ball "
                f"(shaded) does not reach the boundary because its farthest direction is not the boundary's normal "
                f"(needed: ρ > {dual} = {toy.required:.3f}). The criterion is conservative here: a bound, not an "
                "equivalence.")
    return (f"ρ = {toy.rho:.3f} ≤ {dual} = {toy.required:.3f}: part of the shaded image crosses the boundary, "
            "so an attacker can flip the prediction; the criterion rightly does not certify x.")
