"""The exact 2-D linear picture of the theory (rtcore.theory): Delta against brute force, the criterion
against the exact end-to-end answer, and the outlines a figure draws."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rtcore import theory


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_exact_delta_matches_brute_force(norm: str) -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        A = rng.normal(size=(2, 2))
        eps = 0.3
        delta, u = theory.exact_delta(A, eps, norm)
        # independent check: the ball's corners (linf: the maximisers) or a dense sampling of its boundary
        if norm == "linf":
            pts = eps * np.array(list(itertools.product([-1, 1], repeat=2)), dtype=float)
        else:
            t = np.linspace(0, 2 * np.pi, 20001)
            pts = eps * np.stack([np.cos(t), np.sin(t)], 1)
        brute = np.linalg.norm(pts @ A.T, axis=1).max()
        assert delta == pytest.approx(brute, rel=1e-6)
        assert np.linalg.norm(A @ u) == pytest.approx(delta, rel=1e-9)
        assert np.abs(u).max() <= eps + 1e-12 if norm == "linf" else np.linalg.norm(u) <= eps + 1e-12


def test_isotropic_delta_is_eps() -> None:
    assert theory.exact_delta(np.eye(2), 0.2, "l2")[0] == pytest.approx(0.2)
    assert theory.exact_delta(np.eye(2), 0.2, "linf")[0] == pytest.approx(0.2 * np.sqrt(2))


def test_criterion_is_sound_and_the_exact_answer_is_exact() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        a = rng.normal(size=4)
        tm = theory.linear_toy(*a, *rng.uniform(0, 1, 2), float(rng.uniform(0, 0.5)), str(rng.choice(["linf", "l2"])),
                               float(rng.uniform(-180, 180)), float(rng.normal()))
        if tm.certified:
            assert tm.robust, "rho > Delta implies exact robustness"
        # the exact answer agrees with the worst point of the ball: its corners (linf) or a dense circle (l2)
        if tm.norm == "linf":
            pts = tm.x + tm.eps * np.array(list(itertools.product([-1, 1], repeat=2)), dtype=float)
        else:
            t = np.linspace(0, 2 * np.pi, 100001)
            pts = tm.x + tm.eps * np.stack([np.cos(t), np.sin(t)], 1)
        worst = float((pts @ tm.A.T @ tm.w + tm.b).min())
        if abs(worst) > 1e-6:
            assert tm.robust == (worst > 0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_outlines(norm: str) -> None:
    tm = theory.linear_toy(1.5, 0.5, 0.3, 0.8, 0.6, 0.4, 0.2, norm, -30, -0.4)
    assert np.allclose(tm.image, tm.ball @ tm.A.T), "the image of the ball under A"
    assert np.allclose(np.linalg.norm(tm.circle - tm.gx, axis=1), tm.delta), "the circle of radius Delta"
    assert float(tm.w @ tm.foot + tm.b) == pytest.approx(0.0, abs=1e-12), "the foot lies on the boundary"
    for seg, (lo, hi), normal in ((tm.boundary_feature, tm.view_feature, tm.w),
                                  (tm.boundary_input, tm.view_input, tm.A.T @ tm.w)):
        assert seg is not None and np.allclose(seg @ normal + tm.b, 0.0)
        assert np.linalg.norm(seg[1] - seg[0]) >= np.linalg.norm(hi - lo), "long enough to cross the view"
    if norm == "linf":
        assert len(tm.image) == 5, "a parallelogram: the image of the square"


def test_degenerate_head_has_no_pulled_back_boundary() -> None:
    tm = theory.linear_toy(0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.1, "l2", 0, 0.3)
    assert tm.delta == 0 and tm.boundary_input is None and tm.certified and tm.robust


def test_bad_input_names_the_value() -> None:
    with pytest.raises(ValueError, match="norm='l1'"):
        theory.linear_toy(1, 0, 0, 1, 0.5, 0.5, 0.1, "l1", 0, 0)
    with pytest.raises(ValueError, match="eps=-0.1"):
        theory.linear_toy(1, 0, 0, 1, 0.5, 0.5, -0.1, "l2", 0, 0)
