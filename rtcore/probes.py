"""Linear probe: multinomial logistic regression on frozen features (scikit-learn style).

Features are standardised internally for a well-conditioned fit, but the learned
``weight_`` and ``bias_`` are expressed in the raw feature space of g, as the bound needs:
``h(z) = z @ weight_.T + bias_``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_features, check_labels


class LinearProbe:
    """L2-regularised multinomial logistic regression, fitted full-batch with L-BFGS.

    Objective (as scikit-learn's ``LogisticRegression(C=C)``, up to a factor ``1/N``):
    ``mean CE + ||W_s||^2 / (2 C N)`` with ``W_s`` the weights on standardised features.
    Deterministic: zero initialisation, float64, no randomness (``seed`` is kept for API
    symmetry and recorded in the cache key).
    """

    def __init__(self, C: float = 1.0, max_iter: int = 200, tol: float = 1e-6, num_classes: int | None = None,
                 seed: int = 0) -> None:
        if not C > 0:
            raise ValueError(f"C={C} must be positive (inverse regularisation strength)")
        if max_iter < 1:
            raise ValueError(f"max_iter={max_iter} must be >= 1")
        self.C, self.max_iter, self.tol, self.num_classes, self.seed = C, max_iter, tol, num_classes, seed

    def get_params(self) -> dict[str, object]:
        return {"C": self.C, "max_iter": self.max_iter, "tol": self.tol, "num_classes": self.num_classes,
                "seed": self.seed}

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> LinearProbe:
        """Fit on ``features`` (N, m) and integer ``labels`` (N,); returns self."""
        f = check_features(features).detach().to("cpu", torch.float64)
        y = check_labels(labels, f.shape[0], "labels").cpu()
        if f.shape[0] == 0:
            raise ValueError("features are empty; give at least one training example")
        k = self.num_classes or int(y.max()) + 1
        if int(y.max()) >= k:
            raise ValueError(f"label {int(y.max())} is out of range for num_classes={k}")
        if k < 2:
            raise ValueError(f"a probe needs at least 2 classes, the labels have {k}")
        mu = f.mean(dim=0)
        sd = f.std(dim=0, unbiased=False)
        sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))  # constant features: leave unscaled
        fs = (f - mu) / sd
        n, m = fs.shape
        w = torch.zeros(k, m, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
        lam = 1.0 / (self.C * n)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=self.max_iter, tolerance_grad=self.tol,
                                tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(fs @ w.T + b, y) + 0.5 * lam * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        state = opt.state[opt._params[0]]
        self.n_iter_ = int(state.get("n_iter", 0))
        with torch.no_grad():
            w_raw = w / sd  # column j divided by sd_j
            b_raw = b - (w_raw * mu).sum(dim=1)
        self.weight_ = w_raw.float()
        self.bias_ = b_raw.float()
        self.classes_ = torch.arange(k)
        self.n_features_in_ = m
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "weight_"):
            raise RuntimeError("this LinearProbe is not fitted yet; call .fit(features, labels) first")

    def decision_function(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``features @ weight_.T + bias_`` (N, K)."""
        self._check_fitted()
        f = check_features(features)
        if f.shape[1] != self.n_features_in_:
            raise ValueError(f"features have {f.shape[1]} dimensions, the probe was fitted on {self.n_features_in_}")
        return f.float() @ self.weight_.to(f.device).T + self.bias_.to(f.device)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.decision_function(features).argmax(dim=1)

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        return self.decision_function(features).softmax(dim=1)

    def score(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return float((self.predict(features).cpu() == labels.cpu()).float().mean())

    def as_module(self) -> LinearHead:
        self._check_fitted()
        return LinearHead(self.weight_, self.bias_)

    @classmethod
    def from_weights(cls, weight: torch.Tensor, bias: torch.Tensor) -> LinearProbe:
        """A fitted probe from stored weights (e.g. the cache)."""
        probe = cls(num_classes=weight.shape[0])
        probe.weight_, probe.bias_ = weight.float().cpu(), bias.float().cpu()
        probe.classes_ = torch.arange(weight.shape[0])
        probe.n_features_in_ = weight.shape[1]
        probe.n_iter_ = 0
        return probe


class LinearHead(nn.Module):
    """Frozen ``h(z) = W z + b`` as a module (for end-to-end models ``h(g(x))``)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().float().clone())
        self.register_buffer("bias", bias.detach().float().clone())
        self.eval()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T + self.bias


class ProbedModel(nn.Module):
    """The downstream classifier ``h(g(x))`` attacked end to end, in pixel space."""

    def __init__(self, backbone: nn.Module, head: LinearHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.eval()

    def train(self, mode: bool = True) -> ProbedModel:
        if mode:
            raise RuntimeError("a ProbedModel is for evaluation only and stays in eval mode")
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
