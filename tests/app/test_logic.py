"""Session-independent dashboard logic: defaults and overrides, eps labels, requests as specs, uploads.
No AppTest, no evaluation."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import rtcore
from app import state
from app.figures.style import eps_tick
from rtcore.config import default_eps, eps_grid, eps_key, nearest_eps
from rtcore.models.ref import BackboneRef
from rtcore.models.registry import list_backbones
from rtcore.models.uploads import CheckpointUploadError, checkpoint_ref, load_ref, save_checkpoint_upload
from rtcore.runs import selection


def test_eps_ticks() -> None:
    assert eps_tick(eps_grid("linf")[5], "linf") == "16" and eps_tick(1.6, "l2") == "1.6" and eps_tick(0, "l2") == "0"
    assert eps_tick(0.05, "linf") == "12.75"


def test_eps_options_snap_and_input() -> None:
    e = selection.eps_from_input(3, "linf")
    assert e == eps_key(3 / 255)
    assert selection.eps_options("linf", [e]) == sorted([*eps_grid("linf"), e])
    assert nearest_eps(0.03, eps_grid("linf")) == eps_grid("linf")[4]
    assert selection.eps_from_input(0.3, "l2") == 0.3


@pytest.mark.parametrize(("value", "norm", "verdict"), [
    (3, "linf", "ok"), (8, "linf", "grid"), (40, "linf", "confirm"), (0, "linf", "error"), (300, "linf", "error"),
    (0.3, "l2", "ok"), (0.8, "l2", "grid"), (1.6, "l2", "grid"), (2.0, "l2", "ok"), (5, "l2", "confirm"),
    (150, "l2", "error"),
])
def test_check_new_eps(value: float, norm: str, verdict: str) -> None:
    got, message = state.check_new_eps(selection.eps_from_input(value, norm), norm)
    assert got == verdict and message
    if verdict == "grid":
        assert "the cursor is there now" in message and "move the slider" not in message
    if verdict == "confirm":
        assert "every probe is broken" not in message and "Compute it" in message


def test_the_cursor_is_not_part_of_a_request() -> None:
    ref = BackboneRef("fmnist-cnn-standard")
    a = selection.request([ref], ["shapes", "glyphs"], "linf", 20, "fast", cache_dir="/tmp/c")
    assert not hasattr(a, "cursor") and a.eps == eps_grid("linf")
    assert a.first == (default_eps("linf"),) and a.priority == ()
    b = selection.request([ref], ["shapes", "glyphs"], "linf", 20, "fast", extras=[0.05, 8 / 255, 0.05],
                          cache_dir="/tmp/c")
    assert b.priority == (0.05,), "grid values and duplicates are dropped"
    assert a.same_but_eps(b) and not a.same_but_eps(selection.request([ref], ["shapes"], "linf", 20, "fast",
                                                                       cache_dir="/tmp/c"))
    l2 = selection.request([ref], ["shapes"], "l2", 20, "fast", extras=[2.5])
    assert 1.6 in l2.eps and 2.5 in l2.eps, "the library's l2 range, not (0, 1]"


@pytest.mark.parametrize(("kw", "match"), [({"tasks": []}, "at least one downstream task"),
                                           ({"norm": "l3"}, "norm='l3'"), ({"extras": [1.5]}, "eps=1.5"),
                                           ({"attack": "huge"}, "attack='huge'"), ({"n": 0}, "n")])
def test_a_bad_request_names_the_value(kw: dict, match: str) -> None:
    args = {"tasks": ["shapes"], "norm": "linf", "n": 20, "attack": "fast", **kw}
    with pytest.raises(ValueError, match=match):
        selection.request([BackboneRef("fmnist-cnn-standard")], args.pop("tasks"), args.pop("norm"), args.pop("n"),
                          args.pop("attack"), **args)


def test_defaults_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults are assets/classroom.toml's selection (200 points, fast, the offline tasks, the robust CNN)."""
    for var in (selection.ENV_N, selection.ENV_TASKS, selection.ENV_ATTACK, selection.ENV_BACKBONE, selection.ENV_NORM):
        monkeypatch.delenv(var, raising=False)
    assert selection.default_n() == 200 and selection.default_attack() == "fast" and selection.default_norm() == "linf"
    assert selection.default_tasks() == rtcore.list_tasks(offline_only=True)
    assert selection.default_backbone(state.backbone_choices()) == "fmnist-cnn-pgd-linf-0.1"
    assert selection.default_backbone(["a", "fmnist-cnn-standard"]) == "fmnist-cnn-standard", "else a bundled one"
    monkeypatch.setenv(selection.ENV_N, "20")
    monkeypatch.setenv(selection.ENV_TASKS, "shapes, nonsense")
    monkeypatch.setenv(selection.ENV_ATTACK, "strong")
    assert selection.default_n() == 20 and 20 in selection.sample_size_options()
    assert selection.default_tasks() == ["shapes"] and selection.default_attack() == "strong"
    monkeypatch.setenv(selection.ENV_N, "many")
    assert selection.default_n() == 200


