"""Linear probe: raw-space weights, determinism, optimality, and errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rtcore


def _blobs(seed: int = 0, n: int = 300, m: int = 5, k: int = 3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, m, generator=g) * 3
    y = torch.arange(n) % k
    f = centers[y] + torch.randn(n, m, generator=g)
    f = f * torch.tensor([1.0, 10.0, 0.1, 5.0, 1.0])[:m] + 7.0  # badly scaled raw features
    return f, y


def test_fit_returns_self_and_separates() -> None:
    f, y = _blobs()
    probe = rtcore.LinearProbe()
    assert probe.fit(f, y) is probe
    assert probe.weight_.shape == (3, 5) and probe.bias_.shape == (3,)
    assert probe.score(f, y) > 0.95
    assert torch.equal(probe.predict(f), probe.decision_function(f).argmax(1))


def test_weights_are_in_raw_feature_space() -> None:
    """h(z) = z W^T + b on raw features equals the standardised model, so the bound can use W."""
    f, y = _blobs()
    probe = rtcore.LinearProbe().fit(f, y)
    logits = f.double() @ probe.weight_.double().T + probe.bias_.double()
    assert torch.allclose(probe.decision_function(f).double(), logits, atol=1e-3)
    # rho computed from weight_/bias_ agrees with the probe's own predictions
    rho = rtcore.margins(f, y, probe.weight_, probe.bias_)
    assert torch.equal(rho > 0, probe.predict(f) == y)


def test_scale_equivariance() -> None:
    """Raw-space penalty: W(c f; C / c^2) = W(f; C) / c. Standardised penalty: W(c f; C) = W(f; C) / c."""
    f, y = _blobs()
    p1 = rtcore.LinearProbe(C=0.1).fit(f, y)
    p2 = rtcore.LinearProbe(C=0.1 / 100).fit(f * 10, y)
    assert torch.allclose(p2.weight_ * 10, p1.weight_, rtol=2e-3, atol=1e-5)
    assert torch.allclose(p2.bias_, p1.bias_, rtol=2e-3, atol=1e-4)
    s1 = rtcore.LinearProbe(C=1.0, space="standardised").fit(f, y)
    s2 = rtcore.LinearProbe(C=1.0, space="standardised").fit(f * 10, y)
    assert torch.allclose(s2.weight_ * 10, s1.weight_, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("space", ["raw", "standardised"])
def test_deterministic_and_optimal(space: str) -> None:
    """At the solution the gradient of the objective vanishes: mean CE + ||W||^2 / (2 C N), W raw or standardised."""
    f, y = _blobs(1)
    a = rtcore.LinearProbe(C=0.5, space=space).fit(f, y)
    b = rtcore.LinearProbe(C=0.5, space=space).fit(f, y)
    assert torch.equal(a.weight_, b.weight_) and torch.equal(a.bias_, b.bias_)
    fd = f.double()
    mu, sd = fd.mean(0), fd.std(0, unbiased=False)
    w = (a.weight_.double() * sd).requires_grad_(True)  # standardised-space weights
    bb = (a.bias_.double() + (a.weight_.double() * mu).sum(1)).requires_grad_(True)
    w_pen = w / sd if space == "raw" else w
    loss = F.cross_entropy(((fd - mu) / sd) @ w.T + bb, y) + 0.5 / (0.5 * len(y)) * (w_pen * w_pen).sum()
    gw, gb = torch.autograd.grad(loss, [w, bb])
    assert float(gw.abs().max()) < 1e-4 and float(gb.abs().max()) < 1e-4


def test_raw_penalty_gives_larger_margins_than_the_standardised_one() -> None:
    """The criterion's margin rho lives in raw feature space: penalising raw weights keeps it large."""
    f, y = _blobs(2)
    raw = rtcore.LinearProbe(C=0.01).fit(f, y)
    std = rtcore.LinearProbe(C=0.01, space="standardised").fit(f, y)
    rho_raw = rtcore.margins(f, y, raw.weight_, raw.bias_)
    rho_std = rtcore.margins(f, y, std.weight_, std.bias_)
    assert float(rho_raw.median()) > 2 * float(rho_std.median())


