"""Sanity checks: sub-seeds valid for every seed and distinct for distinct seeds; the subset size is checked
before any attack runs. (Deriving sub-seeds by hashing changed which subset the checks use; the flags are
not cached.)"""

from __future__ import annotations

import pytest
import torch

from rtcore._seeds import MASK63 as _MASK63
from rtcore._seeds import mix63 as _mix63
from rtcore.sanity import check_sanity_subset, derive_seed, sanity_checks, subset_indices
from tests.conftest import LinearCase

MAX = 2**63 - 1
HUGE = [2**62, 2**62 + 1, 2**32, 2**32 + 1, 3 * 10**15, MAX - 1, MAX]


def _unmix63(x: int) -> int:
    """The inverse of the 63-bit mix, written independently: undo each step in reverse order."""
    def unxorshift(v: int, k: int) -> int:
        out = v
        for _ in range(63 // k + 1):
            out = v ^ (out >> k)
        return out & _MASK63

    x = unxorshift(x, 32)
    x = (x * pow(0x14057B7EF767814F, -1, 1 << 63)) & _MASK63
    x = unxorshift(x, 29)
    x = (x * pow(0x5851F42D4C957F2D, -1, 1 << 63)) & _MASK63
    return unxorshift(x, 31)


def test_the_mix_is_a_bijection_of_the_63_bit_range() -> None:
    g = torch.Generator().manual_seed(0)
    samples = [0, 1, MAX, 2**62, *(int(v) & _MASK63 for v in torch.randint(0, 2**62, (200,), generator=g))]
    for v in samples:
        out = _mix63(v)
        assert 0 <= out <= MAX and _unmix63(out) == v


def test_sub_seeds_are_valid_and_distinct_for_huge_seeds() -> None:
    seeds = [0, 1, *HUGE]
    for purpose in ("subset", "more_steps", "noise@0.1"):
        subs = [derive_seed(s, purpose) for s in seeds]
        assert all(0 <= v <= MAX for v in subs) and len(set(subs)) == len(seeds)
    assert derive_seed(5, "subset") != derive_seed(5, "more_steps")
    for bad in (-1, 2**63, 1.5, "3", True):
        with pytest.raises(ValueError, match="seed"):
            derive_seed(bad, "subset")  # type: ignore[arg-type]


def test_seeds_equal_mod_2_to_the_32_pick_different_subsets() -> None:
    """Before: torch's generator kept 32 bits, so 2**62 picked seed 0's points (and 2.3e15 overflowed)."""
    subsets = {s: tuple(subset_indices(1000, 32, s).tolist()) for s in [0, 2**32, 2**62, MAX, 3 * 10**15]}
    assert len(set(subsets.values())) == len(subsets)
    for sub in subsets.values():
        assert len(sub) == 32 and list(sub) == sorted(set(sub)) and 0 <= min(sub) and max(sub) < 1000
    assert subset_indices(1000, 32, 7).tolist() == subset_indices(1000, 32, 7).tolist()
    assert subset_indices(10, 32, 7).tolist() == list(range(10))


@pytest.mark.parametrize("bad, words", [(0, "sanity_subset=0"), (-3, "sanity_subset=-3"), (2.5, "float"),
                                        ("8", "str"), (True, "bool"), (None, "NoneType")])
def test_sanity_subset_must_be_a_positive_integer(bad: object, words: str) -> None:
    with pytest.raises(ValueError, match=rf"{words}.*must be a positive integer"):
        check_sanity_subset(bad)


@pytest.fixture(scope="module")
def case() -> LinearCase:
    return LinearCase(0, d=8, m=4, n=32, k=4)


@pytest.mark.parametrize("kw, words", [({"n_subset": 0}, "sanity_subset=0"), ({"n_subset": -3}, "sanity_subset=-3"),
                                       ({"seed": 2**63}, "seed"), ({"noise_draws": 0}, "noise_draws"),
                                       ({"square_queries": -1}, "square_queries"),
                                       ({"drop_threshold": 2.0}, "drop_threshold")])
def test_bad_arguments_are_refused_before_any_attack(case: LinearCase, monkeypatch: pytest.MonkeyPatch,
                                                      kw: dict[str, object], words: str) -> None:
    import rtcore.sanity as S

    def never(*a: object, **k: object) -> None:
        raise AssertionError("an attack ran before the arguments were checked")

    monkeypatch.setattr(S, "run_attack", never)
    monkeypatch.setattr(S, "batched", never)
    flags = {0.1: torch.ones(32, dtype=torch.bool)}
    with pytest.raises(ValueError, match=words):
        sanity_checks(case.model, case.x, case.y, [0.1], "linf", flags, "fast", **kw)  # type: ignore[arg-type]


def test_the_largest_seed_runs_through(case: LinearCase) -> None:
    import rtcore

    res = rtcore.attack(case.model, case.x, case.y, [0.1], settings="fast")
    flags = sanity_checks(case.model, case.x, case.y, [0.1], "linf", {0.1: res.robust[0]}, "fast", seed=MAX,
                          n_subset=16, noise_draws=1, square_queries=20)
    assert [f.name for f in flags] == ["monotone_large_eps", "noise_weaker", "more_steps", "gradient_free"]
