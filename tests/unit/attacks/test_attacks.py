"""The PGD engine against docs/THEORY.md's exact answers, and its invariants."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rtcore
from rtcore.attacks import AttackSettings

EPS = [0.0, 0.05, 0.1, 0.2]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_feature_attack_reaches_exact_supremum(linear_case, norm: str) -> None:
    res = rtcore.feature_attack(linear_case.backbone, linear_case.x, EPS, norm=norm, settings="standard")
    assert res.delta.shape == (len(EPS), linear_case.x.shape[0])
    for i, eps in enumerate(EPS):
        exact = linear_case.exact_delta(eps, norm)
        if eps == 0:
            assert torch.equal(res.delta[i], torch.zeros_like(res.delta[i]))
            continue
        ratio = res.delta[i].double() / exact
        assert float(ratio.max()) <= 1 + 1e-5, "an attack can never exceed the supremum"
        assert float(ratio.mean()) >= 0.99, f"{norm} eps={eps}: mean ratio {float(ratio.mean()):.4f}"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_end_to_end_attack_reaches_exact_robust_accuracy(linear_case, norm: str) -> None:
    res = rtcore.attack(linear_case.model, linear_case.x, linear_case.y, EPS, norm=norm, settings="standard")
    for i, eps in enumerate(EPS):
        exact = linear_case.exact_robust(eps, norm)
        assert torch.equal(res.robust[i], exact), f"{norm} eps={eps}: {int((res.robust[i] != exact).sum())} mismatches"


def test_eps_zero_gives_clean(linear_case) -> None:
    res = rtcore.attack(linear_case.model, linear_case.x, linear_case.y, 0.0)
    clean = linear_case.model(linear_case.x).argmax(1) == linear_case.y
    assert torch.equal(res.robust, clean)
    assert torch.equal(res.x_adv, linear_case.x)
    f = rtcore.feature_attack(linear_case.backbone, linear_case.x, 0.0)
    assert torch.equal(f.delta, torch.zeros(linear_case.x.shape[0]))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_results_monotone_in_eps_and_inside_the_ball(norm: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 6)).eval()
    x = torch.rand(24, 1, 6, 6)
    x[:4] = 0.0  # pixels on the box edge: clipping binds
    eps = [0.2, 0.0, 0.02, 0.1, 0.05]  # unsorted on purpose
    bb = rtcore.as_backbone(net)
    f = rtcore.feature_attack(bb, x, eps, norm=norm, settings="fast")
    y = torch.randint(0, 6, (24,))
    a = rtcore.attack(nn.Sequential(bb, nn.Linear(6, 3)).eval(), x, y % 3, eps, norm=norm, settings="fast")
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    for lo, hi in zip(order, order[1:]):
        assert bool((f.delta[hi] >= f.delta[lo]).all()), "Delta must be non-decreasing in eps"
        assert bool((a.robust[hi] <= a.robust[lo]).all()), "robustness must be non-increasing in eps"
    for i, e in enumerate(eps):
        for xa in (f.x_adv[i], a.x_adv[i]):
            d = (xa - x).flatten(1)
            dist = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
            assert float(dist.max()) <= e * (1 + 1e-5) + 1e-6
            assert float(xa.min()) >= 0 and float(xa.max()) <= 1
        # reported Delta is recomputed from the returned images
        assert torch.allclose(f.delta[i], (bb(f.x_adv[i]) - bb(x)).norm(dim=1), atol=1e-5)


def test_broken_points_are_misclassified_at_their_witness(linear_case) -> None:
    res = rtcore.attack(linear_case.model, linear_case.x, linear_case.y, 0.2)
    pred = linear_case.model(res.x_adv).argmax(1)
    assert torch.equal(res.robust, pred == linear_case.y)
    assert not bool((res.robust & ~res.clean_correct).any()), "robust implies clean-correct"


def test_deterministic_and_independent_of_batch_size() -> None:
    case_x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 5)).eval()
    bb = rtcore.as_backbone(net)
    r1 = rtcore.feature_attack(bb, case_x, [0.05, 0.1], settings=AttackSettings(steps=5, batch_size=512))
    r2 = rtcore.feature_attack(bb, case_x, [0.05, 0.1], settings=AttackSettings(steps=5, batch_size=3))
    r3 = rtcore.feature_attack(bb, case_x, 0.1, settings=AttackSettings(steps=5, batch_size=7))
    assert torch.allclose(r1.delta, r2.delta, atol=1e-6)
    assert torch.allclose(r1.delta[1], r3.delta, atol=1e-6), "an eps gives the same result alone or in a sweep"


def test_targeted_runs_make_the_attack_stronger() -> None:
    """On the linear model the untargeted margin run alone can miss the best class; targets fix it."""
    from tests.conftest import LinearCase

    case = LinearCase(5, d=8, m=4, n=128, k=6)
    weak = rtcore.attack(case.model, case.x, case.y, 0.15, settings=AttackSettings(steps=10, losses=("ce",), targets=0))
    strong = rtcore.attack(case.model, case.x, case.y, 0.15, settings="strong")
    exact = case.exact_robust(0.15, "linf")
    assert torch.equal(strong.robust, exact)
    assert int(weak.robust.sum()) >= int(strong.robust.sum())


@pytest.mark.parametrize("eps", [-0.1, math.nan, math.inf, 1.5, [], [0.1, 2.0]])
def test_bad_eps_is_refused(linear_case, eps) -> None:
    with pytest.raises(ValueError, match="eps"):
        rtcore.feature_attack(linear_case.backbone, linear_case.x, eps)
    with pytest.raises(ValueError, match="eps"):
        rtcore.attack(linear_case.model, linear_case.x, linear_case.y, eps)


def test_bad_inputs_are_refused(linear_case) -> None:
    x, y, model = linear_case.x, linear_case.y, linear_case.model
    with pytest.raises(ValueError, match="norm"):
        rtcore.attack(model, x, y, 0.1, norm="l1")
    with pytest.raises(ValueError, match="empty"):
        rtcore.attack(model, x[:0], y[:0], 0.1)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        rtcore.attack(model, x * 300, y, 0.1)
    with pytest.raises(ValueError, match="labels|entries"):
        rtcore.attack(model, x, y[:-1], 0.1)
    with pytest.raises(ValueError, match="steps"):
        rtcore.attack(model, x, y, 0.1, steps=0)
    train_mode = nn.Sequential(nn.Flatten(), nn.Linear(8, 3), nn.Dropout(0.5))
    with pytest.raises(ValueError, match="training mode"):
        rtcore.attack(train_mode, x, y % 3, 0.1)
    with pytest.raises(ValueError, match="strength"):
        rtcore.attack(model, x, y, 0.1, settings="brutal")


def test_nan_features_are_refused() -> None:
    class NaNNet(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) * float("nan")

    with pytest.raises(ValueError, match="NaN"):
        rtcore.feature_attack(rtcore.as_backbone(NaNNet()), torch.rand(3, 1, 2, 2), 0.1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_head_subspace_feature_attack_reaches_the_exact_projected_supremum(linear_case, norm: str) -> None:
    """Linear g = A x: Delta_P = eps sigma_max(P A) (l2), eps max_s ||P A s|| (linf); never above it."""
    from rtcore.bounds import head_projector

    P = head_projector(linear_case.W)
    eps = 0.1
    res = rtcore.feature_attack(linear_case.backbone, linear_case.x, eps, norm=norm, settings="standard",
                                projector=P.float())
    exact = linear_case.exact_delta(eps, norm, projector=P)
    assert float(res.delta.max()) <= exact * (1 + 1e-5)
    assert float(res.delta.mean()) >= 0.97 * exact
    shift = (res.features_adv.double() - res.clean_features.double()) @ P
    assert torch.allclose(shift.norm(dim=1), res.delta.double(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="orthogonal projection"):
        rtcore.feature_attack(linear_case.backbone, linear_case.x, eps, projector=2 * P.float())


def test_loss_attack_finds_the_exact_worst_cross_entropy_on_a_linear_model(linear_case) -> None:
    """CE(W A (x + u) + b, y) is convex in u, so over the linf box its maximum is at a vertex (d = 8: 256)."""
    import itertools

    from rtcore.attacks import loss_attack

    eps = 0.05
    res = loss_attack(linear_case.model, linear_case.x, linear_case.y, eps, norm="linf", settings="standard")
    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=8)), dtype=torch.float64)
    A, W, b = linear_case.A.double(), linear_case.W.double(), linear_case.b.double()
    x = linear_case.x.flatten(1).double()
    z = (x[:, None, :] + eps * signs[None]) @ A.T @ W.T + b  # (N, 256, K)
    ce = torch.logsumexp(z, -1) - z.gather(2, linear_case.y[:, None, None].expand(-1, 256, 1)).squeeze(2)
    exact = ce.amax(1)
    assert bool((res.loss.double() <= exact + 1e-4).all())
    ratio = res.loss.double() / exact  # a lower estimate: close to the maximum, never above it
    assert float(res.loss.double().sum() / exact.sum()) >= 0.995 and float(ratio.min()) >= 0.95
    assert bool((res.loss.double() >= torch.nn.functional.cross_entropy(
        linear_case.model(linear_case.x), linear_case.y, reduction="none").double() - 1e-6).all())
