"""The criterion and loss bound of Nern et al. (NeurIPS 2023), as pure functions.

``rho_k(x) = ((w_y - w_k)^T g(x) + b_y - b_k) / ||w_y - w_k||_2``, ``rho(x) = min_{k != y} rho_k(x)``.
If ``rho(x) > Delta(x; eps)`` the linear head's prediction at x cannot change inside the
eps-ball (Cauchy-Schwarz). With an attack estimate of Delta this is a prediction; only with
a sound upper bound on Delta is it a certificate.

Every public function checks its inputs with one rule, :func:`as_float_tensor`: finite floats
(torch tensors, numpy arrays, Python numbers and lists), so a NaN or inf in a head, a Delta or
features, an integer head, a string Delta or an array of the wrong kind is a ValueError that
names the argument and the fix, never a bound of 0 or NaN.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from .validation import check_labels

__all__ = ["as_float_tensor", "bound_criterion", "check_delta", "check_head", "class_weight_spread",
           "consistent_delta", "cross_entropy", "head_projector", "loss_bound", "loss_bound_lse", "loss_gap_factor",
           "margins", "pairwise_weight_distances", "robust_accuracy_bound", "weight_diameter"]


def as_float_tensor(value: object, name: str, *, keep_dtype: bool = False) -> torch.Tensor:
    """The one input rule of this module: ``value`` as a finite floating tensor (float64 unless ``keep_dtype``).

    Accepted: a floating torch tensor, a floating numpy array (converted), a Python number or a (nested)
    list/tuple of numbers. Refused with ValueError naming ``name``, what it is and the fix: strings, bools,
    other types, integer/bool/complex tensors and arrays (an integer head or Delta is a mix-up, not a
    value to cast), and NaN or inf anywhere.
    """
    if isinstance(value, torch.Tensor):
        t = value
    elif isinstance(value, np.ndarray) or isinstance(value, np.generic):
        if not (np.issubdtype(value.dtype, np.floating)):
            raise ValueError(f"{name} is a numpy array of dtype {value.dtype}; give floats "
                             f"(e.g. {name}.astype(np.float64))")
        t = torch.from_numpy(np.ascontiguousarray(value))
    elif isinstance(value, (str, bytes)):
        raise ValueError(f"{name} is a {type(value).__name__} ({value[:40]!r}); give numbers: a float tensor or "
                         f"array (e.g. torch.tensor([...], dtype=torch.float64))")
    elif _numbers(value):
        t = torch.tensor(value, dtype=torch.float64)
    else:
        raise ValueError(f"{name} is a {type(value).__name__}; give a float torch.Tensor, a float numpy array or "
                         f"a list of numbers")
    if not t.is_floating_point():
        raise ValueError(f"{name} has dtype {t.dtype}; it must hold floats ({name}.double()), not "
                         f"{'bools' if t.dtype == torch.bool else 'integers or complex numbers'}")
    t = t.detach()
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"{name} contains NaN or inf ({int(bad.sum())} of {t.numel()} entries); "
                         f"{_FIX.get(name, 'every value must be a finite number')}")
    return t if keep_dtype else t.double()


_FIX = {"weight": "the head's training diverged or its file is corrupt: refit or reload the head",
        "bias": "the head's training diverged or its file is corrupt: refit or reload the head",
        "features": "check the backbone and its weights",
        "delta": "Delta(x; eps) is a finite norm ||g(x') - g(x)||_2 >= 0"}


def _numbers(value: object) -> bool:
    """A Python number (not a bool) or a non-empty nested list/tuple of them."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_numbers(v) for v in value)


def _labels(labels: object, n: int) -> torch.Tensor:
    if isinstance(labels, np.ndarray):
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels is a numpy array of dtype {labels.dtype}; labels are integer class indices")
        labels = torch.from_numpy(np.ascontiguousarray(labels))
    return check_labels(labels, n, "labels")  # type: ignore[arg-type]


