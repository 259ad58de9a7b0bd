"""Backbone registry: wrapping, preprocessing inside the model, timm, checkpoints, bundled cards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import rtcore
from rtcore import models as B
from rtcore._io import file_sha256
from rtcore.config import ASSETS_DIR
from rtcore.models import bundled as BM
from rtcore.models import registry as R


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def test_wrapper_is_frozen_eval_and_checked_every_call() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5))
    bb = rtcore.as_backbone(net)
    assert not bb.training and not any(p.requires_grad for p in bb.parameters())
    with pytest.raises(RuntimeError, match="eval mode"):
        bb.train()
    net[2].training = True  # someone flips a submodule behind the wrapper's back
    with pytest.raises(ValueError, match="training mode"):
        bb(torch.rand(2, 1, 2, 2))
    net[2].training = False
    net[1].weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="frozen"):
        bb(torch.rand(2, 1, 2, 2))


def test_preprocessing_lives_inside_the_model() -> None:
    x = torch.rand(3, 1, 4, 4)
    bb = rtcore.as_backbone(Identity(), input_size=(3, 8, 8), mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 2.0])
    out = bb(x).view(3, 3, 8, 8)
    up = torch.nn.functional.interpolate(x.expand(-1, 3, -1, -1), size=(8, 8), mode="bilinear", align_corners=False)
    expected = (up - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.5, 2.0]).view(1, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    gray = rtcore.as_backbone(Identity(), input_size=(1, 2, 2))
    rgb = torch.rand(2, 3, 2, 2)
    lum = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert torch.allclose(gray(rgb), lum.flatten(1), atol=1e-6)


def test_fingerprint_changes_with_the_weights() -> None:
    a = rtcore.as_backbone(nn.Linear(4, 2))
    b = rtcore.as_backbone(nn.Linear(4, 2))
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == rtcore.as_backbone(a.net).fingerprint()


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid names"):
        rtcore.create_backbone("no-such-backbone")
    with pytest.raises(ValueError, match="timm has no model"):
        rtcore.create_backbone("timm:no_such_model_xyz", pretrained=False)


def test_timm_random_init_works_offline_and_adapts_grayscale() -> None:
    bb = rtcore.create_backbone("timm:test_resnet", device="cpu", pretrained=False)
    assert bb.input_size[0] == 3
    f = bb(torch.rand(2, 1, 28, 28))  # grayscale task into an RGB model, resized inside
    assert f.shape == (2, bb.net.num_features)


def test_timm_offline_pretrained_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.models._hub as hub

    def no_network(*args, **kwargs):
        raise OSError("We couldn't connect to the Hub (offline)")

    monkeypatch.setattr(hub, "hf_hub_download", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(rtcore.BackboneUnavailableError) as err:
        rtcore.create_backbone("timm:resnet18.a1_in1k", device="cpu")
    msg = str(err.value)
    assert "timm/resnet18.a1_in1k" in msg and "weights=" in msg and "pretrained=False" in msg


def test_timm_local_safetensors_roundtrip(tmp_path: Path) -> None:
    ref = rtcore.create_backbone("timm:test_resnet", device="cpu", pretrained=False)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref.net.state_dict().items()}, str(path))
    loaded = rtcore.create_backbone("timm:test_resnet", device="cpu", weights=path)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ref(x), loaded(x), atol=1e-6)
    with pytest.raises(rtcore.CheckpointError, match="does not match"):
        rtcore.create_backbone("timm:test_vit", device="cpu", weights=path)


def test_pickled_checkpoints_are_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "model.pth"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(rtcore.CheckpointError, match="not a valid safetensors file"):
        rtcore.create_backbone("timm:test_resnet", device="cpu", weights=bad)
    assert not marker.exists(), "the checkpoint must never be unpickled"
    with pytest.raises(rtcore.CheckpointError, match="does not exist"):
        rtcore.create_backbone("timm:test_resnet", device="cpu", weights=tmp_path / "missing.safetensors")
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    with pytest.raises(rtcore.CheckpointError):
        B.load_safetensors(truncated)


def test_registered_user_backbone() -> None:
    B.register_backbone("test-user-linear", lambda: nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), overwrite=True)
    try:
        assert "test-user-linear" in rtcore.list_backbones()
        assert rtcore.create_backbone("test-user-linear", device="cpu")(torch.rand(1, 1, 2, 2)).shape == (1, 2)
        with pytest.raises(ValueError, match="already registered"):
            B.register_backbone("test-user-linear", lambda: nn.Identity())
    finally:
        R.unregister_backbone("test-user-linear")
    assert "test-user-linear" not in rtcore.list_backbones()


BUNDLED = sorted(p.stem for p in B.BUNDLED_DIR.glob("*.json"))


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_backbone_loads_and_matches_its_card(name: str) -> None:
    card = json.loads((B.BUNDLED_DIR / f"{name}.json").read_text())
    weights = B.BUNDLED_DIR / card["weights"]
    assert file_sha256(weights) == card["sha256"]
    assert weights.stat().st_size <= 10 * 1024 * 1024
    assert name in rtcore.list_backbones(offline_only=True)
    bb = rtcore.create_backbone(name, device="cpu")
    f = bb(torch.rand(4, *card["input_size"][:1], 28, 28))
    assert f.shape == (4, card["feature_dim"]) and torch.isfinite(f).all()
    for key in ("recipe", "seed", "epochs", "wall_time_s", "hardware", "upstream_clean_acc", "upstream_robust_acc"):
        assert key in card


def test_all_assets_fit_the_size_budget() -> None:
    total = sum(p.stat().st_size for p in ASSETS_DIR.rglob("*") if p.is_file())
    assert total <= 40 * 1024 * 1024


@pytest.mark.skipif(not BUNDLED, reason="no bundled backbone yet")
def test_tampered_bundled_weights_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = BUNDLED[0]
    card = json.loads((B.BUNDLED_DIR / f"{name}.json").read_text())
    shutil.copy(B.BUNDLED_DIR / f"{name}.json", tmp_path / f"{name}.json")
    data = bytearray((B.BUNDLED_DIR / card["weights"]).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / card["weights"]).write_bytes(bytes(data))
    monkeypatch.setattr(BM, "BUNDLED_DIR", tmp_path)
    monkeypatch.setattr(R, "BUNDLED_DIR", tmp_path)
    with pytest.raises(rtcore.CheckpointError, match="sha256"):
        rtcore.create_backbone(name, device="cpu")
    (tmp_path / card["weights"]).unlink()
    with pytest.raises(rtcore.BackboneUnavailableError, match="missing"):
        rtcore.create_backbone(name, device="cpu")
