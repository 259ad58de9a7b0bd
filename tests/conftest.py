"""Shared fixtures: exact-answer linear backbones, and a private cache for every test session."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import rtcore


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the user's ~/.cache/rtcore, and run torch on one thread (here and in the
    processes they start): on a 2-core machine another busy process makes torch's second thread a
    straggler that every small op waits for (measured: 4.5x slower than one thread), while one thread
    costs 1.5x at most on idle cores."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RTCORE_CACHE_DIR", str(tmp_path_factory.mktemp("rtcore-cache")))
    mp.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    mp.undo()


class LinearNet(nn.Module):
    """g(x) = A vec(x): the backbone for which docs/THEORY.md gives exact answers."""

    def __init__(self, A: torch.Tensor) -> None:
        super().__init__()
        self.A = nn.Parameter(A.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.A.T


class LinearCase:
    """A linear backbone g(x) = A x on 1x2xW images, inputs far from the box edges."""

    def __init__(self, seed: int, d: int = 8, m: int = 3, n: int = 64, k: int = 4) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.A = torch.randn(m, d, generator=gen)
        self.backbone = rtcore.as_backbone(LinearNet(self.A), name=f"linear-{seed}")
        self.x = 0.3 + 0.4 * torch.rand(n, 1, 2, d // 2, generator=gen)  # eps <= 0.25 never clips
        self.W = torch.randn(k, m, generator=gen)
        self.b = 0.1 * torch.randn(k, generator=gen)
        f = self.backbone(self.x)
        self.y = (f @ self.W.T + self.b).argmax(1)
        self.y[: n // 8] = torch.randint(0, k, (n // 8,), generator=gen)  # some misclassified points
        self.model = rtcore.ProbedModel(self.backbone, rtcore.LinearHead(self.W, self.b))

    def exact_delta(self, eps: float, norm: str, projector: torch.Tensor | None = None) -> float:
        """l2: eps * sigma_max(P A); linf: eps * max over sign vectors s of ||P A s|| (P = I by default)."""
        A = self.A.double() if projector is None else projector.double() @ self.A.double()
        if norm == "l2":
            return eps * float(torch.linalg.svdvals(A)[0])
        signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=A.shape[1])), dtype=torch.float64)
        return eps * float((signs @ A.T).norm(dim=1).max())

    def exact_robust(self, eps: float, norm: str) -> torch.Tensor:
        """Robust iff (w_y - w_k)^T A x + b_y - b_k > eps ||A^T (w_y - w_k)||_q for all k != y."""
        q = 1 if norm == "linf" else 2
        f = self.x.flatten(1).double() @ self.A.double().T
        W, b = self.W.double(), self.b.double()
        ok = torch.ones(self.x.shape[0], dtype=torch.bool)
        for k in range(W.shape[0]):
            dw = W[self.y] - W[k]
            lhs = (dw * f).sum(1) + b[self.y] - b[k]
            rhs = eps * (dw @ self.A.double()).norm(p=q, dim=1)
            ok &= (lhs > rhs) | (self.y == k)
        return ok


@pytest.fixture(params=[0, 1, 2])
def linear_case(request: pytest.FixtureRequest) -> LinearCase:
    return LinearCase(request.param)


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``npz:PATH`` of a small 3-class own-data task: 120 training and 24 test images of `shapes` (a fit, a
    fine-tuning epoch and an attack on it stay quick)."""
    import numpy as np

    t = rtcore.create_task("shapes")
    path = tmp_path_factory.mktemp("tiny-task") / "tiny.npz"
    as_bytes = lambda x: (x * 255).round().to(torch.uint8).numpy()  # noqa: E731
    np.savez(path, x_train=as_bytes(t.x_train[:120]), y_train=t.y_train[:120].numpy(), x_test=as_bytes(t.x_test[:24]),
             y_test=t.y_test[:24].numpy())
    return f"npz:{path}"
