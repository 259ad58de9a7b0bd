"""The 'autoattack' strength: AutoAttack (pyautoattack) as the end-to-end search, exact on linear models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import rtcore
from rtcore.attacks import AUTOATTACK_VERSIONS, PRESETS, STRENGTHS, AttackUnavailableError, describe, create_strength
from rtcore.attacks import autoattack as aa_mod
from rtcore.attacks import end_to_end as e2e_mod

pytest.importorskip("pyautoattack")

EPS = [0.0, 0.05, 0.1, 0.2]


def test_one_list_of_strengths() -> None:
    assert STRENGTHS == tuple(PRESETS) == ("fast", "standard", "strong", "autoattack")
    assert rtcore.STRENGTHS is STRENGTHS
    aa = create_strength("autoattack")
    assert aa.autoattack == "custom" and AUTOATTACK_VERSIONS["custom"] == ("apgd-ce", "apgd-t")
    assert aa.key() != PRESETS["strong"].key() and aa.key()["autoattack"] == "custom"
    assert "AutoAttack" in describe("autoattack") and "APGD-T" in describe("autoattack")
    assert "PGD steps" in describe("fast")
    with pytest.raises(ValueError, match="autoattack='nope'"):
        rtcore.AttackSettings(autoattack="nope")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_autoattack_reaches_the_exact_robust_accuracy(linear_case, norm: str) -> None:
    res = rtcore.attack(linear_case.model, linear_case.x, linear_case.y, EPS, norm=norm, settings="autoattack")
    for i, eps in enumerate(EPS):
        exact = linear_case.exact_robust(eps, norm)
        assert torch.equal(res.robust[i], exact), f"{norm} eps={eps}: {int((res.robust[i] != exact).sum())} mismatches"


def test_autoattack_on_a_small_cnn_with_three_classes() -> None:
    """K = 3: APGD-T (targeted DLR needs 4 logits) is left out; points verified, robust recomputed, monotone."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 64, 3)).eval()
    x = torch.rand(24, 1, 8, 8)
    y = net(x).argmax(1)
    assert aa_mod.attacks_for("custom", 3) == ["apgd-ce"]
    seen: list[float] = []
    eps = [0.1, 0.02]
    res = rtcore.attack(net, x, y, eps, settings="autoattack", progress=seen.append)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    for i, e in enumerate(eps):
        assert float((res.x_adv[i] - x).abs().amax()) <= e + 1e-6
        assert float(res.x_adv[i].min()) >= 0 and float(res.x_adv[i].max()) <= 1
        with torch.no_grad():
            assert torch.equal(res.robust[i], (net(res.x_adv[i]).argmax(1) == y) & res.clean_correct)
    assert bool((res.robust[0] <= res.robust[1]).all()), "robust accuracy is non-increasing in eps"
    assert not res.robust[0].all(), "a random CNN is not robust at eps 0.1"


def test_missing_pyautoattack_is_a_clear_error(linear_case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aa_mod, "autoattack_available", lambda: False)
    with pytest.raises(AttackUnavailableError, match="pip install pyautoattack"):
        rtcore.attack(linear_case.model, linear_case.x, linear_case.y, 0.1, settings="autoattack")


def test_pipeline_autoattack_is_cached_under_its_own_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import LinearCase
    from tests.unit.test_pipeline import _linear_task

    linear_case = LinearCase(0)
    task = _linear_task(linear_case)
    kw = dict(n=32, attack="autoattack", head_attack=False, loss_attack=False, cache_dir=str(tmp_path))
    ev = rtcore.run_evaluation(linear_case.backbone, task, [0.0, 0.1], "linf", **kw)
    assert set(ev.summary["attack"]) == {"autoattack"}
    assert (ev.summary["robust_acc"] <= ev.summary["clean_acc"]).all()

    def boom(*a: object, **k: object) -> torch.Tensor:
        raise AssertionError("a second run must come from the cache")

    monkeypatch.setattr(e2e_mod, "autoattack_search", boom)
    again = rtcore.run_evaluation(linear_case.backbone, task, [0.0, 0.1], "linf", **kw)
    assert again.summary["robust_acc"].tolist() == ev.summary["robust_acc"].tolist()
    assert any(p.name.startswith("autoattack-") for p in tmp_path.rglob("*")), "its own cache kind"
    with pytest.raises(AssertionError, match="cache"):  # a new eps is computed, by AutoAttack
        rtcore.run_evaluation(linear_case.backbone, task, [0.05], "linf", **kw)
