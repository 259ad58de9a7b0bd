"""The criterion and loss bound of Nern et al. (NeurIPS 2023), as pure functions.

``rho_k(x) = ((w_y - w_k)^T g(x) + b_y - b_k) / ||w_y - w_k||_2``, ``rho(x) = min_{k != y} rho_k(x)``.
If ``rho(x) > Delta(x; eps)`` the linear head's prediction at x cannot change inside the
eps-ball (Cauchy-Schwarz). With an attack estimate of Delta this is a prediction; only with
a sound upper bound on Delta is it a certificate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .validation import check_features, check_labels


def _check(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    f = check_features(features)
    y = check_labels(labels, f.shape[0], "labels")
    if weight.ndim != 2 or weight.shape[1] != f.shape[1]:
        raise ValueError(f"weight has shape {tuple(weight.shape)}; expected (K, {f.shape[1]}) for features of dimension {f.shape[1]}")
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"bias has shape {tuple(bias.shape)}; expected ({weight.shape[0]},)")
    if f.shape[0] and int(y.max()) >= weight.shape[0]:
        raise ValueError(f"label {int(y.max())} is out of range for a head with {weight.shape[0]} classes")
    return y


def pairwise_weight_distances(weight: torch.Tensor) -> torch.Tensor:
    """``D[j, k] = ||w_j - w_k||_2`` (K, K), computed as differences (no cancellation)."""
    w = weight.double()
    return (w[:, None, :] - w[None, :, :]).norm(dim=2)


def margins(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``rho(x)`` per sample (N,): the feature-space distance to the nearest pairwise boundary.

    Negative or zero for misclassified points (ties count as misclassified). Where
    ``w_y = w_k`` the pair never flips if ``b_y > b_k`` (+inf) and always ties or loses otherwise.
    """
    y = _check(features, labels, weight, bias)
    f, w, b = features.double(), weight.double().to(features.device), bias.double().to(features.device)
    y = y.to(features.device)
    z = f @ w.T + b
    gap = z.gather(1, y[:, None]) - z  # (N, K): logit_y - logit_k
    dist = pairwise_weight_distances(w)[y]  # (N, K): ||w_y - w_k||
    rho_k = torch.where(dist > 0, gap / dist.clamp_min(1e-300),
                        torch.where(gap > 0, torch.inf, torch.where(gap < 0, -torch.inf, 0.0)))
    rho_k = rho_k.scatter(1, y[:, None], torch.inf)
    return rho_k.amin(dim=1)


def check_delta(delta: object, n: int, device: torch.device | None = None) -> torch.Tensor:
    """Delta as float64 of shape (), (N,) or (E, N); negative, NaN or infinite values are refused."""
    d = torch.as_tensor(delta, dtype=torch.float64, device=device)
    if d.ndim != 0 and d.shape[-1] != n:
        raise ValueError(f"delta has shape {tuple(d.shape)}; expected (), ({n},) or (E, {n})")
    if bool(torch.isnan(d).any()) or bool(torch.isinf(d).any()):
        raise ValueError("delta contains NaN or inf; Delta(x; eps) is a finite norm ||g(x') - g(x)||_2 >= 0")
    if bool((d < 0).any()):
        raise ValueError(f"delta has negative values (min {float(d.min()):.4g}); Delta(x; eps) is a norm and must be non-negative")
    return d


def bound_criterion(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    delta: torch.Tensor) -> torch.Tensor:
    """``rho(x) > Delta(x)`` per sample: bool (N,), or (E, N) for delta of shape (E, N)."""
    rho = margins(features, labels, weight, bias)
    return rho > check_delta(delta, rho.shape[0], rho.device)


