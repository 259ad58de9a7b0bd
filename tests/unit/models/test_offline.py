"""Offline, a timm name without cached weights fails fast, and the registry says what works offline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import rtcore
from rtcore.models import hub


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A network that hangs (as a firewalled machine does) and empty local caches."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hub, "_HUB_STATUS", {})

    def hang(*a, **k):  # type: ignore[no-untyped-def]
        time.sleep(3)  # longer than the probe waits
        raise OSError("timed out")

    def never(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("the hub client must not be asked when the hub is unreachable")

    monkeypatch.setattr(hub.socket, "create_connection", hang)
    import timm.models._hub as timm_hub

    monkeypatch.setattr(timm_hub, "hf_hub_download", never)


def test_unreachable_hub_fails_fast_with_the_fix(no_network: None) -> None:
    t0 = time.monotonic()
    with pytest.raises(rtcore.BackboneUnavailableError) as err:
        rtcore.create_backbone("timm:resnet18.a1_in1k", device="cpu")
    assert time.monotonic() - t0 < 5  # one 1.5 s connect attempt, never a minute of retries
    msg = str(err.value)
    assert "cannot be reached" in msg and "--weights" in msg and "--no-pretrained" in msg
    t1 = time.monotonic()
    with pytest.raises(rtcore.BackboneUnavailableError):  # the answer is remembered: the next name fails at once
        rtcore.create_backbone("timm:convnext_atto.d2_in1k", device="cpu")
    assert time.monotonic() - t1 < 1


def test_hf_hub_offline_fails_without_any_connection(monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(rtcore.BackboneUnavailableError, match="HF_HUB_OFFLINE"):
        rtcore.create_backbone("timm:resnet18.a1_in1k", device="cpu")
    assert time.monotonic() - t0 < 1


def test_registry_says_what_works_offline(monkeypatch: pytest.MonkeyPatch, no_network: None, tmp_path: Path) -> None:
    offline = rtcore.list_backbones(offline_only=True)
    assert "fmnist-cnn-standard" in offline and not any(n.startswith("timm:") for n in offline)
    assert set(offline) < set(rtcore.list_backbones())
    # weights already in the local cache: the entry is offline and loads from that file with no network
    ref = rtcore.create_backbone("timm:test_resnet", device="cpu", pretrained=False)
    from safetensors.torch import save_file

    f = tmp_path / "cached.safetensors"
    save_file({k: v.contiguous() for k, v in ref.net.state_dict().items()}, str(f))
    monkeypatch.setattr(hub, "cached_weights_file", lambda name: f if name == "test_resnet" else None)
    g = rtcore.create_backbone("timm:test_resnet", device="cpu")
    assert g.fingerprint() == rtcore.create_backbone("timm:test_resnet", device="cpu", weights=f).fingerprint()


def test_timm_examples_are_hub_only_and_listing_them_needs_no_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's timm examples can only load ``model.safetensors`` of ``timm/<name>`` (their other
    pretrained files are .pth/.npz, which rtcore never unpickles), so listing them is a cache lookup."""
    import subprocess
    import sys

    import timm

    from rtcore.models.registry import TIMM_EXAMPLES

    for name in TIMM_EXAMPLES:
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg.hf_hub_id == f"timm/{name}" and not getattr(cfg, "file", None)
        assert not str(getattr(cfg, "url", "") or "").endswith(".safetensors")
    monkeypatch.setattr(hub, "hub_weights_cached", lambda repo: repo == "timm/resnet18.a1_in1k")
    offline = rtcore.list_backbones(offline_only=True)
    assert "timm:resnet18.a1_in1k" in offline and "timm:convnext_atto.d2_in1k" not in offline
    code = "import sys, rtcore; rtcore.backbone_specs(); print('timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "False", "listing the backbones imports timm (a second at start-up)"
