"""The Streamlit dashboard: every page runs (AppTest), the landing page reacts to eps, bad input
gives messages instead of tracebacks, and the session-independent logic in rtcore.dashboard.

Small on purpose (n=20, one task, the fast attack, a private cache): the file runs in well under
a minute on 2 CPU cores once the first evaluation is cached.
"""

from __future__ import annotations

import base64
import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

import rtcore
from app import backbones as bb, exports, jobs, state, toy

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 240
DATA_PAGES = ["pages/1_bound_vs_empirical.py", "pages/2_representation.py", "pages/3_loss_bound.py"]
BACKBONE = "fmnist-cnn-standard"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One private result cache for the whole file: the first evaluation warms it for the rest."""
    return tmp_path_factory.mktemp("dashboard-cache")


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    """Small defaults through the environment overrides, and a private cache."""
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv(state.ENV_N, "20")
    monkeypatch.setenv(state.ENV_TASKS, "shapes")
    monkeypatch.setenv(state.ENV_ATTACK, "fast")
    monkeypatch.setenv(state.ENV_NORM, "linf")
    if BACKBONE in state.backbone_choices():
        monkeypatch.setenv(state.ENV_BACKBONE, BACKBONE)


def new_app(**state: object) -> AppTest:
    """An AppTest of app.py with small session-state values (set before the first run)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["n"] = 20
    at.session_state["tasks"] = ["shapes"]
    at.session_state["attack"] = "fast"
    for k, v in state.items():
        at.session_state[k] = v
    return at


