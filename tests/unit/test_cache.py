"""The result cache: every hit is verified; a bad entry is deleted, recomputed and reported."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

import rtcore
from rtcore._io import tensors_digest
from rtcore.cache import ResultCache
from rtcore.cli import main

ARGS = dict(backbone="fmnist-cnn-standard", tasks=["shapes"], eps=[0.0, 2 / 255], norm="linf", n=12, attack="fast",
            probe="logistic-std")


def _run(cache_dir: Path) -> rtcore.Evaluation:
    a = dict(ARGS)
    return rtcore.run_evaluation(a.pop("backbone"), a.pop("tasks"), a.pop("eps"), a.pop("norm"), a.pop("n"),
                                 cache_dir=str(cache_dir), **a)


def _entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "results").rglob("*.safetensors"))


def _flip_last_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x01  # inside the tensor payload: the header stays valid
    p.write_bytes(bytes(data))


def _rewrite(p: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Rewrite an entry with a *valid* digest and key after ``change``: only the content checks can catch it."""
    from safetensors import safe_open

    with safe_open(str(p), framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(p))
    change(tensors)
    meta["sha256"] = tensors_digest(tensors)
    save_file(tensors, str(p), metadata=meta)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rtcore.Evaluation]:
    d = tmp_path_factory.mktemp("clean-cache")
    return d, _run(d)


def test_every_entry_with_one_byte_flipped_is_recomputed_to_identical_numbers(
        clean: tuple[Path, rtcore.Evaluation], tmp_path: Path) -> None:
    src, ref = clean
    import shutil

    shutil.copytree(src, tmp_path / "c")
    entries = _entries(tmp_path / "c")
    assert len(entries) >= 5  # features (train, test), probe, feature attack and e2e per eps
    for p in entries:
        _flip_last_byte(p)
    ev = _run(tmp_path / "c")
    assert len(ev.recomputed) == len(entries)
    assert all("digest" in r for r in ev.recomputed)
    pd.testing.assert_frame_equal(ev.samples, ref.samples)
    pd.testing.assert_frame_equal(ev.summary.drop(columns="seconds"), ref.summary.drop(columns="seconds"))
    assert _run(tmp_path / "c").recomputed == []  # the recomputed entries are good again