def test_auto_c_follows_the_one_standard_error_rule() -> None:
    from rtcore.probes import pick_c, stratified_split

    assert pick_c([0.80, 0.90, 0.91, 0.92], [0.01, 0.1, 1.0, 10.0], 100) == 0.1  # SE = 0.027
    assert pick_c([0.80, 0.90, 0.91, 0.92], [0.01, 0.1, 1.0, 10.0], 10000) == 10.0  # SE = 0.0027
    y = torch.arange(103) % 3
    fit, held = stratified_split(y, 0.2, seed=0)
    assert set(fit.tolist()).isdisjoint(held.tolist()) and len(fit) + len(held) == 103
    assert [int((y[held] == c).sum()) for c in range(3)] == [7, 7, 7]  # ceil(0.2 * 35 or 34)
    f, yy = _blobs(3)
    p = rtcore.LinearProbe(C_grid=(0.001, 0.01, 0.1, 1.0)).fit(f, yy)
    assert p.C_ in (0.001, 0.01, 0.1, 1.0) and set(p.cv_accuracy_) == {0.001, 0.01, 0.1, 1.0}
    q = rtcore.LinearProbe(C_grid=(0.001, 0.01, 0.1, 1.0)).fit(f, yy)
    assert torch.equal(p.weight_, q.weight_)


def test_robust_probe_objective_is_the_exact_worst_case_for_two_classes() -> None:
    """For K = 2 the shift d* = -r (w_y - w_k) / ||w_y - w_k|| attains the surrogate: CE(z~) = max_{||d||<=r} CE."""
    from rtcore.probes import RobustLinearProbe

    gen = torch.Generator().manual_seed(0)
    f, y = torch.randn(50, 4, generator=gen, dtype=torch.float64), torch.arange(50) % 2
    w, b = torch.randn(2, 4, generator=gen, dtype=torch.float64), torch.randn(2, generator=gen, dtype=torch.float64)
    probe = RobustLinearProbe(radius=0.7)
    ones = torch.ones(4, dtype=torch.float64)
    surrogate = F.cross_entropy(probe._logits(f, y, w, b, ones), y, reduction="none")
    dw = w[y] - w[1 - y]
    worst = f - 0.7 * dw / dw.norm(dim=1, keepdim=True)
    exact = F.cross_entropy(worst @ w.T + b, y, reduction="none")
    assert torch.allclose(surrogate, exact, atol=1e-5)


def test_robust_probe_trades_clean_fit_for_margin() -> None:
    from rtcore.probes import RobustLinearProbe

    f, y = _blobs(4)
    base = rtcore.LinearProbe(C=0.1).fit(f, y)
    r = float(rtcore.margins(f, y, base.weight_, base.bias_).median())
    rob = RobustLinearProbe(radius=r, C=0.1).fit(f, y)
    met = [float((rtcore.margins(f, y, p.weight_, p.bias_) > r).double().mean()) for p in (base, rob)]
    assert met[1] > met[0]
    zero = RobustLinearProbe(radius=0.0, C=0.1).fit(f, y)
    assert torch.allclose(zero.weight_, base.weight_, atol=1e-4)


def test_probe_registry() -> None:
    from rtcore.probes import create_probe, list_probes

    assert list_probes() == ["logistic", "logistic-std", "robust"]
    assert create_probe("robust", radius=1.0).radius == 1.0
    assert create_probe("logistic-std").space == "standardised"
    with pytest.raises(ValueError, match="unknown"):
        create_probe("svm")
    with pytest.raises(ValueError, match="radius"):
        create_probe("robust", radius=-1.0)


def test_binary_and_constant_features() -> None:
    f, y = _blobs(k=2)
    f[:, 2] = 1.0  # a constant feature is left unscaled, not divided by zero
    probe = rtcore.LinearProbe().fit(f, y)
    assert torch.isfinite(probe.weight_).all() and probe.score(f, y) > 0.95


def test_bad_input() -> None:
    f, y = _blobs()
    with pytest.raises(ValueError, match="NaN"):
        rtcore.LinearProbe().fit(f * float("nan"), y)
    with pytest.raises(ValueError, match="entries"):
        rtcore.LinearProbe().fit(f, y[:-1])
    with pytest.raises(ValueError, match="2 classes"):
        rtcore.LinearProbe().fit(f, torch.zeros_like(y))
    with pytest.raises(ValueError, match="C="):
        rtcore.LinearProbe(C=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        rtcore.LinearProbe().predict(f)
    with pytest.raises(ValueError, match="dimensions"):
        rtcore.LinearProbe().fit(f, y).predict(f[:, :2])
