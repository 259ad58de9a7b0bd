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
    f = f * torch.tensor([1.0, 100.0, 0.01, 5.0, 1.0])[:m] + 7.0  # badly scaled raw features
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
    """Standardisation makes the fit invariant to feature scale: W(c f) = W(f) / c."""
    f, y = _blobs()
    p1 = rtcore.LinearProbe().fit(f, y)
    p2 = rtcore.LinearProbe().fit(f * 10, y)
    assert torch.allclose(p2.weight_ * 10, p1.weight_, rtol=1e-3, atol=1e-5)
    assert torch.allclose(p2.bias_, p1.bias_, rtol=1e-3, atol=1e-4)


def test_deterministic_and_optimal() -> None:
    f, y = _blobs(1)
    a = rtcore.LinearProbe(C=0.5).fit(f, y)
    b = rtcore.LinearProbe(C=0.5).fit(f, y)
    assert torch.equal(a.weight_, b.weight_) and torch.equal(a.bias_, b.bias_)
    # the gradient of the objective (in standardised space) vanishes at the solution
    fd = f.double()
    mu, sd = fd.mean(0), fd.std(0, unbiased=False)
    w = (a.weight_.double() * sd).requires_grad_(True)
    bb = (a.bias_.double() + (a.weight_.double() * mu).sum(1)).requires_grad_(True)
    loss = F.cross_entropy(((fd - mu) / sd) @ w.T + bb, y) + 0.5 / (0.5 * len(y)) * (w * w).sum()
    gw, gb = torch.autograd.grad(loss, [w, bb])
    assert float(gw.abs().max()) < 1e-4 and float(gb.abs().max()) < 1e-4


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
