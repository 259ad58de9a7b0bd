"""Backbones as researchers bring them: preprocessing and the feature layer in the BackboneRef, timm's data config
honoured, torchvision models with local weights only.

Exact answers: the wrapper's resize-and-crop equals torchvision's tensor transforms for the same settings bit for
bit; each feature layer equals the same activation read by an independent route (torch.fx feature extraction, the
network with its classifier removed).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

import rtcore
from rtcore.errors import BackboneUnavailableError, CheckpointError
from rtcore.models.features import pool_tokens
from rtcore.models.ref import PREPROCESSING_FIELDS, BackboneRef
from rtcore.models.registry import check_backbone_name

X = torch.rand(3, 3, 40, 30, generator=torch.Generator().manual_seed(0))


def _timm_resnet18(**kw: object) -> object:
    """timm's resnet18 with the same random weights every time, at 64 px unless told (fast on a CPU)."""
    torch.manual_seed(0)
    return BackboneRef("timm:resnet18", pretrained=False, **{"input_size": 64, **kw}).create("cpu")  # type: ignore


def _in_a_chunk(fn: object, x: torch.Tensor) -> torch.Tensor:
    """``fn`` on ``x`` padded with zero images to one chunk of 32 rows, as every Backbone forward runs
    (rtcore.numerics: the bits of a row depend on the batch size)."""
    pad = torch.cat([x, x.new_zeros((32 - len(x), *x.shape[1:]))])
    return fn(pad)[: len(x)]  # type: ignore[operator]


def _reference(x: torch.Tensor, short: int | list[int], crop: int, interp: InterpolationMode, g: object) -> torch.Tensor:
    out = TF.center_crop(TF.resize(x, short, interpolation=interp, antialias=True), crop)
    return TF.normalize(out, g.mean.flatten().tolist(), g.std.flatten().tolist())  # type: ignore[attr-defined]


def test_timm_models_get_timm_s_own_eval_transform() -> None:
    import timm
    from timm.data import resolve_model_data_config

    torch.manual_seed(0)
    cfg = resolve_model_data_config(timm.create_model("resnet18", pretrained=False))
    g = _timm_resnet18(input_size=None)
    assert (g.interpolation, g.crop_pct, g.antialias) == (cfg["interpolation"], cfg["crop_pct"], True) == \
        ("bicubic", 0.95, True)
    # the shorter side to floor(224 / 0.95) = 235 keeping the aspect ratio, then the centre 224 x 224
    assert torch.equal(g.preprocess(X), _reference(X, 235, 224, InterpolationMode.BICUBIC, g))
    g2 = _timm_resnet18(crop_pct=0.5, interpolation="bilinear", input_size=64)
    assert g2.input_size == (3, 64, 64)
    assert torch.equal(g2.preprocess(X), _reference(X, 128, 64, InterpolationMode.BILINEAR, g2))


def test_each_set_field_changes_the_fingerprint_and_the_default_keeps_it() -> None:
    base = _timm_resnet18()
    assert base.with_preprocessing().fingerprint() == base.fingerprint()
    prints = {base.fingerprint()}
    for kw in [{"crop_pct": 0.875}, {"interpolation": "bilinear"}, {"antialias": False}, {"input_size": 160},
               {"mean": [0.5, 0.5, 0.5]}, {"normalize": False}, {"feature_layer": "layer3"}]:
        prints.add(_timm_resnet18(**kw).fingerprint())
    assert len(prints) == 8
    assert _timm_resnet18(feature_layer="layer3").fingerprint() == _timm_resnet18(feature_layer="layer3").fingerprint()
    plain = BackboneRef("fmnist-cnn-standard").create("cpu")  # a bundled backbone: bilinear, no crop, as before
    assert (plain.interpolation, plain.crop_pct, plain.antialias) == ("bilinear", None, False)
    assert plain.with_preprocessing(interpolation="bilinear").fingerprint() == plain.fingerprint()
    g = BackboneRef("fmnist-cnn-standard", normalize=False).create("cpu")
    assert g.mean.abs().sum() == 0 and torch.equal(g.std, torch.ones_like(g.std))


def test_feature_layers_read_the_activation_they_name() -> None:
    from torchvision.models.feature_extraction import create_feature_extractor

    g = _timm_resnet18(feature_layer="layer3")
    x = g.preprocess(X)
    fx = create_feature_extractor(g.net, {"layer3": "f"})
    assert torch.equal(g(X), _in_a_chunk(lambda v: fx(v)["f"].mean(dim=(2, 3)), x))
    ran: list[str] = []
    g.net.layer4.register_forward_hook(lambda *_: ran.append("layer4"))
    g(X)
    assert ran == [], "the layers after the feature layer are not computed"
    pooled, pre = _timm_resnet18(feature_layer="pooled"), _timm_resnet18()
    assert torch.equal(pooled(X), pre(X))  # a ResNet's pre-logits are its average-pooled features
    assert torch.equal(_timm_resnet18(feature_layer="logits")(X), _in_a_chunk(pre.net, x))
    torch.manual_seed(0)
    tv = BackboneRef("torchvision:resnet18", pretrained=False, input_size=64).create("cpu")
    want, headless = tv(X), tv.net
    fc, headless.fc = headless.fc, nn.Identity().eval()
    try:
        assert torch.equal(want, _in_a_chunk(headless, tv.preprocess(X)))  # torchvision: what the last Linear reads
    finally:
        headless.fc = fc
    tokens = torch.arange(24.0).view(1, 4, 6)
    assert torch.equal(pool_tokens(tokens, 1), tokens[:, 1:].mean(1))
    with pytest.raises(ValueError, match="neither one of .* nor a submodule of ResNet .*'layer1'"):
        _timm_resnet18(feature_layer="layer9")
    with pytest.raises(ValueError, match="'pooled' needs a network with forward_features"):
        BackboneRef("torchvision:resnet18", pretrained=False, feature_layer="pooled").create("cpu")