def check_head(weight: object, bias: object | None = None, m: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear head as float64 tensors: weight (K, m) with K >= 1 and bias (K,) (zeros when None), finite."""
    w = as_float_tensor(weight, "weight")
    if w.ndim != 2 or w.shape[0] < 1 or (m is not None and w.shape[1] != m):
        want = f"(K, {m}) for features of dimension {m}" if m is not None else "(K, m)"
        raise ValueError(f"weight has shape {tuple(w.shape)}; expected {want}")
    b = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device) if bias is None else as_float_tensor(bias, "bias")
    if b.shape != (w.shape[0],):
        raise ValueError(f"bias has shape {tuple(b.shape)}; expected ({w.shape[0]},)")
    return w, b


def _check(features: object, labels: object, weight: object,
           bias: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (N, m), labels (N,) in 0..K-1 and the head, as float64 / long tensors on the features' device."""
    f = as_float_tensor(features, "features")
    if f.ndim != 2:
        raise ValueError(f"features must have shape (N, m), got {tuple(f.shape)}; the backbone must return a vector "
                         f"per image")
    y = _labels(labels, f.shape[0])
    w, b = check_head(weight, bias, f.shape[1])
    if f.shape[0] and int(y.max()) >= w.shape[0]:
        raise ValueError(f"label {int(y.max())} is out of range for a head with {w.shape[0]} classes")
    return f, y.to(f.device), w.to(f.device), b.to(f.device)


def pairwise_weight_distances(weight: torch.Tensor) -> torch.Tensor:
    """``D[j, k] = ||w_j - w_k||_2`` (K, K), computed as differences (no cancellation)."""
    w, _ = check_head(weight)
    return (w[:, None, :] - w[None, :, :]).norm(dim=2)


def margins(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``rho(x)`` per sample (N,): the feature-space distance to the nearest pairwise boundary.

    Negative or zero for misclassified points (ties count as misclassified). Where
    ``w_y = w_k`` the pair never flips if ``b_y > b_k`` (+inf) and always ties or loses otherwise.
    """
    f, y, w, b = _check(features, labels, weight, bias)
    z = f @ w.T + b
    gap = z.gather(1, y[:, None]) - z  # (N, K): logit_y - logit_k
    dist = pairwise_weight_distances(w)[y]  # (N, K): ||w_y - w_k||
    rho_k = torch.where(dist > 0, gap / dist.clamp_min(1e-300),
                        torch.where(gap > 0, torch.inf, torch.where(gap < 0, -torch.inf, 0.0)))
    rho_k = rho_k.scatter(1, y[:, None], torch.inf)
    return rho_k.amin(dim=1)


def check_delta(delta: object, n: int | None = None, device: torch.device | None = None, *,
                name: str = "delta", keep_dtype: bool = False) -> torch.Tensor:
    """Delta as float64 (or its own float dtype with ``keep_dtype``) of shape (), (N,) or (E, N); see
    :func:`as_float_tensor` for the accepted types; negative, NaN or infinite values are refused."""
    d = as_float_tensor(delta, name, keep_dtype=keep_dtype)
    d = d if device is None else d.to(device)
    if n is not None and d.ndim != 0 and d.shape[-1] != n:
        raise ValueError(f"{name} has shape {tuple(d.shape)}; expected (), ({n},) or (E, {n})")
    if bool((d < 0).any()):
        raise ValueError(f"{name} has negative values (min {float(d.min()):.4g}); Delta(x; eps) is a norm and must be "
                         f"non-negative")
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
    z = as_float_tensor(logits, "logits")
    if z.ndim != 2:
        raise ValueError(f"logits have shape {tuple(z.shape)}; expected (N, K)")
    y = _labels(labels, z.shape[0])
    if z.shape[0] and int(y.max()) >= z.shape[1]:
        raise ValueError(f"label {int(y.max())} is out of range for logits of {z.shape[1]} classes")
    return F.cross_entropy(z, y.to(z.device), reduction="none")


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
    f, y, w, b = _check(features, labels, weight, bias)
    clean = cross_entropy(f @ w.T + b, y)
    spread = class_weight_spread(w)[y] if per_class else torch.tensor(weight_diameter(w), device=f.device)
    return clean + spread * check_delta(delta, clean.shape[0], clean.device)


def loss_gap_factor(weight: torch.Tensor, logits_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``||W^T (p' - e_y)||_2`` per sample: the tightest factor of the loss bound chain."""
    w, _ = check_head(weight)
    z = as_float_tensor(logits_adv, "logits_adv")
    if z.ndim != 2 or z.shape[1] != w.shape[0]:
        raise ValueError(f"logits_adv have shape {tuple(z.shape)}; expected (N, {w.shape[0]}) for a head of "
                         f"{w.shape[0]} classes")
    y = _labels(labels, z.shape[0])
    p = z.softmax(dim=1) - F.one_hot(y.to(z.device), z.shape[1]).double()
    return (p @ w.to(p.device)).norm(dim=1)


def consistent_delta(delta_feature: torch.Tensor, *shifts: torch.Tensor) -> torch.Tensor:
    """``Delta <- max(Delta_feature, ||g(x'_other) - g(x)||, ...)``: any attack's larger shift wins.

    Every argument is checked like ``delta`` (:func:`check_delta`); the result has the first one's dtype."""
    out = check_delta(delta_feature, name="delta_feature", keep_dtype=True).clone()
    for i, s in enumerate(shifts):
        out = torch.maximum(out, check_delta(s, name=f"shifts[{i}]").to(dtype=out.dtype, device=out.device))
    return out


def head_projector(weight: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """``P`` (m, m), float64: the orthogonal projection onto ``span{w_j - w_k}`` (rank at most K - 1).

    Every pairwise margin only sees ``P d`` of a feature shift d, since
    ``(w_y - w_k)^T d = (w_y - w_k)^T P d``; so the criterion holds with ``Delta_P = sup ||P d||``.
    """
    w = check_head(weight)[0].cpu()
    if w.shape[0] < 2:
        raise ValueError(f"weight has shape {tuple(w.shape)}; expected (K, m) with K >= 2 classes")
    diffs = (w[1:] - w[:1]).T  # (m, K-1): spans the same space as all pairwise differences
    u, s, _ = torch.linalg.svd(diffs, full_matrices=False)
    basis = u[:, s > rtol * max(float(s.max()), 1e-300)] if s.numel() else u[:, :0]
    return basis @ basis.T


def projector_basis(P: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis ``U`` (m, r) of the range of an orthogonal projection ``P = U U^T``, so that
    ``||P d|| = ||U^T d||`` (r <= K - 1 numbers per shift instead of m)."""
    evals, evecs = torch.linalg.eigh(P.double())
    return evecs[:, evals > 0.5]


def loss_bound_lse(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   delta: torch.Tensor) -> torch.Tensor:
    """``log sum_k exp(z_k - z_y + Delta ||w_k - w_y||_2)`` per sample: the log-sum-exp loss bound.

    Since ``z'_k - z'_y = z_k - z_y + (w_k - w_y)^T d <= z_k - z_y + ||w_k - w_y|| Delta`` for every
    shift with ``||d|| <= Delta``, and log-sum-exp is increasing in every argument, this bounds the
    cross-entropy at every ``x'`` in the ball. Never looser than :func:`loss_bound`. Delta (N,) or (E, N).
    """
    f, y, w, b = _check(features, labels, weight, bias)
    z = f @ w.T + b
    gap = z - z.gather(1, y[:, None])  # (N, K): z_k - z_y (0 at k = y)
    spread = pairwise_weight_distances(w)[y]  # (N, K): ||w_k - w_y|| (0 at k = y)
    d = check_delta(delta, z.shape[0], z.device)
    return torch.logsumexp(gap + d[..., None] * spread, dim=-1)
