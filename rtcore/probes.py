"""Linear probes on frozen features (scikit-learn conventions: ``fit`` returns self, learned ``weight_``/``bias_``).

A small family, in a registry (:func:`register_probe`, :func:`list_probes`, :func:`probe_info`,
:func:`create_probe`):

* ``logistic`` (:class:`LinearProbe`): multinomial logistic regression with an L2 penalty on the
  weights *in raw feature space*, the space where the criterion measures the margin rho.
  ``C="auto"`` picks C on a held-out, stratified part of the training set (the smallest C, i.e.
  the strongest penalty, within one standard error of the best held-out accuracy), then refits
  on the whole training set.
* ``logistic-std``: the same with the penalty on standardised weights (the version-one probe,
  kept for comparison): raw weights on low-variance features can grow, which shrinks rho.
* ``robust`` (:class:`RobustLinearProbe`): trained against the worst feature shift of norm
  ``radius``: logits ``z_k + radius * ||w_y - w_k||_2`` for ``k != y``. This minimises an upper
  bound on the worst-case cross-entropy over the feature ball, trading clean accuracy for margin.

Features are standardised internally for a well-conditioned fit (float64, ``torch.optim.LBFGS`` with a strong-Wolfe
line search, zero or warm start, no randomness except the seeded validation split), but ``weight_`` and ``bias_`` are
expressed in the raw feature space of g: ``h(z) = z @ weight_.T + bias_``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .numerics import by_rows, linear_rows, with_fixed_threads
from .registry import Registry
from .validation import check_features, check_labels

C_GRID: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
Space = Literal["raw", "standardised"]


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(fit, held_out)``: ``ceil(fraction * n_c)`` points of every class c go to ``held_out``."""
    gen = torch.Generator().manual_seed(seed)
    fit, held = [], []
    for c in labels.unique(sorted=True).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        k = min(max(1, math.ceil(fraction * idx.numel())), idx.numel() - 1) if idx.numel() > 1 else 0
        held.append(idx[:k])
        fit.append(idx[k:])
    return torch.cat(fit).sort().values, torch.cat(held).sort().values


def pick_c(accuracies: Sequence[float], grid: Sequence[float], n_held_out: int) -> float:
    """The smallest C whose held-out accuracy is within one standard error of the best (the 1-SE rule)."""
    best = max(accuracies)
    se = math.sqrt(max(best * (1 - best), 1e-12) / max(n_held_out, 1))
    return min(c for c, a in zip(grid, accuracies) if a >= best - se)


