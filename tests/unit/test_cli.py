"""Command line: list, evaluate with CSV output, clear errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rtcore.cli import main


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "shapes" in out and "fmnist-novel" in out and "timm:" in out


def test_evaluate_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.csv"
    samples = tmp_path / "s.csv"
    code = main(["evaluate", "--backbone", "timm:test_vit", "--no-pretrained", "--tasks", "shapes", "--eps", "0", "0.01",
                 "--n", "8", "--attack", "fast", "--out", str(out), "--samples-out", str(samples),
                 "--cache-dir", str(tmp_path / "c")])
    assert code == 0
    df = pd.read_csv(out)
    assert len(df) == 2 and {"bound", "robust_acc", "clean_acc"} <= set(df.columns)
    assert len(pd.read_csv(samples)) == 16
    captured = capsys.readouterr()
    assert "done" in captured.err and "robust_acc" in captured.out


@pytest.mark.parametrize("args, message", [
    (["--eps", "2.0"], "above 1"),
    (["--eps", "-0.1"], "negative"),
    (["--tasks", "nope"], "valid"),
])
def test_evaluate_errors_are_messages(args, message, capsys: pytest.CaptureFixture[str]) -> None:
    base = {"--backbone": ["timm:test_vit"], "--tasks": ["shapes"], "--eps": ["0.1"]}
    for i in range(0, len(args), 2):
        base[args[i]] = [args[i + 1]]
    argv = ["evaluate", "--no-pretrained", "--n", "4"] + [x for k, v in base.items() for x in (k, *v)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_offline_timm_is_a_message(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import timm.models._hub as hub

    monkeypatch.setattr(hub, "hf_hub_download", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    assert main(["evaluate", "--backbone", "timm:resnet18.a1_in1k", "--tasks", "shapes", "--eps", "0.1"]) == 2
    assert "weights=" in capsys.readouterr().err


def test_every_subcommand_has_a_working_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` of the program and of every subcommand prints (a help text with a bare '%' once crashed it)."""
    import argparse

    from rtcore.cli import build_parser, main

    parser = build_parser()
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0].choices
    assert {"list", "evaluate", "sweep"} <= set(commands)
    for argv in ([], *([c] for c in commands)):
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_the_flags_are_the_spec_fields() -> None:
    """Every declared spec field has its flag and file key, and nothing else builds a spec: the CLI's spec flags,
    the file keys and the sweep axes are exactly those derived from the declarations."""
    import argparse

    import rtcore
    from rtcore.cli import build_parser
    from rtcore.runs.fields import declared, file_keys, sweep_axes

    parser = build_parser()
    evaluate = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0].choices["evaluate"]
    spec_dests = {a.dest for a in evaluate._actions if a.dest.startswith("spec.")}
    fields = declared(rtcore.EvalSpec)
    assert spec_dests == {d.dest for d in fields if d.option.flag}
    assert set(file_keys(rtcore.EvalSpec)) == {d.key for d in fields}
    for d in fields:  # each flag reads back into its field
        assert d.flag in evaluate._option_string_actions
    hand_listed = {"backbone", "weights", "pretrained", "label", "tasks", "eps", "norm", "n", "attack", "probe",
                   "probe_C", "probe_eps", "transfer", "transfer_k", "seed", "precision", "head_attack",
                   "loss_attack", "sanity", "sanity_subset", "device", "batch_size", "download"}
    assert hand_listed <= {d.key for d in fields}  # the fields every earlier version had are all declared
    assert {"backbone", "tasks", "norm", "n", "attack", "probe", "transfer", "seed"} <= set(sweep_axes(rtcore.EvalSpec))
    assert "eps" not in sweep_axes(rtcore.EvalSpec)  # a sweep's eps list is every unit's grid


def test_a_device_this_machine_lacks_is_refused_before_any_work(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import time

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    t0 = time.perf_counter()
    code = main(["evaluate", "--backbone", "fmnist-cnn-standard", "--tasks", "shapes", "--eps", "2/255", "--n", "8",
                 "--device", "cuda", "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "CUDA is not available" in err and "device='cpu'" in err
    assert time.perf_counter() - t0 < 10 and not (tmp_path / "c" / "results").exists()


def test_convert_a_dataparallel_checkpoint_and_evaluate_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A RobustBench-style checkpoint ({'state_dict': {'module.' + key: ...}}) of a bundled backbone converts, and
    the converted weights give exactly the bundled backbone's numbers."""
    import json

    import torch
    from safetensors.torch import load_file

    from rtcore.models import BUNDLED_DIR

    state = load_file(str(BUNDLED_DIR / "fmnist-cnn-standard.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 7}, tmp_path / "ckpt.pt")
    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(tmp_path / "ckpt.pt"), str(out), "--backbone", "fmnist-cnn-standard"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["found_at"] == ["state_dict"] and report["stripped"] == ["module."] and report["ignored"] == ["epoch"]
    args = ["evaluate", "--backbone", "fmnist-cnn-standard", "--tasks", "shapes", "--eps", "2/255", "--n", "8",
            "--attack", "fast", "--no-head-attack", "--no-loss-attack", "--cache-dir", str(tmp_path / "c")]
    assert main([*args, "--out", str(tmp_path / "a.csv")]) == 0
    assert main([*args, "--weights", str(out), "--label", "fmnist-cnn-standard", "--out", str(tmp_path / "b.csv")]) == 0
    a, b = (pd.read_csv(tmp_path / f).drop(columns=["seconds"]) for f in ("a.csv", "b.csv"))
    pd.testing.assert_frame_equal(a, b)
    assert main(["convert", str(tmp_path / "ckpt.pt"), str(tmp_path / "x.bin"), "--backbone", "fmnist-cnn-standard"]) == 2
