"""Session-independent dashboard logic: defaults and overrides, the eps grid and its labels, the
plan of a request, uploads, and the exact 2-D toy of the theory page. No AppTest, no evaluation."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import rtcore
from app import backbones as bb
from app import plan, state, toy
from app.plan import ATTACK, CACHED, EXTRA, HEADLOSS, PROBE

# ---------------------------------------------------------------- eps: grid, labels, range

def test_eps_grid_labels_and_default() -> None:
    grid = state.eps_grid("linf")
    assert grid == rtcore.config.eps_grid("linf") and len(grid) == 6
    assert state.default_eps("linf") == grid[3] and state.eps_label(grid[3]) == "4/255 = 0.0157"
    assert state.eps_label(grid[2]) == "2/255 = 0.0078" and state.eps_label(8 / 255) == "8/255 = 0.0314"
    assert state.default_eps("l2") == 0.4 and state.eps_label(0.4, "l2") == "0.4"
    assert state.eps_short(grid[5]) == "16/255" and state.eps_short(0.05) == "0.05"
    assert state.eps_label(0.05) == "0.05 = 12.8/255"
    with pytest.raises(ValueError):
        state.eps_grid("l1")


def test_eps_options_snap_and_input() -> None:
    e = state.eps_from_input(3, "linf")
    assert e == rtcore.config.eps_key(3 / 255)
    assert state.eps_options("linf", [e]) == sorted([*state.eps_grid("linf"), e])
    assert state.snap_eps(0.03, state.eps_grid("linf")) == state.eps_grid("linf")[4]
    assert state.eps_from_input(0.3, "l2") == 0.3


@pytest.mark.parametrize(("value", "norm", "verdict"), [
    (3, "linf", "ok"), (8, "linf", "grid"), (40, "linf", "confirm"), (0, "linf", "error"), (300, "linf", "error"),
    (0.3, "l2", "ok"), (0.8, "l2", "grid"), (0.9, "l2", "ok"), (5, "l2", "error"),
])
def test_check_new_eps(value: float, norm: str, verdict: str) -> None:
    got, message = state.check_new_eps(state.eps_from_input(value, norm), norm)
    assert got == verdict and message


def test_l2_confirmation_above_three() -> None:
    assert state.SENSIBLE_MAX["l2"] == 3.0 and state.SENSIBLE_MAX["linf"] == rtcore.config.eps_key(32 / 255)


# ---------------------------------------------------------------- requests and their plan

def test_the_cursor_is_not_part_of_a_request() -> None:
    ref = bb.BackboneRef("x")
    a = plan.make_request([ref], ["a", "b"], "linf", 20, "fast", cache_dir="/tmp/c")
    assert not hasattr(a, "eps"), "moving the cursor can never change the request"
    assert a.eps_values == state.eps_grid("linf")
    b = plan.make_request([ref], ["a", "b"], "linf", 20, "fast", extras=[0.05, 8 / 255, 0.05], cache_dir="/tmp/c")
    assert b.extras == (0.05,), "grid values and duplicates are dropped"
    with pytest.raises(ValueError):
        plan.make_request([ref], [], "linf", 20, "fast")
    with pytest.raises(ValueError):
        plan.make_request([ref], ["a"], "l3", 20, "fast")
    with pytest.raises(ValueError):
        plan.make_request([ref], ["a"], "linf", 20, "fast", extras=[1.5])


def test_plan_draws_something_early_in_whole_groups() -> None:
    ref = bb.BackboneRef("x")
    req = plan.make_request([ref], ["a", "b"], "linf", 20, "fast", extras=[0.05], cache_dir="/tmp/c")
    steps = req.steps()
    g = state.eps_grid("linf")
    first = [(s.task, s.eps, s.full, s.kind) for s in steps[:4]]
    assert first == [("a", (0.0,), False, PROBE), ("a", (g[3],), False, ATTACK),
                     ("b", (0.0,), False, PROBE), ("b", (g[3],), False, ATTACK)], "clean, then 4/255, per task"
    assert [s.kind for s in steps[4:6]] == [EXTRA, EXTRA] and steps[4].eps == (0.05,)
    assert [s.eps for s in steps[6:8]] == [(g[1], g[2], g[4], g[5])] * 2 and not steps[6].full
    assert all(s.full for s in steps[8:]) and {s.kind for s in steps[8:]} == {CACHED, HEADLOSS}
    finals = [s for s in steps if s.final]
    assert [s.task for s in finals] == ["a", "b"] and finals[0].eps == req.eps_values
    groups = req.groups()
    assert groups == [(0.0,), (g[3],), (g[1], g[2], g[4], g[5]), (0.05,)]
    for s in steps:  # every step computes only whole groups
        assert set(s.eps) == set().union(*[set(gr) for gr in groups if set(gr) <= set(s.eps)])


# ---------------------------------------------------------------- defaults

def test_defaults_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (state.ENV_N, state.ENV_TASKS, state.ENV_ATTACK, state.ENV_BACKBONE, state.ENV_NORM):
        monkeypatch.delenv(var, raising=False)
    assert state.default_n() == 200 and state.default_attack() == "fast"
    assert state.default_tasks() == rtcore.list_tasks(offline_only=True)
    names = state.backbone_choices()
    expected = state.PREFERRED_BACKBONE if state.PREFERRED_BACKBONE in names else state.bundled_backbones()[0]
    assert state.default_backbone(names) == expected
    monkeypatch.setenv(state.ENV_N, "20")
    monkeypatch.setenv(state.ENV_TASKS, "shapes, nonsense")
    monkeypatch.setenv(state.ENV_ATTACK, "strong")
    assert state.default_n() == 20 and 20 in state.sample_size_options()
    assert state.default_tasks() == ["shapes"] and state.default_attack() == "strong"
    monkeypatch.setenv(state.ENV_N, "many")
    assert state.default_n() == 200
    for name in state.STRENGTHS:
        assert state.attack_summary(name)


# ---------------------------------------------------------------- uploads

def test_upload_refuses_pickles_and_non_safetensors(tmp_path: Path) -> None:
    pickled = pickle.dumps({"weight": [1.0, 2.0]})
    with pytest.raises(bb.UploadError, match="pickled"):
        bb.save_upload("model.pt", pickled, dest=tmp_path)
    with pytest.raises(bb.UploadError, match="not a safetensors file"):
        bb.save_upload("model.safetensors", pickled, dest=tmp_path)
    with pytest.raises(bb.UploadError, match="empty"):
        bb.save_upload("model.safetensors", b"", dest=tmp_path)
    with pytest.raises(bb.UploadError, match="limit"):
        bb.save_upload("model.safetensors", b"x" * 2048, dest=tmp_path, max_bytes=1024)
    assert not list(tmp_path.glob("*.safetensors")), "nothing refused is kept"


def test_upload_accepts_safetensors_and_a_wrong_architecture_is_a_checkpoint_error(tmp_path: Path) -> None:
    src = tmp_path / "src.safetensors"
    save_file({"not_a_resnet.weight": torch.zeros(3, 3)}, str(src))
    path = bb.save_upload("mine.safetensors", src.read_bytes(), dest=tmp_path / "up")
    assert path.is_file() and path.suffix == ".safetensors"
    assert bb.save_upload("mine.safetensors", src.read_bytes(), dest=tmp_path / "up") == path, "content-addressed"
    ref = bb.upload_ref("timm:resnet18", path, "mine.safetensors")
    assert ref.name == "timm:resnet18" and ref.weights == str(path)
    with pytest.raises(rtcore.CheckpointError):
        bb.load_backbone(ref, device="cpu")
    with pytest.raises(ValueError, match="no architecture"):
        bb.upload_ref("not-a-timm-model", path, "mine.safetensors")


# ---------------------------------------------------------------- the exact 2-D toy

@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_toy_delta_is_exact(norm: str) -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        A = rng.normal(size=(2, 2))
        eps = 0.3
        delta, u = toy.exact_delta(A, eps, norm)
        # independent check: dense sampling of the ball's boundary (linf: its corners are the maximisers)
        if norm == "linf":
            pts = eps * np.array(list(itertools.product([-1, 1], repeat=2)), dtype=float)
        else:
            t = np.linspace(0, 2 * np.pi, 20001)
            pts = eps * np.stack([np.cos(t), np.sin(t)], 1)
        brute = np.linalg.norm(pts @ A.T, axis=1).max()
        assert delta == pytest.approx(brute, rel=1e-6)
        assert np.linalg.norm(A @ u) == pytest.approx(delta, rel=1e-9)
        assert np.abs(u).max() <= eps + 1e-12 if norm == "linf" else np.linalg.norm(u) <= eps + 1e-12


def test_linear_toy_criterion_is_sound() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        a = rng.normal(size=4)
        tm = toy.linear_toy(*a, *rng.uniform(0, 1, 2), float(rng.uniform(0, 0.5)), str(rng.choice(["linf", "l2"])),
                            float(rng.uniform(-180, 180)), float(rng.normal()))
        if tm.certified:
            assert tm.robust, "rho > Delta implies exact robustness"
        # the exact answer agrees with the worst point of the ball: its corners (linf) or a dense circle (l2)
        if tm.norm == "linf":
            pts = tm.x + tm.eps * np.array(list(itertools.product([-1, 1], repeat=2)), dtype=float)
        else:
            t = np.linspace(0, 2 * np.pi, 100001)
            pts = tm.x + tm.eps * np.stack([np.cos(t), np.sin(t)], 1)
        worst = float((pts @ tm.A.T @ tm.w + tm.b).min())
        if abs(worst) > 1e-6:
            assert tm.robust == (worst > 0)