def test_model_cards_have_no_empty_cells() -> None:
    bundled = list_backbones(kind="bundled")
    table = state.card_columns([*bundled, "timm:resnet18"])
    assert len(table) == len(bundled) + 1 and list(table.columns) == ["backbone", *state.CARD_COLUMNS.values()]
    assert not table.isna().any().any() and not (table.astype(str) == "None").any().any()
    assert table.iloc[-1]["method"] == "—" and "resnet18" in table.iloc[-1]["description"], "no card: the registry's"


def test_upload_refuses_pickles_and_non_safetensors(tmp_path: Path) -> None:
    pickled = pickle.dumps({"weight": [1.0, 2.0]})
    with pytest.raises(CheckpointUploadError, match="pickled"):
        save_checkpoint_upload("model.pt", pickled, dest=tmp_path)
    with pytest.raises(CheckpointUploadError, match="not a safetensors file"):
        save_checkpoint_upload("model.safetensors", pickled, dest=tmp_path)
    with pytest.raises(CheckpointUploadError, match="empty"):
        save_checkpoint_upload("model.safetensors", b"", dest=tmp_path)
    with pytest.raises(CheckpointUploadError, match="limit"):
        save_checkpoint_upload("model.safetensors", b"x" * 2048, dest=tmp_path, max_bytes=1024)
    assert not list(tmp_path.glob("*.safetensors")), "nothing refused is kept"


def test_upload_accepts_safetensors_and_a_wrong_architecture_is_a_checkpoint_error(tmp_path: Path) -> None:
    src = tmp_path / "src.safetensors"
    save_file({"not_a_resnet.weight": torch.zeros(3, 3)}, str(src))
    path = save_checkpoint_upload("mine.safetensors", src.read_bytes(), dest=tmp_path / "up")
    assert path.is_file() and path.suffix == ".safetensors"
    again = save_checkpoint_upload("mine.safetensors", src.read_bytes(), dest=tmp_path / "up")
    assert again == path, "content-addressed"
    ref = checkpoint_ref("timm:resnet18", path, "mine.safetensors")
    assert ref.name == "timm:resnet18" and ref.weights == str(path) and isinstance(ref, BackboneRef)
    with pytest.raises(rtcore.CheckpointError):
        load_ref(ref, device="cpu")
    with pytest.raises(ValueError, match="no architecture"):
        checkpoint_ref("not-a-timm-model", path, "mine.safetensors")


def test_no_numeric_work_and_no_copies_of_library_lists_in_the_app() -> None:
    """The app imports neither torch nor numpy, and names no probe kind, strength or norm list of its own."""
    root = Path(__file__).resolve().parents[2]
    for path in [*root.glob("app/**/*.py"), *root.glob("pages/*.py")]:
        text = path.read_text()
        assert "import torch" not in text, path
        assert "import numpy" not in text, path
        for copy in ('("logistic", "logistic-std", "robust")', '("fast", "standard"', '("linf", "l2")'):
            assert copy not in text, (path, copy)
