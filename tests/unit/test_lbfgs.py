"""rtcore._lbfgs.minimize against torch.optim.LBFGS: bit-identical parameters and iteration counts on the probes'
objectives (so the probes, their cache entries and every number downstream stay the same), and a probe fit that
no longer imports torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from rtcore import probes
from rtcore._lbfgs import minimize


def problem(seed: int, n: int = 300, m: int = 12, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    f = torch.randn(n, m, generator=g, dtype=torch.float64) + 0.8 * F.one_hot(y, m).double()
    return f, y


def solve(f: torch.Tensor, y: torch.Tensor, C: float, use_torch: bool, max_iter: int = 200,
          radius: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, int]:
    k, m = int(y.max()) + 1, f.shape[1]
    w = torch.zeros(k, m, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    lam = 1.0 / (C * len(y))

    def loss_fn() -> torch.Tensor:
        z = f @ w.T + b
        if radius:
            z = z + radius * (w[y][:, None, :] - w[None]).norm(dim=2) * (1 - F.one_hot(y, k))
        return F.cross_entropy(z, y) + 0.5 * lam * (w ** 2).sum()

    if use_torch:
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-12,
                                history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        opt.step(closure)
        n_iter = int(opt.state[opt._params[0]].get("n_iter", 0))
    else:
        def closure() -> torch.Tensor:
            w.grad = b.grad = None
            loss = loss_fn()
            loss.backward()
            return loss

        n_iter = minimize([w, b], closure, lr=1, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-12,
                          history_size=20)
    return w.detach(), b.detach(), n_iter


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("C", "max_iter", "radius"), [(1e-3, 200, 0.0), (1.0, 200, 0.0), (10.0, 7, 0.0),
                                                       (1.0, 200, 0.3)])
def test_bit_identical_to_torch_optim(seed: int, C: float, max_iter: int, radius: float) -> None:
    f, y = problem(seed)
    w1, b1, it1 = solve(f, y, C, use_torch=True, max_iter=max_iter, radius=radius)
    w2, b2, it2 = solve(f, y, C, use_torch=False, max_iter=max_iter, radius=radius)
    assert torch.equal(w1, w2) and torch.equal(b1, b2) and it1 == it2


def test_probe_fits_are_unchanged() -> None:
    """Every probe kind with the choice of C: the same weights as with torch.optim.LBFGS."""
    f, y = problem(7, n=400, m=16, k=5)
    for kind, params in (("logistic", {}), ("logistic-std", {}), ("robust", {"radius": 0.2})):
        ours = probes.create_probe(kind, **params).fit(f, y)
        original = probes.LinearProbe._solve

        def with_torch(self, fs, y_, k, C, sd, init, plain=False):  # noqa: ANN001, ANN202
            logits = probes.LinearProbe._logits if plain else type(self)._logits
            w0, b0 = init if init is not None else (torch.zeros(k, fs.shape[1], dtype=torch.float64),
                                                    torch.zeros(k, dtype=torch.float64))
            w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
            scale = (1.0 / sd) if self.space == "raw" else torch.ones_like(sd)
            opt = torch.optim.LBFGS([w, b], lr=1, max_iter=self.max_iter, tolerance_grad=self.tol,
                                    tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = F.cross_entropy(logits(self, fs, y_, w, b, sd), y_) + 0.5 / (C * len(y_)) * (
                    (w * scale) ** 2).sum()
                loss.backward()
                return loss

            opt.step(closure)
            return w.detach(), b.detach(), int(opt.state[opt._params[0]].get("n_iter", 0))

        probes.LinearProbe._solve = with_torch
        try:
            theirs = probes.create_probe(kind, **params).fit(f, y)
        finally:
            probes.LinearProbe._solve = original
        assert torch.equal(ours.weight_, theirs.weight_) and torch.equal(ours.bias_, theirs.bias_), kind
        assert ours.C_ == theirs.C_ and ours.n_iter_ == theirs.n_iter_


def test_a_probe_fit_does_not_import_dynamo() -> None:
    code = ("import sys, torch; from rtcore.probes import LinearProbe; "
            "f = torch.randn(60, 5); y = torch.arange(60) % 3; LinearProbe().fit(f, y); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "False"
