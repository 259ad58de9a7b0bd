"""The criterion and the loss bound against independent computations (docs/THEORY.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rtcore
from rtcore.bounds import cross_entropy, pairwise_weight_distances


def _random_head(seed: int, n: int = 200, m: int = 6, k: int = 5):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, m, generator=g)
    W = torch.randn(k, m, generator=g)
    b = torch.randn(k, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return f, y, W, b


def _rho_numpy(f, y, W, b) -> np.ndarray:
    f, y, W, b = (t.double().numpy() for t in (f, y, W, b))
    y = y.astype(int)
    out = np.empty(len(f))
    for i in range(len(f)):
        vals = []
        for k in range(W.shape[0]):
            if k == y[i]:
                continue
            d = W[y[i]] - W[k]
            vals.append((d @ f[i] + b[y[i]] - b[k]) / np.linalg.norm(d))
        out[i] = min(vals)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_margins_match_an_independent_computation(seed: int) -> None:
    f, y, W, b = _random_head(seed)
    assert np.allclose(rtcore.margins(f, y, W, b).numpy(), _rho_numpy(f, y, W, b), atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_misclassified_points_have_nonpositive_margin(seed: int) -> None:
    f, y, W, b = _random_head(seed)
    rho = rtcore.margins(f, y, W, b)
    pred = (f @ W.T + b).argmax(1)
    assert bool((rho[pred != y] <= 0).all()) and bool((rho[pred == y] > 0).all())


@pytest.mark.parametrize("seed", range(3))
def test_criterion_is_sound_and_tight(seed: int) -> None:
    """rho > Delta guarantees the prediction for every feature shift of norm <= Delta, and a shift
    of norm slightly above rho along the nearest boundary's normal flips it."""
    f, y, W, b = _random_head(seed)
    f, W, b = f.double(), W.double(), b.double()
    rho = rtcore.margins(f, y, W, b)
    g = torch.Generator().manual_seed(seed + 10)
    delta = rho.clamp_min(0) * 0.999
    for _ in range(50):  # random shifts on the sphere of radius Delta
        u = torch.randn(f.shape, generator=g, dtype=torch.float64)
        u = u / u.norm(dim=1, keepdim=True) * delta[:, None]
        ok = rtcore.bound_criterion(f, y, W, b, delta)
        assert bool((((f + u) @ W.T + b).argmax(1) == y)[ok].all())
    # worst case: move towards the nearest pairwise boundary
    z = f @ W.T + b
    gap = z.gather(1, y[:, None]) - z
    dist = pairwise_weight_distances(W)[y]
    rk = (gap / dist.clamp_min(1e-300)).scatter(1, y[:, None], torch.inf)
    kstar = rk.argmin(1)
    normal = (W[y] - W[kstar]) / dist.gather(1, kstar[:, None])
    correct = rho > 0
    f_over = f - normal * (rho * 1.001)[:, None]
    assert bool((((f_over @ W.T + b).argmax(1)) != y)[correct].all())


def test_equal_weight_rows() -> None:
    W = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    f = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    rho = rtcore.margins(f, torch.tensor([0, 0]), W, torch.tensor([0.5, 0.0, 0.0]))
    assert rho[0] == pytest.approx((2 + 0.5) / 2**0.5)  # the pair (0, 1) never flips: only class 2 counts
    tie = rtcore.margins(f[:1], torch.tensor([0]), W, torch.zeros(3))
    assert float(tie[0]) <= 0  # exact tie with class 1 counts as misclassified


def test_robust_accuracy_bound_and_shapes() -> None:
    f, y, W, b = _random_head(0, n=50)
    rho = rtcore.margins(f, y, W, b)
    delta = torch.stack([torch.zeros(50), torch.full((50,), 0.5), torch.full((50,), 100.0)])
    ra = rtcore.robust_accuracy_bound(f, y, W, b, delta)
    assert ra.shape == (3,)
    assert float(ra[0]) == pytest.approx(float((rho > 0).double().mean()))
    assert float(ra[2]) == 0.0
    assert float(ra[0]) >= float(ra[1]) >= float(ra[2])


@pytest.mark.parametrize("seed", range(3))
def test_loss_bound_chain(seed: int) -> None:
    """l(z') - l(z) <= ||W^T(p'-e_y)|| ||u|| <= max_k ||w_k - w_y|| ||u|| <= D_W ||u||."""
    f, y, W, b = _random_head(seed)
    f, W, b = f.double(), W.double(), b.double()
    g = torch.Generator().manual_seed(seed)
    for scale in (0.01, 0.3, 3.0):
        u = torch.randn(f.shape, generator=g, dtype=torch.float64) * scale
        dn = u.norm(dim=1)
        z, z_adv = f @ W.T + b, (f + u) @ W.T + b
        gap = cross_entropy(z_adv, y) - cross_entropy(z, y)
        t1 = rtcore.loss_gap_factor(W, z_adv, y) * dn
        t2 = rtcore.class_weight_spread(W)[y] * dn
        t3 = rtcore.weight_diameter(W) * dn
        assert bool((gap <= t1 + 1e-9).all()) and bool((t1 <= t2 + 1e-9).all()) and bool((t2 <= t3 + 1e-9).all())
        bound = rtcore.loss_bound(f, y, W, b, dn)
        assert torch.allclose(bound, cross_entropy(z, y) + t2)
        assert bool((cross_entropy(z_adv, y) <= bound + 1e-9).all())
        assert torch.allclose(rtcore.loss_bound(f, y, W, b, dn, per_class=False), cross_entropy(z, y) + t3)