def charts(at: AppTest) -> list[dict]:
    """The plotly figures drawn on the page, as JSON dicts."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def values(arr: object) -> list[float]:
    """A plotly JSON array as a list (plotly encodes numpy arrays as base64 ``bdata``)."""
    if isinstance(arr, dict) and "bdata" in arr:
        return np.frombuffer(base64.b64decode(arr["bdata"]), dtype=np.dtype(arr["dtype"])).tolist()
    return list(arr)  # type: ignore[call-overload]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ---------------------------------------------------------------- pages

def test_landing_draws_its_charts(small: None) -> None:
    at = new_app().run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    figs = charts(at)
    assert len(figs) >= 3, "bars at eps, curves across eps, calibration scatter"
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert any("Calibration" in t for t in titles)
    calib = next(f for f in figs if "Calibration" in f["layout"]["title"]["text"])
    assert calib["data"][0]["x"] == [0, 1] and calib["data"][0]["y"] == [0, 1], "the diagonal"
    table = at.dataframe[0].value
    assert list(table["task"]) == ["shapes"]
    assert (table["bound"] <= table["robust (attack)"] + 1e-9).all()
    md = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "not a certificate" in md
    assert any("python -m rtcore evaluate" in c.value for c in at.code)


def test_landing_reacts_to_eps(small: None) -> None:
    at = new_app().run()
    assert_clean(at)
    before_table = at.dataframe[0].value
    before_bars = charts(at)[0]
    at.sidebar.slider(key="eps").set_value(0.04).run()  # off the grid: computed on top of it
    assert_clean(at)
    after_table = at.dataframe[0].value
    after_bars = charts(at)[0]
    assert "0.04" in after_bars["layout"]["title"]["text"] and "0.03" in before_bars["layout"]["title"]["text"]
    assert after_table["mean Δ"].iloc[0] > before_table["mean Δ"].iloc[0], "a larger ball moves features farther"
    curves = next(f for f in charts(at) if "across ε" in f["layout"]["title"]["text"])
    assert any(s.get("x0") == 0.04 for s in curves["layout"].get("shapes", [])), "current eps marked on the curves"
    assert sorted(set(values(curves["data"][0]["x"]))) == list(state.eps_to_evaluate("linf", 0.04))
    assert 0.04 in state.eps_to_evaluate("linf", 0.04) and 0.04 not in state.eps_grid("linf")


def test_no_task_is_a_warning(small: None) -> None:
    at = new_app(tasks=[]).run()
    assert_clean(at)
    assert any("task" in w.value for w in at.warning)


def test_changing_norm_resets_eps(small: None) -> None:
    at = new_app().run()
    at.sidebar.radio(key="norm").set_value("l2").run()
    assert_clean(at)
    assert at.session_state["eps"] == state.default_eps("l2")


@pytest.mark.parametrize("page", DATA_PAGES[1:] + ["pages/5_theory.py"])
def test_page_runs(small: None, page: str) -> None:
    at = new_app().run()
    at.switch_page(page).run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert charts(at), f"{page} draws at least one chart"


def test_compare_page_runs_after_opt_in(small: None) -> None:
    at = new_app(compare_backbones=[state.default_backbone()]).run()
    at.switch_page("pages/4_compare_backbones.py").run()
    assert_clean(at)
    assert not charts(at), "nothing heavy runs before the user asks"
    at.button(key="compare_run").click().run()
    assert_clean(at)
    assert len(charts(at)) >= 2


def test_theory_example_buttons(small: None) -> None:
    at = new_app().run()
    at.switch_page("pages/5_theory.py").run()
    at.button(key="toy_example_2").click().run()
    assert_clean(at)
    assert at.session_state["toy_norm"] == "l2"
    assert at.metric[0].value == f"{0.2:.3f}", "isotropic A = I: Delta = eps"


def test_offline_timm_backbone_is_a_message(small: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(bb, "hub_reachable", lambda *a, **k: False)
    at = new_app(backbone="timm:resnet18.a1_in1k").run()
    assert_clean(at)
    assert at.error, "an offline timm backbone must show an error"
    assert "not available" in at.error[0].value


def test_task_needing_download_is_a_warning(small: None) -> None:
    try:
        rtcore.load_task("mnist")
        pytest.skip("MNIST is on this machine, so it needs no download here")
    except rtcore.TaskUnavailableError:
        pass
    at = new_app(tasks=["shapes", "mnist"]).run()
    assert_clean(at)
    assert any("mnist" in w.value for w in at.warning)
    assert charts(at), "the available task is still drawn"


def test_upload_without_file_is_an_info(small: None) -> None:
    at = new_app(backbone=state.UPLOAD_CHOICE).run()
    assert_clean(at)
    assert any("Upload" in i.value for i in at.info)


# ---------------------------------------------------------------- uploads (rtcore.dashboard directly)

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


# ---------------------------------------------------------------- session-independent logic

def test_eps_grid_plus_current() -> None:
    assert state.eps_to_evaluate("linf", 0.03) == state.eps_grid("linf")
    assert state.eps_to_evaluate("linf", 0.0314) == (0.0, 0.01, 0.02, 0.03, 0.0314, 0.05, 0.1)
    assert state.eps_to_evaluate("l2", 0.30000000000000004) == (0.0, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0)
    assert state.eps_label(8 / 255).endswith("(= 8/255)")
    with pytest.raises(ValueError):
        state.eps_grid("l1")


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
    for name in state.PRESETS:
        s = state.PRESETS[name]
        assert f"{s.steps} PGD steps" in state.attack_summary(name)


def test_request_steps_draw_the_current_eps_first() -> None:
    ref = bb.BackboneRef("x")
    req = jobs.make_request([ref], ["a", "b"], 0.0314, "linf", 20, "fast", cache_dir="/tmp/c")
    steps = req.steps()
    assert [s[2] for s in steps[:2]] == [(0.0314,), (0.0314,)]
    assert steps[2][2] == state.eps_grid("linf")
    with pytest.raises(ValueError):
        jobs.make_request([ref], [], 0.1, "linf", 20, "fast")
    with pytest.raises(ValueError):
        jobs.make_request([ref], ["a"], 0.1, "l3", 20, "fast")


def test_cli_command_of_a_request_and_csv_header() -> None:
    req = jobs.make_request([bb.BackboneRef("timm:resnet18", "/tmp/w.safetensors", "up")], ["shapes"], 0.05, "l2",
                          20, "fast", cache_dir="/tmp/c")
    cmd = exports.cli_text(req)
    assert cmd.startswith("python -m rtcore evaluate --backbone timm:resnet18 --tasks shapes --eps 0 0.05 0.1")
    assert cmd.endswith("--weights /tmp/w.safetensors")
    import pandas as pd

    csv = exports.csv_bytes(pd.DataFrame({"a": [1]}), req).decode()
    assert csv.startswith("# reproduce: python -m rtcore evaluate") and "not a certificate" in csv


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
