"""The strengths registry: register / list / info / create, and the live PRESETS / STRENGTHS views."""

from __future__ import annotations

import pytest

import rtcore
from rtcore.attacks import (
    PRESETS,
    STRENGTHS,
    AttackSettings,
    create_strength,
    describe,
    list_strengths,
    register_strength,
    strength_info,
)
from rtcore.attacks import settings as settings_mod


def test_the_built_in_strengths_weakest_first() -> None:
    assert list_strengths()[:4] == ["fast", "standard", "strong", "autoattack"]
    assert tuple(STRENGTHS) == tuple(PRESETS) == tuple(list_strengths())
    info = strength_info("strong")
    assert info.name == "strong" and info.settings is PRESETS["strong"] and info.description == describe("strong")
    assert rtcore.resolve_settings is create_strength  # the older name, kept in rtcore only
    assert create_strength() == PRESETS["standard"], "no name: the standard strength"


def test_create_applies_overrides_and_refuses_unknown_names_and_fields() -> None:
    s = create_strength("fast", steps=20, restarts=None)
    assert s.steps == 20 and s.restarts == PRESETS["fast"].restarts, "None overrides are ignored"
    assert create_strength(s) is s
    with pytest.raises(ValueError, match="unknown attack strength 'brutal'.*fast, standard"):
        create_strength("brutal")
    with pytest.raises(ValueError, match="unknown attack setting.*stepz"):
        create_strength("fast", stepz=3)
    with pytest.raises(ValueError, match="plan='greedy'"):
        AttackSettings(plan="greedy")
    with pytest.raises(ValueError, match="e2e_steps=0"):
        AttackSettings(e2e_steps=0)
    with pytest.raises(TypeError, match="losses='ce' must be a tuple"):
        AttackSettings(losses="ce")  # type: ignore[arg-type]


def test_a_registered_strength_shows_up_everywhere_and_keys_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_mod, "_REGISTRY", settings_mod.Registry("attack strength"))
    for name in ("fast", "standard"):
        register_strength(name, AttackSettings(steps=3 if name == "fast" else 5))
    mine = AttackSettings(steps=7, targets=2, plan="adaptive", e2e_steps=40)
    register_strength("mine", mine, description="seven steps")
    assert list(STRENGTHS) == ["fast", "standard", "mine"] and "mine" in PRESETS and PRESETS["mine"] is mine
    assert strength_info("mine").description == "seven steps"
    assert STRENGTHS == ("fast", "standard", "mine") and len(STRENGTHS) == 3 and STRENGTHS[-1] == "mine"
    with pytest.raises(ValueError, match="already registered"):
        register_strength("mine", mine)
    register_strength("mine", AttackSettings(steps=8), overwrite=True)
    assert PRESETS["mine"].steps == 8
    with pytest.raises(KeyError):
        PRESETS["nope"]
    with pytest.raises(TypeError, match="must be an AttackSettings"):
        register_strength("bad", {"steps": 3})  # type: ignore[arg-type]
    assert mine.key()["plan"] == "adaptive" and mine.key()["e2e_steps"] == 40
    assert "plan" not in AttackSettings().key() and "e2e_steps" not in AttackSettings().key()


def test_top_level_names_are_the_same_objects() -> None:
    assert rtcore.STRENGTHS is STRENGTHS and rtcore.PRESETS is PRESETS
    assert "adaptive" in describe("strong") and "40-step CE screen" in describe("standard")


@pytest.mark.parametrize("settings", [None, "standard", "strong", "fast"])
def test_attack_steps_set_the_length_of_every_run(settings: str | None) -> None:
    """``rtcore.attack(..., steps=N)`` runs N steps whatever the strength (its own e2e_steps included)."""
    import torch

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(4, dtype=torch.long)
    res = rtcore.attack(model, x, y, 0.01, steps=3, settings=settings)
    assert res.settings.end_to_end_steps == 3 and res.settings.steps == 3


@pytest.mark.parametrize(("field", "value", "words"), [("steps", 10.5, "must be a whole number"),
                                                       ("batch_size", 1.5, "must be a whole number"),
                                                       ("targets", True, "must be a whole number"),
                                                       ("e2e_steps", 2.0, "must be a whole number"),
                                                       ("fuse", "no", "must be true or false"),
                                                       ("step_max", "1", "must be a number")])
def test_settings_of_the_wrong_type_are_refused_naming_the_field(field: str, value: object, words: str) -> None:
    with pytest.raises(ValueError, match=f"{field}={value!r} {words}"):
        rtcore.AttackSettings(**{field: value})
