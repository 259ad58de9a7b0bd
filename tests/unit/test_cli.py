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
