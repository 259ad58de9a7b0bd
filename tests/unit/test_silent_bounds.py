"""Every head, Delta and feature entering rtcore.bounds is a finite float, or a ValueError naming it and the
fix: never a bound of 0 (all False) or NaN from a NaN/inf head, a string Delta or an integer array."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import rtcore
from rtcore import bounds as Bd


def _head(seed: int = 0, n: int = 20, m: int = 5, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    f, W, b = torch.randn(n, m, generator=g), torch.randn(k, m, generator=g), torch.randn(k, generator=g)
    y = (f @ W.T + b).argmax(1)
    return f, y, W, b, torch.full((n,), 0.01)


#: every public function of rtcore.bounds that takes a head, as f(features, labels, weight, bias, delta)
WITH_HEAD: dict[str, Callable[..., object]] = {
    "margins": lambda f, y, W, b, d: Bd.margins(f, y, W, b),
    "bound_criterion": Bd.bound_criterion,
    "robust_accuracy_bound": Bd.robust_accuracy_bound,
    "loss_bound": Bd.loss_bound,
    "loss_bound_per_class_false": lambda f, y, W, b, d: Bd.loss_bound(f, y, W, b, d, per_class=False),
    "loss_bound_lse": Bd.loss_bound_lse,
    "pairwise_weight_distances": lambda f, y, W, b, d: Bd.pairwise_weight_distances(W),
    "class_weight_spread": lambda f, y, W, b, d: Bd.class_weight_spread(W),
    "weight_diameter": lambda f, y, W, b, d: Bd.weight_diameter(W),
    "head_projector": lambda f, y, W, b, d: Bd.head_projector(W),
    "loss_gap_factor": lambda f, y, W, b, d: Bd.loss_gap_factor(W, torch.zeros(f.shape[0], W.shape[0]), y),
}
WITH_BIAS = ["margins", "bound_criterion", "robust_accuracy_bound", "loss_bound", "loss_bound_per_class_false",
             "loss_bound_lse"]
WITH_DELTA = ["bound_criterion", "robust_accuracy_bound", "loss_bound", "loss_bound_per_class_false",
              "loss_bound_lse"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("fn", list(WITH_HEAD))
def test_a_non_finite_weight_is_refused_by_every_function(fn: str, value: float) -> None:
    f, y, W, b, d = _head()
    W[1, 2] = value
    with pytest.raises(ValueError, match=r"weight contains NaN or inf \(1 of 20 entries\).*refit"):
        WITH_HEAD[fn](f, y, W, b, d)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("fn", WITH_BIAS)
def test_a_non_finite_bias_is_refused(fn: str, value: float) -> None:
    f, y, W, b, d = _head()
    b[0] = value
    with pytest.raises(ValueError, match=r"bias contains NaN or inf"):
        WITH_HEAD[fn](f, y, W, b, d)


@pytest.mark.parametrize("fn", WITH_DELTA)
@pytest.mark.parametrize("delta, words", [
    ("0.1", r"delta is a str \('0.1'\); give numbers"),
    (b"0.1", "delta is a bytes"),
    (None, "delta is a NoneType"),
    (True, "delta is a bool"),
    ({"a": 1}, "delta is a dict"),
    (torch.zeros(20, dtype=torch.int64), "delta has dtype torch.int64; it must hold floats"),
    (torch.zeros(20, dtype=torch.bool), "delta has dtype torch.bool.*bools"),
    (np.zeros(20, dtype=np.int32), "delta is a numpy array of dtype int32"),
    (torch.full((20,), float("nan")), r"delta contains NaN or inf \(20 of 20"),
    ([0.1] * 19 + [float("inf")], "delta contains NaN or inf"),
    (-torch.ones(20), "non-negative"),
    (torch.zeros(3), "delta has shape"),
])
def test_a_bad_delta_is_refused_naming_the_type_and_the_fix(fn: str, delta: object, words: str) -> None:
    f, y, W, b, _ = _head()
    with pytest.raises(ValueError, match=words):
        WITH_HEAD[fn](f, y, W, b, delta)


@pytest.mark.parametrize("arg, bad, words", [
    ("weight", "W", "weight is a str"),
    ("weight", torch.ones(4, 5, dtype=torch.int32), "weight has dtype torch.int32"),
    ("weight", np.ones((4, 5), dtype=np.int64), "weight is a numpy array of dtype int64"),
    ("weight", torch.ones(4, 5, dtype=torch.complex64), "weight has dtype torch.complex64"),
    ("bias", torch.zeros(4, dtype=torch.int64), "bias has dtype torch.int64"),
    ("features", torch.zeros(20, 5, dtype=torch.uint8), "features has dtype torch.uint8"),
    ("features", object(), "features is a object"),
    ("labels", np.zeros(20, dtype=np.float32), "labels is a numpy array of dtype float32"),
    ("labels", torch.zeros(20), "labels has dtype torch.float32"),
])
def test_other_arguments_of_the_wrong_kind_are_refused(arg: str, bad: object, words: str) -> None:
    f, y, W, b, d = _head()
    kw = {"features": f, "labels": y, "weight": W, "bias": b, "delta": d, arg: bad}
    with pytest.raises(ValueError, match=words):
        Bd.bound_criterion(**kw)  # type: ignore[arg-type]


def test_numpy_arrays_and_lists_are_accepted_with_the_same_answers() -> None:
    f, y, W, b, d = _head()
    ref = Bd.loss_bound_lse(f, y, W, b, d)
    got = Bd.loss_bound_lse(f.numpy(), y.numpy(), W.numpy(), b.numpy(), d.numpy())
    assert torch.equal(got, ref)
    assert torch.equal(Bd.bound_criterion(f, y, W.tolist(), b.tolist(), 0.01), Bd.bound_criterion(f, y, W, b, d))
    assert torch.equal(Bd.consistent_delta(d.numpy(), d.numpy() * 2), d.double() * 2)
    assert Bd.consistent_delta(d, d * 2).dtype == torch.float32, "the first argument's dtype is kept"


@pytest.mark.parametrize("args, words", [
    ((torch.tensor([1.0, float("nan")]),), r"delta_feature contains NaN"),
    ((torch.ones(2), torch.tensor([float("inf"), 0.0])), r"shifts\[0\] contains NaN or inf"),
    (("1",), "delta_feature is a str"),
    ((torch.ones(2), -torch.ones(2)), r"shifts\[0\] has negative values"),
])
def test_consistent_delta_checks_every_argument(args: tuple[object, ...], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Bd.consistent_delta(*args)


def test_cross_entropy_checks_its_logits() -> None:
    with pytest.raises(ValueError, match="logits contains NaN or inf"):
        Bd.cross_entropy(torch.tensor([[0.0, float("nan")]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="label 2 is out of range for logits of 2 classes"):
        Bd.cross_entropy(torch.zeros(1, 2), torch.tensor([2]))


def test_a_non_finite_head_no_longer_returns_a_bound_of_zero() -> None:
    """Before: bound_criterion with a NaN head returned all False (bound 0) and loss_bound NaN, with no error."""
    f, y, W, b, d = _head()
    W[0, 0] = float("nan")
    for fn in (rtcore.bound_criterion, rtcore.loss_bound, rtcore.robust_accuracy_bound):
        with pytest.raises(ValueError, match="weight contains NaN"):
            fn(f, y, W, b, d)