def robust_accuracy_bound(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                          delta: torch.Tensor) -> torch.Tensor:
    """``RA_bound = mean 1[rho(x) > Delta(x)]``: a scalar, or (E,) for delta (E, N)."""
    return bound_criterion(features, labels, weight, bias, delta).double().mean(dim=-1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample ``-z_y + logsumexp(z)``."""
    return F.cross_entropy(logits.double(), labels.to(logits.device), reduction="none")


def class_weight_spread(weight: torch.Tensor) -> torch.Tensor:
    """``max_k ||w_k - w_y||_2`` for each class y (K,)."""
    return pairwise_weight_distances(weight).amax(dim=1)


def weight_diameter(weight: torch.Tensor) -> float:
    """``D_W = max_{j,k} ||w_j - w_k||_2``."""
    return float(pairwise_weight_distances(weight).max())


def loss_bound(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               delta: torch.Tensor, *, per_class: bool = True) -> torch.Tensor:
    """Upper bound on the adversarial loss per sample: ``l(h(g(x)), y) + D * Delta(x)``.

    ``D = max_k ||w_k - w_y||`` (per class) or ``D_W`` (``per_class=False``). Shape of delta.
    """
    y = _check(features, labels, weight, bias).to(features.device)
    clean = cross_entropy(features.double() @ weight.double().T.to(features.device) + bias.double().to(features.device), y)
    spread = class_weight_spread(weight).to(features.device)[y] if per_class else torch.tensor(weight_diameter(weight))
    return clean + spread * check_delta(delta, clean.shape[0], clean.device)


def loss_gap_factor(weight: torch.Tensor, logits_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``||W^T (p' - e_y)||_2`` per sample: the tightest factor of the loss bound chain."""
    p = logits_adv.double().softmax(dim=1)
    p = p - F.one_hot(labels.to(p.device), p.shape[1]).double()
    return (p @ weight.double().to(p.device)).norm(dim=1)


def consistent_delta(delta_feature: torch.Tensor, *shifts: torch.Tensor) -> torch.Tensor:
    """``Delta <- max(Delta_feature, ||g(x'_other) - g(x)||, ...)``: any attack's larger shift wins."""
    out = torch.as_tensor(delta_feature).clone()
    for s in shifts:
        out = torch.maximum(out, torch.as_tensor(s, dtype=out.dtype, device=out.device))
    return out


def head_projector(weight: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """``P`` (m, m), float64: the orthogonal projection onto ``span{w_j - w_k}`` (rank at most K - 1).

    Every pairwise margin only sees ``P d`` of a feature shift d, since
    ``(w_y - w_k)^T d = (w_y - w_k)^T P d``; so the criterion holds with ``Delta_P = sup ||P d||``.
    """
    w = weight.detach().double().cpu()
    if w.ndim != 2 or w.shape[0] < 2:
        raise ValueError(f"weight has shape {tuple(w.shape)}; expected (K, m) with K >= 2 classes")
    diffs = (w[1:] - w[:1]).T  # (m, K-1): spans the same space as all pairwise differences
    u, s, _ = torch.linalg.svd(diffs, full_matrices=False)
    basis = u[:, s > rtol * max(float(s.max()), 1e-300)] if s.numel() else u[:, :0]
    return basis @ basis.T


def loss_bound_lse(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   delta: torch.Tensor) -> torch.Tensor:
    """``log sum_k exp(z_k - z_y + Delta ||w_k - w_y||_2)`` per sample: the log-sum-exp loss bound.

    Since ``z'_k - z'_y = z_k - z_y + (w_k - w_y)^T d <= z_k - z_y + ||w_k - w_y|| Delta`` for every
    shift with ``||d|| <= Delta``, and log-sum-exp is increasing in every argument, this bounds the
    cross-entropy at every ``x'`` in the ball. Never looser than :func:`loss_bound`. Delta (N,) or (E, N).
    """
    y = _check(features, labels, weight, bias).to(features.device)
    z = features.double() @ weight.double().T.to(features.device) + bias.double().to(features.device)
    gap = z - z.gather(1, y[:, None])  # (N, K): z_k - z_y (0 at k = y)
    spread = pairwise_weight_distances(weight).to(features.device)[y]  # (N, K): ||w_k - w_y|| (0 at k = y)
    d = check_delta(delta, z.shape[0], z.device)
    return torch.logsumexp(gap + d[..., None] * spread, dim=-1)
