"""pyautoattack's CIFAR-10 ResNet-18 as an offline backbone: converted once, verified on every load."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import rtcore
from rtcore._io import file_sha256
from rtcore.models import registry, thirdparty
from rtcore.models.thirdparty import AUTOATTACK_RESNET18, PT_SHA256, converted_path, ensure_converted

pytest.importorskip("pyautoattack")


def test_listed_with_a_model_card() -> None:
    assert AUTOATTACK_RESNET18 in rtcore.list_backbones(offline_only=True)
    spec = rtcore.backbone_specs()[AUTOATTACK_RESNET18]
    assert spec.kind == "package" and spec.offline
    card = thirdparty.model_card()
    assert card["origin"]["sha256"] == PT_SHA256 and card["origin"]["file"] == "examples/model_test.pt"
    assert card["input_size"] == [3, 32, 32] and card["mean"] == [0.0] * 3 and card["std"] == [1.0] * 3
    assert card["feature_dim"] == 512 and card["robust"] is False and "unknown" in card["training"]


def test_features_are_the_512_d_penultimate_layer_and_deterministic() -> None:
    g = rtcore.create_backbone(AUTOATTACK_RESNET18, device="cpu")
    assert g.card["name"] == AUTOATTACK_RESNET18 and "pyautoattack" in g.source
    gray = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # Fashion-MNIST-like
    rgb = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        f = g(gray)
        assert f.shape == (3, 512) and g(rgb).shape == (2, 512)
        assert torch.equal(f, g(gray))
        # the package's own classifier on top of our features gives the package model's logits
        net = thirdparty._resnet_module().ResNet18()
        net.load_state_dict(torch.load(thirdparty.package_file("examples/model_test.pt"), map_location="cpu",
                                       weights_only=True))
        ref = net.eval()(torch.nn.functional.interpolate(gray.expand(-1, 3, -1, -1), size=(32, 32),
                                                         mode="bilinear", align_corners=False))
        assert torch.allclose(g.net.linear(f), ref, atol=1e-4)
    again = rtcore.create_backbone(AUTOATTACK_RESNET18, device="cpu")
    assert again.fingerprint() == g.fingerprint()


def test_converted_once_reused_and_reconverted_when_tampered(tmp_path: Path) -> None:
    path, fresh = ensure_converted(tmp_path)
    assert fresh and path == converted_path(tmp_path) and path.is_file()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["source_sha256"] == PT_SHA256 and meta["sha256"] == file_sha256(path)
    stamp = path.stat().st_mtime_ns
    assert ensure_converted(tmp_path) == (path, False) and path.stat().st_mtime_ns == stamp, "re-used"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the weights
    path.write_bytes(bytes(data))
    path2, fresh2 = ensure_converted(tmp_path)
    assert fresh2 and file_sha256(path2) == meta["sha256"], "a tampered file is converted again"
    path.with_suffix(".json").write_text("{not json")
    assert ensure_converted(tmp_path)[1], "a broken sidecar means converting again"
    g = thirdparty.create_autoattack_resnet18(cache_dir=tmp_path)
    assert g(torch.rand(1, 3, 32, 32)).shape == (1, 512)


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thirdparty, "package_available", lambda: False)
    monkeypatch.setattr(registry, "package_available", lambda: False)
    assert AUTOATTACK_RESNET18 not in rtcore.list_backbones()
    with pytest.raises(rtcore.BackboneUnavailableError, match="pip install pyautoattack==0.2.0"):
        rtcore.create_backbone(AUTOATTACK_RESNET18, device="cpu")


def test_a_different_package_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "model_test.pt"
    torch.save({"w": torch.zeros(1)}, fake)
    monkeypatch.setattr(thirdparty, "package_file", lambda rel: fake)
    with pytest.raises(rtcore.CheckpointError, match="reinstall"):
        ensure_converted(tmp_path / "cache")
    assert not os.path.exists(converted_path(tmp_path / "cache"))
