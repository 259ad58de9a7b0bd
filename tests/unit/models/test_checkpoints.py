"""Malformed checkpoints give CheckpointError naming the file (library, CLI exit 2); flags are never ignored."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import rtcore
from rtcore.cli import main
from rtcore.models import BUNDLED_DIR, check_safetensors_file, read_card

STANDARD, ROBUST = "fmnist-cnn-standard", "fmnist-cnn-pgd-linf-0.1"


def _good(tmp_path: Path) -> Path:
    p = tmp_path / "good.safetensors"
    save_file({"a": torch.ones(3, 2), "b": torch.zeros(4)}, str(p))
    return p


def _malformed(tmp_path: Path, kind: str) -> Path:
    good = _good(tmp_path).read_bytes()
    p = tmp_path / f"{kind}.safetensors"
    if kind == "truncated":
        p.write_bytes(good[:-5])
    elif kind == "garbage-json":
        body = b"{not json at all}"
        p.write_bytes(struct.pack("<Q", len(body)) + body + b"\0" * 8)
    elif kind == "huge-header":
        p.write_bytes(struct.pack("<Q", 120 * 1024**2) + b"{" + b" " * 100)
    elif kind == "bad-offsets":
        hdr = json.dumps({"a": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 999]}}).encode()
        p.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 24)
    elif kind == "pickle":
        torch.save({"a": torch.ones(2)}, str(p))
    elif kind == "empty":
        p.write_bytes(b"")
    return p


KINDS = ["truncated", "garbage-json", "huge-header", "bad-offsets", "pickle", "empty"]


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_files_are_refused_by_name(tmp_path: Path, kind: str) -> None:
    p = _malformed(tmp_path, kind)
    with pytest.raises(rtcore.CheckpointError, match=p.name):
        check_safetensors_file(p)
    with pytest.raises(rtcore.CheckpointError, match=p.name):
        rtcore.create_backbone(STANDARD, device="cpu", weights=p)
    with pytest.raises(rtcore.CheckpointError, match=p.name):
        rtcore.create_backbone("timm:test_resnet", device="cpu", weights=p)


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_files_exit_2_in_the_cli(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    p = _malformed(tmp_path, kind)
    argv = ["evaluate", "--backbone", STANDARD, "--weights", str(p), "--tasks", "shapes", "--eps", "0.01", "--n", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert p.name in err and "Traceback" not in err


def test_wrong_shapes_and_missing_keys_are_listed(tmp_path: Path) -> None:
    state = rtcore.create_backbone(STANDARD, device="cpu").net.state_dict()
    state = {k: v.clone() for k, v in state.items()}
    state.pop("fc.bias")
    state["fc.weight"] = torch.zeros(7, 7)
    state["extra.weight"] = torch.zeros(1)
    p = tmp_path / "mismatch.safetensors"
    save_file(state, str(p))
    with pytest.raises(rtcore.CheckpointError) as err:
        rtcore.create_backbone(STANDARD, device="cpu", weights=p)
    msg = str(err.value)
    assert "mismatch.safetensors" in msg and "missing keys: fc.bias" in msg
    assert "unexpected keys: extra.weight" in msg and "fc.weight: file (7, 7)" in msg


def test_weights_flag_loads_other_weights_into_a_bundled_architecture() -> None:
    robust_file = BUNDLED_DIR / read_card(ROBUST)["weights"]
    swapped = rtcore.create_backbone(STANDARD, device="cpu", weights=robust_file)
    robust = rtcore.create_backbone(ROBUST, device="cpu")
    standard = rtcore.create_backbone(STANDARD, device="cpu")
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(swapped(x), robust(x)) and not torch.equal(swapped(x), standard(x))
    assert swapped.fingerprint() != standard.fingerprint()
    assert swapped.name != STANDARD  # results are never labelled with the bundled weights' name


def test_no_pretrained_gives_seeded_random_weights() -> None:
    a = rtcore.create_backbone(STANDARD, device="cpu", pretrained=False)
    b = rtcore.create_backbone(STANDARD, device="cpu", pretrained=False)
    std = rtcore.create_backbone(STANDARD, device="cpu")
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), std(x))
    assert "random" in a.name and a.fingerprint() != std.fingerprint()
    t = rtcore.create_backbone("fmnist-timm-resnet-standard", device="cpu", pretrained=False)
    assert t.fingerprint() != rtcore.create_backbone("fmnist-timm-resnet-standard", device="cpu").fingerprint()


def test_cli_flags_change_the_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    common = ["--tasks", "shapes", "--eps", "0.01", "--n", "8", "--attack", "fast", "--probe", "logistic-std",
              "--cache-dir", str(tmp_path)]
    robust_file = BUNDLED_DIR / read_card(ROBUST)["weights"]
    runs = {}
    for tag, extra in {"plain": [], "weights": ["--weights", str(robust_file)], "random": ["--no-pretrained"],
                       "robust": []}.items():
        name = ROBUST if tag == "robust" else STANDARD
        assert main(["evaluate", "--backbone", name, *extra, *common, "--out", str(tmp_path / f"{tag}.csv")]) == 0
        runs[tag] = pd.read_csv(tmp_path / f"{tag}.csv")
    cols = ["clean_acc", "robust_acc", "mean_delta"]
    assert runs["weights"][cols].equals(runs["robust"][cols])
    assert not runs["weights"][cols].equals(runs["plain"][cols])
    assert not runs["random"][cols].equals(runs["plain"][cols])


def test_flags_that_make_no_sense_are_errors(tmp_path: Path) -> None:
    p = _good(tmp_path)
    with pytest.raises(ValueError, match="not both"):
        rtcore.create_backbone(STANDARD, device="cpu", weights=p, pretrained=False)
    rtcore.register_backbone("test-flags", lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)),
                             overwrite=True)
    with pytest.raises(ValueError, match="pretrained=False"):
        rtcore.create_backbone("test-flags", device="cpu", pretrained=False)
    with pytest.raises(ValueError, match="timm"):
        rtcore.create_backbone(STANDARD, device="cpu", num_classes=3)


def test_a_header_length_of_128_mod_256_is_not_taken_for_a_pickle(tmp_path: Path) -> None:
    """A valid file whose first byte is 0x80 (header length 128 mod 256) loads."""
    for pad in range(0, 300):
        p = tmp_path / f"pad{pad}.safetensors"
        save_file({"a": torch.ones(2)}, str(p), metadata={"x": "y" * pad})
        if p.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a first byte of 0x80")
    assert check_safetensors_file(p) == p