class LinearProbe:
    """L2-regularised multinomial logistic regression, fitted full-batch with L-BFGS.

    Objective: ``mean CE + ||W||^2 / (2 C N)`` with ``W`` the raw feature-space weights
    (``space="raw"``) or the weights on standardised features (``space="standardised"``).
    ``C="auto"`` chooses C from ``C_grid`` on a held-out split (see :func:`pick_c`); the
    chosen value is ``C_``.
    """

    kind = "logistic"

    def __init__(self, C: float | str = "auto", max_iter: int = 200, tol: float = 1e-6,
                 num_classes: int | None = None, seed: int = 0, space: Space = "raw",
                 C_grid: Sequence[float] = C_GRID, val_fraction: float = 0.2) -> None:
        if C != "auto" and (isinstance(C, (str, bool)) or not C > 0):  # type: ignore[operator]
            raise ValueError(f"C={C!r} must be a positive number (inverse regularisation strength) or 'auto'")
        if max_iter < 1:
            raise ValueError(f"max_iter={max_iter} must be >= 1")
        if space not in ("raw", "standardised"):
            raise ValueError(f"space={space!r} must be 'raw' or 'standardised'")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction={val_fraction} must be in (0, 1)")
        if not C_grid or any(not c > 0 for c in C_grid):
            raise ValueError(f"C_grid={C_grid!r} must be a non-empty list of positive numbers")
        self.C, self.max_iter, self.tol, self.num_classes, self.seed = C, max_iter, tol, num_classes, seed
        self.space, self.C_grid, self.val_fraction = space, tuple(float(c) for c in C_grid), val_fraction

    def get_params(self) -> dict[str, object]:
        return {"kind": self.kind, "C": self.C, "max_iter": self.max_iter, "tol": self.tol,
                "num_classes": self.num_classes, "seed": self.seed, "space": self.space,
                "C_grid": list(self.C_grid), "val_fraction": self.val_fraction}

    # -- the objective (subclasses change the logits)
    def _logits(self, fs: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                sd: torch.Tensor) -> torch.Tensor:
        return fs @ w.T + b

    def _solve(self, fs: torch.Tensor, y: torch.Tensor, k: int, C: float, sd: torch.Tensor,
               init: tuple[torch.Tensor, torch.Tensor] | None,
               plain: bool = False) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Minimise the objective from ``init`` (zeros by default); ``plain``: the logistic objective."""
        logits = LinearProbe._logits if plain else type(self)._logits
        n, m = fs.shape
        w0, b0 = init if init is not None else (torch.zeros(k, m, dtype=torch.float64), torch.zeros(k, dtype=torch.float64))
        w = w0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        lam = 1.0 / (C * n)
        scale = (1.0 / sd) if self.space == "raw" else torch.ones_like(sd)

        def closure() -> torch.Tensor:
            w.grad = b.grad = None
            loss = F.cross_entropy(logits(self, fs, y, w, b, sd), y) + 0.5 * lam * ((w * scale) ** 2).sum()
            loss.backward()
            return loss

        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=self.max_iter, tolerance_grad=self.tol, tolerance_change=1e-12,
                                history_size=20, line_search_fn="strong_wolfe")
        opt.step(closure)
        return w.detach(), b.detach(), int(opt.state[w]["n_iter"])

    def _initial(self, fs: torch.Tensor, y: torch.Tensor, k: int, C: float,
                 sd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    @with_fixed_threads
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
        self.C_ = self._choose_c(fs, y, k, sd) if self.C == "auto" else float(self.C)  # type: ignore[arg-type]
        w, b, self.n_iter_ = self._solve(fs, y, k, self.C_, sd, self._initial(fs, y, k, self.C_, sd))
        w_raw = w / sd  # column j divided by sd_j
        b_raw = b - (w_raw * mu).sum(dim=1)
        self.weight_ = w_raw.float()
        self.bias_ = b_raw.float()
        self.classes_ = torch.arange(k)
        self.n_features_in_ = f.shape[1]
        return self

    def _choose_c(self, fs: torch.Tensor, y: torch.Tensor, k: int, sd: torch.Tensor) -> float:
        fit_idx, held = stratified_split(y, self.val_fraction, self.seed)
        if held.numel() == 0:
            return self.C_grid[len(self.C_grid) // 2]
        accs, init = [], None
        for c in self.C_grid:  # increasing C: each fit starts from the more regularised one
            w, b, _ = self._solve(fs[fit_idx], y[fit_idx], k, c, sd, init, plain=True)
            init = (w, b)
            accs.append(float(((fs[held] @ w.T + b).argmax(1) == y[held]).double().mean()))
        self.cv_accuracy_ = dict(zip(self.C_grid, accs))
        return pick_c(accs, self.C_grid, held.numel())

    # -- sklearn-style use
    def _check_fitted(self) -> None:
        if not hasattr(self, "weight_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call .fit(features, labels) first")

    def decision_function(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``features @ weight_.T + bias_`` (N, K)."""
        self._check_fitted()
        f = check_features(features)
        if f.shape[1] != self.n_features_in_:
            raise ValueError(f"features have {f.shape[1]} dimensions, the probe was fitted on {self.n_features_in_}")
        w, b = self.weight_.to(f.device), self.bias_.to(f.device)
        return by_rows(lambda z: linear_rows(z, w, b), f.float())

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
        probe = cls.__new__(cls)
        LinearProbe.__init__(probe, num_classes=weight.shape[0])
        probe.weight_, probe.bias_ = weight.float().cpu(), bias.float().cpu()
        probe.classes_ = torch.arange(weight.shape[0])
        probe.n_features_in_ = weight.shape[1]
        probe.n_iter_ = 0
        return probe


def _pairwise(w_raw: torch.Tensor) -> torch.Tensor:
    """``||w_j - w_k||_2`` (K, K), smoothed at 0 so that the objective stays differentiable."""
    diff = w_raw[:, None, :] - w_raw[None, :, :]
    return torch.sqrt((diff * diff).sum(-1) + 1e-12)