def test_cli_says_it_recomputed(clean: tuple[Path, rtcore.Evaluation], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    shutil.copytree(clean[0], tmp_path / "c")
    for p in _entries(tmp_path / "c"):
        _flip_last_byte(p)
    argv = ["evaluate", "--backbone", ARGS["backbone"], "--tasks", "shapes", "--eps", "0", repr(2 / 255),
            "--n", "12", "--attack", "fast", "--probe", "logistic-std", "--cache-dir", str(tmp_path / "c"),
            "--out", str(tmp_path / "r.csv")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "failed verification and were recomputed" in err
    got = pd.read_csv(tmp_path / "r.csv")
    assert got["robust_acc"].tolist() == pytest.approx(clean[1].summary["robust_acc"].tolist())
    assert got["mean_delta"].tolist() == pytest.approx(clean[1].summary["mean_delta"].tolist(), rel=1e-12)


@pytest.mark.parametrize("change, reason", [
    (lambda t: t.__setitem__("features_adv", torch.full_like(t["features_adv"], float("nan"))), "non-finite"),
    (lambda t: t.__setitem__("features_adv", t["features_adv"][:, :3].contiguous()), "shape"),
    (lambda t: t.pop("features_adv"), "missing"),
])
def test_entries_with_a_valid_digest_but_bad_content_are_recomputed(
        clean: tuple[Path, rtcore.Evaluation], tmp_path: Path, change, reason: str) -> None:  # type: ignore[no-untyped-def]
    import shutil

    shutil.copytree(clean[0], tmp_path / "c")
    targets = sorted((tmp_path / "c" / "results" / "feature_attack").glob("*.safetensors"))
    for p in targets:
        _rewrite(p, change)
    ev = _run(tmp_path / "c")
    assert len(ev.recomputed) == len(targets) and all(reason in r for r in ev.recomputed)
    pd.testing.assert_frame_equal(ev.samples, clean[1].samples)


def test_probe_weights_changed_are_caught(clean: tuple[Path, rtcore.Evaluation], tmp_path: Path) -> None:
    import shutil

    shutil.copytree(clean[0], tmp_path / "c")
    (probe,) = (tmp_path / "c" / "results" / "probe").glob("*.safetensors")
    data = bytearray(probe.read_bytes())
    data[-40:] = bytes(40)  # zero some weights
    probe.write_bytes(bytes(data))
    ev = _run(tmp_path / "c")
    assert any("probe" in r for r in ev.recomputed)
    pd.testing.assert_frame_equal(ev.samples, clean[1].samples)


def test_stale_temporaries_are_removed_and_entries_are_world_readable(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    key = cache.key("features", x=1)
    cache.save(key, {"features": torch.ones(2, 3)})
    p = cache.path(key)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    old, young = p.parent / ".tmp-killed.safetensors", p.parent / ".tmp-writing.safetensors"
    old.write_bytes(b"half")
    young.write_bytes(b"half")
    past = time.time() - 7200
    os.utime(old, (past, past))
    import rtcore.cache

    rtcore.cache._CLEANED.clear()  # as in a new process: the first opening of a cache folder cleans it up
    ResultCache(tmp_path)
    assert not old.exists() and young.exists()
    assert torch.equal(ResultCache(tmp_path).load(key, {"features": (2, 3)})["features"], torch.ones(2, 3))


def test_schema_mismatch_is_rejected_once(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    key = cache.key("features", x=2)
    cache.save(key, {"features": torch.ones(2, 3)})
    assert cache.load(key, {"features": (5, None)}) is None
    assert len(cache.rejected) == 1 and "shape" in cache.rejected[0].reason
    assert not cache.path(key).exists()


def test_cache_dir_that_is_a_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(rtcore.CacheDirError, match="is a file"):
        ResultCache(f)
    argv = ["evaluate", "--backbone", ARGS["backbone"], "--tasks", "shapes", "--eps", "0.01", "--n", "4",
            "--cache-dir", str(f)]
    assert main(argv) == 2
    assert "is a file" in capsys.readouterr().err


def test_generated_task_data_goes_under_the_chosen_cache_dir(tmp_path: Path) -> None:
    rtcore.create_task("shapes", cache_dir=tmp_path / "mine")
    assert list((tmp_path / "mine" / "tasks").glob("shapes-*.safetensors"))


def test_generated_task_cache_with_changed_bytes_is_regenerated(tmp_path: Path) -> None:
    from rtcore.data import clear_task_cache

    ref = rtcore.create_task("shapes", cache_dir=tmp_path)
    (path,) = (tmp_path / "tasks").glob("shapes-*.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        meta = fh.metadata()
        arrays = {k: fh.get_tensor(k).copy() for k in fh.keys()}
    arrays["x_test"][0, 0, 0, 0] = 1.0 - arrays["x_test"][0, 0, 0, 0]  # still in [0, 1]; metadata kept
    from safetensors.numpy import save_file as save_np

    save_np(arrays, str(path), metadata=meta)
    clear_task_cache()
    again = rtcore.create_task("shapes", cache_dir=tmp_path)
    assert torch.equal(again.x_test, ref.x_test)


@pytest.mark.parametrize("folder", ["/", "/usr", "/etc", "/var", "/proc/self", "/sys/kernel", "~"])
def test_a_root_system_or_home_cache_dir_is_refused_before_any_work(
        folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from rtcore.config import resolve_cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(rtcore.CacheDirError, match="Fix: give a folder of rtcore's own"):
        resolve_cache_dir(folder)
    with pytest.raises(rtcore.CacheDirError, match="root of the file system|system folder|home folder itself"):
        rtcore.create_task("shapes", cache_dir=folder)
    monkeypatch.setenv("RTCORE_CACHE_DIR", folder)
    with pytest.raises(rtcore.CacheDirError, match="RTCORE_CACHE_DIR="):
        resolve_cache_dir(None)
    monkeypatch.delenv("RTCORE_CACHE_DIR")
    if folder == "/":
        argv = ["evaluate", "--backbone", ARGS["backbone"], "--tasks", "shapes", "--eps", "0.01", "--n", "4",
                "--cache-dir", folder]
        assert main(argv) == 2
        assert "is the root of the file system" in capsys.readouterr().err
    assert resolve_cache_dir(tmp_path / "cache") == tmp_path / "cache"  # a folder inside home is fine
    assert resolve_cache_dir("/var/cache/rtcore") == Path("/var/cache/rtcore")  # and one inside a system folder
