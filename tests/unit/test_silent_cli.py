"""No write outside the places a user names: with --cache-dir nothing lands under $HOME, with --no-cache
nothing lands anywhere; a bad cache dir is refused before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RTCORE_CACHE_DIR", "RTCORE_DATA_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "rtcore", "evaluate", "--backbone", "fmnist-cnn-standard",
                           "--tasks", "shapes", "--eps", "2/255", "--n", "8", "--attack", "fast", *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_a_run_with_a_cache_dir_writes_nothing_under_home(tmp_path: Path) -> None:
    out = _cli(tmp_path, "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "s.csv"))
    assert out.returncode == 0, out.stderr
    assert _files(tmp_path / "home") == []
    assert (tmp_path / "cache" / "results").is_dir() and (tmp_path / "s.csv").is_file()


def test_no_cache_writes_nothing_anywhere(tmp_path: Path) -> None:
    out = _cli(tmp_path, "--no-cache", "--cache-dir", str(tmp_path / "cache"))
    assert out.returncode == 0, out.stderr
    assert _files(tmp_path / "home") == [] and not (tmp_path / "cache").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


@pytest.mark.parametrize("cache_dir, message", [("", "empty"), ("{tmp}/file", "is a file")])
def test_a_bad_cache_dir_is_refused_at_once(tmp_path: Path, cache_dir: str, message: str) -> None:
    (tmp_path / "file").write_text("x")
    out = _cli(tmp_path, "--cache-dir", cache_dir.format(tmp=tmp_path))
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