def test_the_reference_round_trips_and_checks_every_field() -> None:
    ref = BackboneRef("timm:resnet18", input_size="224", interpolation="bicubic", crop_pct="0.9", antialias=False,
                      mean="0.5, 0.5, 0.5", std=[0.25, 0.25, 0.25], feature_layer="layer2")
    assert ref.input_size == (224, 224) and ref.crop_pct == 0.9 and ref.mean == (0.5, 0.5, 0.5)
    d = ref.to_dict()
    assert d == {"backbone": "timm:resnet18", "input_size": [224, 224], "interpolation": "bicubic", "crop_pct": 0.9,
                 "antialias": False, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "feature_layer": "layer2"}
    assert BackboneRef.from_dict(d) == ref and BackboneRef.from_dict({"backbone": "x"}) == BackboneRef("x")
    assert ref.display == ("timm:resnet18[input_size=224x224, interpolation=bicubic, crop_pct=0.9, antialias=False, "
                           "mean=0.5,0.5,0.5, std=0.25,0.25,0.25, feature_layer=layer2]")
    assert set(ref.preprocessing()) == set(PREPROCESSING_FIELDS) - {"normalize"}
    for f in BackboneRef.__dataclass_fields__.values():
        if f.name in PREPROCESSING_FIELDS:
            assert f.metadata["help"] and isinstance(f.metadata["sweep"], bool)
    with pytest.raises(ValueError, match="unknown backbone keys \\['crop'\\]"):
        BackboneRef.from_dict({"backbone": "x", "crop": 0.9})
    bad = {"input_size": "big", "crop_pct": 0, "interpolation": "lanczos", "mean": [0.1, 0.2], "std": [1, 0, 1],
           "feature_layer": " "}
    for key, value in bad.items():
        with pytest.raises(ValueError, match=key):
            BackboneRef("x", **{key: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes no mean or std"):
        BackboneRef("x", normalize=False, mean=[0.5])


def test_torchvision_models_load_local_weights_and_never_download(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    t0 = time.perf_counter()
    with pytest.raises(BackboneUnavailableError, match="rtcore does not download them. Fix: pass weights="):
        BackboneRef("torchvision:resnet18").create("cpu")
    assert time.perf_counter() - t0 < 10
    assert check_backbone_name("torchvision:resnet18") == "torchvision:resnet18"
    with pytest.raises(ValueError, match="no classification model 'resnet19'; similar names: resnet18"):
        check_backbone_name("torchvision:resnet19")
    torch.manual_seed(1)
    net = torchvision.models.resnet18()
    save_file(net.state_dict(), tmp_path / "r18.safetensors")
    g = BackboneRef("torchvision:resnet18", weights=str(tmp_path / "r18.safetensors")).create("cpu")
    assert (g.input_size, g.crop_pct, g.interpolation) == ((3, 224, 224), 224 / 256, "bilinear")
    g = g.with_preprocessing(input_size=(64, 64))  # fast on a CPU
    net.fc = nn.Identity()
    assert torch.equal(g(X), _in_a_chunk(net.eval(), g.preprocess(X)))
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"  # where torchvision keeps them
    ckpt.parent.mkdir(parents=True)
    torch.save(g.net.state_dict(), ckpt)
    assert torch.equal(BackboneRef("torchvision:resnet18", input_size=64).create("cpu")(X), g(X))
    torch.save({"state": g.net.state_dict(), "code": Path}, ckpt)  # a pickle weights_only refuses
    with pytest.raises(CheckpointError, match="cannot be read with torch.load\\(weights_only=True\\)"):
        BackboneRef("torchvision:resnet18").create("cpu")


def test_a_bundled_timm_backbone_keeps_the_transform_it_was_trained_with() -> None:
    """A model rtcore trained resizes as in training (bilinear, no crop, no antialiasing), whatever timm's data
    config says for its architecture; its features are the network's on exactly that input."""
    import torch.nn.functional as F

    g = rtcore.create_backbone("fmnist-timm-resnet-standard", device="cpu")
    assert (g.interpolation, g.crop_pct, g.antialias) == ("bilinear", None, False)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    c, h, w = g.input_size
    manual = (F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False) - g.mean) / g.std
    with torch.no_grad():
        assert torch.allclose(g(x), g._features(g.net, manual).flatten(1), atol=1e-5)