def test_consistent_delta_takes_the_largest_shift() -> None:
    a, b_, c = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 2.5, 3.0]), torch.tensor([1.5, 0.0, 4.0])
    assert torch.equal(rtcore.consistent_delta(a, b_, c), torch.tensor([1.5, 2.5, 4.0]))
    assert torch.equal(rtcore.consistent_delta(a), a)


def test_bad_shapes_are_refused() -> None:
    f, y, W, b = _random_head(0, n=10)
    with pytest.raises(ValueError, match="weight"):
        rtcore.margins(f, y, W[:, :3], b)
    with pytest.raises(ValueError, match="bias"):
        rtcore.margins(f, y, W, b[:2])
    with pytest.raises(ValueError, match="label"):
        rtcore.margins(f, y + 10, W, b)
    with pytest.raises(ValueError, match="NaN"):
        rtcore.margins(f * float("nan"), y, W, b)
    with pytest.raises(ValueError, match="delta"):
        rtcore.bound_criterion(f, y, W, b, torch.zeros(3))
    with pytest.raises(ValueError, match="non-negative"):
        rtcore.bound_criterion(f, y, W, b, -torch.ones(10))


def test_head_projector_is_the_projection_onto_the_weight_differences() -> None:
    from rtcore.bounds import head_projector

    gen = torch.Generator().manual_seed(0)
    W = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    P = head_projector(W)
    assert torch.allclose(P, P.T) and torch.allclose(P @ P, P, atol=1e-12)
    assert int(torch.linalg.matrix_rank(P)) == 3  # K - 1
    for j in range(4):
        for k in range(4):
            assert torch.allclose(P @ (W[j] - W[k]), W[j] - W[k], atol=1e-12)
    W2 = torch.stack([W[0], W[1], W[0] + 2 * (W[1] - W[0])])  # collinear differences: rank 1
    assert int(torch.linalg.matrix_rank(head_projector(W2))) == 1


def test_pairwise_margins_only_see_the_projected_shift() -> None:
    """(w_y - w_k)^T d = (w_y - w_k)^T P d, so rho > ||P d|| keeps the prediction (the head-subspace criterion)."""
    from rtcore.bounds import head_projector

    gen = torch.Generator().manual_seed(1)
    W, b = torch.randn(3, 6, generator=gen), torch.randn(3, generator=gen)
    f = torch.randn(200, 6, generator=gen)
    y = (f @ W.T + b).argmax(1)
    P = head_projector(W).float()
    d = 3 * torch.randn(200, 6, generator=gen)
    rho = rtcore.margins(f, y, W, b)
    kept = ((f + d) @ W.T + b).argmax(1) == y
    met = rho > (d.double() @ P.double()).norm(dim=1)
    assert bool((kept | ~met).all()), "every point meeting the projected criterion keeps its prediction"
    assert torch.allclose((f + d) @ W.T, (f + d @ P) @ W.T - (d @ P - d) @ W.T, atol=1e-4)


def test_log_sum_exp_loss_bound_is_sound_exact_for_two_classes_and_tighter() -> None:
    from rtcore.bounds import cross_entropy, loss_bound_lse

    gen = torch.Generator().manual_seed(2)
    for k in (2, 3, 5):
        W, b = torch.randn(k, 4, generator=gen, dtype=torch.float64), torch.randn(k, generator=gen, dtype=torch.float64)
        f = torch.randn(50, 4, generator=gen, dtype=torch.float64)
        y = torch.randint(0, k, (50,), generator=gen)
        delta = torch.rand(50, generator=gen, dtype=torch.float64)
        lse = loss_bound_lse(f, y, W, b, delta)
        assert bool((lse <= rtcore.loss_bound(f, y, W, b, delta) + 1e-12).all())
        # sound: no shift inside the ball exceeds it (random directions on the sphere of radius Delta)
        for _ in range(200):
            u = torch.randn(50, 4, generator=gen, dtype=torch.float64)
            d = u / u.norm(dim=1, keepdim=True) * delta[:, None]
            assert bool((cross_entropy((f + d) @ W.T + b, y) <= lse + 1e-12).all())
        assert torch.allclose(loss_bound_lse(f, y, W, b, torch.zeros(50)), cross_entropy(f @ W.T + b, y))
        if k == 2:  # attained by d* = -Delta (w_y - w_k) / ||w_y - w_k||
            dw = W[y] - W[1 - y]
            d = -delta[:, None] * dw / dw.norm(dim=1, keepdim=True)
            assert torch.allclose(cross_entropy((f + d) @ W.T + b, y), lse, atol=1e-10)
