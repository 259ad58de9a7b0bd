"""Cache folder damage never gives a raw OSError: what makes the cache unusable is refused when it is opened,
before any work, naming the path and the fix; a bad entry is recomputed; an unwritable folder is read and
its saves skipped with one warning; a read-only cache that holds every result is read."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import rtcore
from rtcore.cache import ResultCache
from rtcore.errors import CacheDirError

REPO = Path(__file__).resolve().parents[2]


def _entry(cache: ResultCache, n: int = 0) -> tuple[str, dict[str, torch.Tensor]]:
    key = cache.key("features", x=n)
    return key, {"features": torch.arange(6.0).view(2, 3) + n}


def test_an_empty_cache_dir_is_refused() -> None:
    for bad in ["", "   "]:
        with pytest.raises(CacheDirError, match="empty, which would mean the current folder"):
            ResultCache(bad)


@pytest.mark.parametrize("where", ["results", "results/features"])
def test_a_file_where_a_cache_folder_belongs_is_refused_at_opening(tmp_path: Path, where: str) -> None:
    ResultCache(tmp_path).save(*_entry(ResultCache(tmp_path)))
    shutil.rmtree(tmp_path / where)
    (tmp_path / where).write_text("not a folder")
    with pytest.raises(CacheDirError, match=rf"{where}' is a file, not a folder; remove or rename it"):
        ResultCache(tmp_path)


def test_a_directory_at_an_entry_path_is_a_bad_entry(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    key, value = _entry(cache)
    cache.path(key).mkdir(parents=True)  # empty: removed, then the entry is saved normally
    assert cache.load(key) is None
    assert "not a file" in cache.rejected[-1].reason and not cache.path(key).exists()
    cache.save(key, value)
    assert torch.equal(cache.load(key)["features"], value["features"])


def test_a_non_empty_directory_at_an_entry_path_is_recomputed_and_not_saved(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = ResultCache(tmp_path)
    key, value = _entry(cache)
    (cache.path(key) / "user-file").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="rtcore.cache"):
        assert cache.load(key) is None
        cache.save(key, value)  # os.replace onto a directory: logged, never raised
        cache.save(key, value)
    assert "cannot be deleted" in caplog.text and len(cache.skipped_saves) == 2
    assert sum("could not be saved" in r.message for r in caplog.records) == 1, "one warning, not one per save"
    assert (cache.path(key) / "user-file").is_dir(), "what is not ours is left alone"


def test_a_fifo_at_an_entry_path_is_not_opened(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    key, value = _entry(cache)
    cache.path(key).parent.mkdir(parents=True)
    os.mkfifo(cache.path(key))
    old = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("opened the FIFO")))
    signal.alarm(20)
    try:
        assert cache.load(key) is None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert not cache.path(key).exists()
    cache.save(key, value)
    assert cache.load(key) is not None


def test_read_only_true_never_writes_and_read_only_must_be_a_choice(tmp_path: Path) -> None:
    ResultCache(tmp_path).save(*_entry(ResultCache(tmp_path)))
    ro = ResultCache(tmp_path, read_only=True)
    assert ro.read_only and not ro.writable("features")
    key, value = _entry(ro, 1)
    ro.save(key, value)
    assert not ro.path(key).exists() and ro.skipped_saves and ro.load(_entry(ro)[0]) is not None
    with pytest.raises(ValueError, match="read_only='yes' must be None"):
        ResultCache(tmp_path, read_only="yes")  # type: ignore[arg-type]
    with pytest.raises(CacheDirError, match="does not exist"):
        ResultCache(tmp_path / "absent", read_only=True)


# ---------------------------------------------------------------- real permissions, as an unprivileged user
def _unprivileged(script: str, probe_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` where file permissions apply: as is for a normal user; as root, with the capabilities
    that override them dropped (``setpriv``). Skips when permissions cannot be made to apply here."""
    cmd = [sys.executable, "-c", script]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: read-only folders cannot be made to apply")
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--inh-caps=-all", "--", *cmd]
    probe = subprocess.run([*cmd[:-1], f"import os; print(os.access({str(probe_dir)!r}, os.W_OK))"],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
    if probe.returncode != 0 or probe.stdout.strip() != "False":
        pytest.skip(f"cannot drop the permission override here ({probe.stderr.strip()[-200:]})")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def _chmod_tree(root: Path, writable: bool) -> None:
    for p in [root, *root.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755 if writable else 0o555)
        else:
            p.chmod(0o644 if writable else 0o444)


def test_a_read_only_kind_folder_is_found_at_opening_and_its_saves_are_skipped(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    cache.save(*_entry(cache))
    cache.save(cache.key("probe", x=0), {"w": torch.ones(2)})
    (tmp_path / "results" / "features").chmod(0o555)
    script = textwrap.dedent(f"""
        import logging, torch
        logging.basicConfig(level=logging.WARNING)
        from rtcore.cache import ResultCache
        c = ResultCache({str(tmp_path)!r})
        assert not c.read_only and not c.writable("features") and c.writable("probe")
        assert c.load(c.key("features", x=0)) is not None, "hits are read"
        c.save(c.key("features", x=1), {{"features": torch.ones(2, 3)}})
        c.save(c.key("features", x=2), {{"features": torch.ones(2, 3)}})
        c.save(c.key("probe", x=1), {{"w": torch.ones(2)}})
        assert len(c.skipped_saves) == 2 and c.load(c.key("probe", x=1)) is not None
        print("OK")
        """)
    try:
        res = _unprivileged(script, tmp_path / "results" / "features")
    finally:
        (tmp_path / "results" / "features").chmod(0o755)
    assert res.returncode == 0 and res.stdout.strip() == "OK", res.stderr[-3000:]
    assert res.stderr.count("are not writable") == 1 and "PermissionError" not in res.stderr


def test_a_read_only_cache_that_holds_every_result_is_read(tmp_path: Path) -> None:
    """A cache filled earlier, now read-only (a shared or archived folder): read, not refused."""
    from tests.unit.test_silent_models import _evaluate, _exec_net, _seeded  # one tiny evaluation, given task

    root = tmp_path / "cache"
    ref = _evaluate(_seeded(_exec_net("relu")), root)
    before = {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}
    _chmod_tree(root, writable=False)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import rtcore
        from rtcore.cache import ResultCache
        from tests.unit.test_silent_models import _evaluate, _exec_net, _seeded
        assert ResultCache({str(root)!r}).read_only
        ev = _evaluate(_seeded(_exec_net("relu")), {str(root)!r})
        print(ev.summary[["clean_acc", "robust_acc", "mean_delta"]].values.tolist())
        try:
            ResultCache({str(root)!r}, read_only=False)
        except rtcore.CacheDirError as e:
            print("refused:", e)
        """)
    try:
        res = _unprivileged(script, root)
    finally:
        _chmod_tree(root, writable=True)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert lines[0] == str(ref.summary[["clean_acc", "robust_acc", "mean_delta"]].values.tolist())
    assert "is not writable; fix its permissions" in lines[1]
    assert {str(p): p.stat().st_mtime_ns for p in root.rglob("*")} == before, "nothing was written"