class RobustLinearProbe(LinearProbe):
    """A Delta-aware head: cross-entropy on the worst case over feature shifts of norm ``<= radius``.

    For a shift d with ``||d|| <= r`` the margin ``z_y - z_k`` drops by at most ``r ||w_y - w_k||``
    (Cauchy-Schwarz), so training on ``z~_k = z_k + r ||w_y - w_k||`` (k != y) minimises an upper
    bound on the worst-case loss. ``radius`` is in raw feature units; ``radius=0`` is the logistic
    probe. C is chosen as for :class:`LinearProbe` (``"auto"``) and the fit starts from that probe.
    """

    kind = "robust"

    def __init__(self, radius: float = 0.0, **kwargs: Any) -> None:
        if isinstance(radius, bool) or not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius >= 0):
            raise ValueError(f"radius={radius!r} must be a finite number >= 0 (feature units, e.g. a median Delta)")
        super().__init__(**kwargs)
        self.radius = float(radius)

    def get_params(self) -> dict[str, object]:
        return {**super().get_params(), "radius": self.radius}

    def _logits(self, fs: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                sd: torch.Tensor) -> torch.Tensor:
        z = fs @ w.T + b
        if self.radius == 0:
            return z
        dist = _pairwise(w / sd)[y]  # (N, K): ||w_y - w_k|| in raw feature space
        dist = dist.scatter(1, y[:, None], 0.0)
        return z + self.radius * dist

    def _initial(self, fs: torch.Tensor, y: torch.Tensor, k: int, C: float,
                 sd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        w, b, _ = self._solve(fs, y, k, C, sd, None, plain=True)
        return w, b


@dataclass(frozen=True)
class ProbeInfo:
    """A probe kind: its constructor, what it is, whether ``C`` is a parameter of it, and whether it is
    trained against feature shifts of a radius (set from the feature attack on training points)."""

    name: str
    description: str
    factory: Callable[..., LinearProbe] = field(repr=False)
    takes_C: bool = True
    takes_radius: bool = False


_PROBES: Registry[ProbeInfo] = Registry("probe kind")


def register_probe(name: str, factory: Callable[..., LinearProbe], *, description: str, takes_C: bool = True,
                   takes_radius: bool = False, overwrite: bool = False) -> ProbeInfo:
    """Add a probe kind: ``factory(**params)`` returns an unfitted probe with ``fit``/``weight_``/``bias_``."""
    return _PROBES.register(ProbeInfo(name, description, factory, takes_C, takes_radius), overwrite=overwrite)


def list_probes() -> list[str]:
    """The probe kinds: ``logistic`` (default), ``logistic-std``, ``robust``."""
    return _PROBES.names()


def probe_info(kind: str) -> ProbeInfo:
    """The registry entry of ``kind`` (ValueError naming the valid kinds if unknown)."""
    return _PROBES.info(kind)


def create_probe(kind: str = "logistic", **params: Any) -> LinearProbe:
    """A probe of ``kind`` with ``params`` (e.g. ``num_classes``, ``C``, ``radius`` for ``robust``)."""
    return probe_info(kind).factory(**params)


register_probe("logistic", LinearProbe, description="logistic regression, L2 penalty on raw feature-space weights, "
                                                    "C chosen on a held-out split")
register_probe("logistic-std", lambda **kw: LinearProbe(**{"C": 1.0, **kw, "space": "standardised"}), takes_C=False,
               description="logistic regression, L2 penalty on standardised weights, C = 1 (version one)")
register_probe("robust", RobustLinearProbe, takes_radius=True, description="Delta-aware: trained against the worst feature shift of "
                                                        "radius r (r from the feature attack on training points)")


#: the registry read as dicts (kept for compatibility): kind -> constructor, kind -> description
PROBES: Mapping[str, Callable[..., LinearProbe]] = _PROBES.view("factory")
PROBE_DESCRIPTIONS: Mapping[str, str] = _PROBES.view("description")


class LinearHead(nn.Module):
    """Frozen ``h(z) = W z + b`` as a module (for end-to-end models ``h(g(x))``)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().float().clone())
        self.register_buffer("bias", bias.detach().float().clone())
        self.eval()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return by_rows(lambda rows: linear_rows(rows, self.weight, self.bias), z)


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
