"""Reduced precision for the attacks' search: a spec field that enters the digest and the cache keys (never mixed
with float32 results), with every reported number recomputed in float32 and every relation holding."""

from __future__ import annotations

from pathlib import Path

import pytest

import rtcore
from rtcore.runs import EvalSpec

BASE = dict(backbone="fmnist-cnn-pgd-linf-0.1", tasks=("shapes",), eps=("2/255", "8/255"), n=24, attack="fast")


def test_precision_is_part_of_what_a_number_means() -> None:
    f32, bf16 = EvalSpec(**BASE), EvalSpec(**BASE, precision="bfloat16")
    assert f32.digest() != bf16.digest()
    assert "precision" not in f32.settings().key() and bf16.settings().key()["precision"] == "bfloat16"
    with pytest.raises(ValueError, match="write precision = 'float16' at the top"):
        EvalSpec(**{**BASE, "attack": rtcore.AttackSettings(steps=3, precision="float16")})
    with pytest.raises(ValueError, match="precision='half' is unknown"):
        EvalSpec(**BASE, precision="half")


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_a_reduced_precision_search_reports_float32_numbers(precision: str, tmp_path: Path) -> None:
    ev = rtcore.run_evaluation(BASE["backbone"], list(BASE["tasks"]), list(BASE["eps"]), n=BASE["n"],
                               attack="fast", precision=precision, cache_dir=str(tmp_path))
    s = ev.summary
    assert (s["bound"] <= s["bound_head"] + 1e-12).all() and (s["bound_head"] <= s["robust_acc"] + 1e-12).all()
    assert (s["robust_acc"] <= s["clean_acc"]).all() and (s["clean_loss"] <= s["adv_loss"] + 1e-9).all()
    assert ev.samples["delta"].dtype.kind == "f" and (ev.samples["delta"] >= 0).all()
    full = rtcore.run_evaluation(BASE["backbone"], list(BASE["tasks"]), list(BASE["eps"]), n=BASE["n"],
                                 attack="fast", cache_dir=str(tmp_path)).summary
    assert (full["clean_acc"] == s["clean_acc"]).all()  # the probe and the clean pass are float32 either way
    assert abs(full["mean_delta"] - s["mean_delta"]).max() < 0.25 * full["mean_delta"].max()
