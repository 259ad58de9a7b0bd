"""Uploaded tasks: a zip of an image folder or an npz, unpacked safely, stored by content, pruned."""

from __future__ import annotations

import io
import os
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rtcore.data import (
    TaskDataError,
    TaskUploadError,
    create_task,
    prune_task_uploads,
    store_task_upload,
    task_upload_dir,
    unpack_task_upload,
    user_ref_of_path,
)
from rtcore.data.uploads import touch_task_upload

MB = 1 << 20


def _zip(folder: Path, prefix: str = "", extra: dict[str, bytes] | None = None) -> bytes:
    """The files under ``folder`` zipped as ``prefix/<relative path>`` (plus ``extra`` entries)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{prefix}{p.relative_to(folder).as_posix()}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_a_zip_with_one_top_folder_is_stored_once(folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "uploads"
    data = _zip(folder, "weather/", {"weather/README.txt": b"about", "__MACOSX/weather/._x.png": b"junk"})
    ref = unpack_task_upload("Archive (3).zip", data, dest, 10 * MB)
    assert ref.startswith("folder:") and ref.endswith("/weather")
    up = create_task(ref)
    original = create_task(f"folder:{folder}")
    assert up.name == "weather" and up.digest == original.digest
    assert unpack_task_upload("again.zip", data, dest, 10 * MB) == ref  # same bytes: same store
    stored = [p.name for p in dest.iterdir()]
    assert len(stored) == 1 and len(stored[0]) == 24  # no temporaries left
    assert not (Path(ref[len("folder:"):]) / "README.txt").exists()


def test_a_zip_with_train_and_test_at_its_root(folder: Path, tmp_path: Path) -> None:
    ref = unpack_task_upload("clouds.zip", _zip(folder), tmp_path / "u", 10 * MB, cache_dir=tmp_path / "cache")
    assert ref.endswith("/clouds")
    assert create_task(ref).digest == create_task(f"folder:{folder}").digest
    assert list((tmp_path / "cache" / "tasks").glob("folder-*.safetensors"))  # decoded once, kept


def test_an_npz_upload(folder: Path, tmp_path: Path, build) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **build.reference(folder), classes=np.array(build.classes))
    ref = unpack_task_upload("weather.npz", buf.getvalue(), tmp_path / "u", 10 * MB)
    assert ref.startswith("npz:") and ref.endswith("/weather.npz")
    assert create_task(ref).digest == create_task(f"folder:{folder}").digest


def _one_entry_zip(name: str, data: bytes = b"x", mode: int | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
            info.create_system = 3
        zf.writestr(info, data)
        zf.writestr("t/train/a/x.png", b"x")
    return buf.getvalue()


@pytest.mark.parametrize("entry,mode,fragment", [
    ("../evil.png", None, "points outside the archive ('..' in its path)"),
    ("t/train/../../../evil.png", None, "points outside the archive"),
    ("/etc/evil.png", None, "has an absolute path"),
    ("C:\\evil.png", None, "has an absolute path"),
    ("t/train/a/link.png", stat.S_IFLNK | 0o777, "is a symbolic link"),
    ("t/train/a/fifo.png", stat.S_IFIFO | 0o644, "is not a regular file or folder"),
])
def test_unsafe_zip_entries_are_refused_and_nothing_is_left(entry: str, mode: int | None, fragment: str,
                                                            tmp_path: Path) -> None:
    dest = tmp_path / "nest" / "uploads"
    with pytest.raises(TaskUploadError) as exc:
        unpack_task_upload("evil.zip", _one_entry_zip(entry, b"/etc/passwd", mode), dest, 10 * MB)
    assert fragment in str(exc.value) and "evil.zip" in str(exc.value)
    assert _listing(dest) == []
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "nest" / "evil.png").exists()


def test_too_large_uploads_are_refused_before_anything_is_stored(folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "uploads"
    data = _zip(folder, "w/")
    with pytest.raises(TaskUploadError, match=r"'w.zip' is 0.0 MB, above the 0 MB limit"):
        unpack_task_upload("w.zip", data, dest, max_bytes=len(data) - 1)
    assert not dest.exists()
    with pytest.raises(TaskUploadError, match="is empty"):
        unpack_task_upload("w.zip", b"", dest, 10 * MB)
    with pytest.raises(TaskUploadError, match="neither a .zip of an image folder"):
        unpack_task_upload("w.tar.gz", data, dest, 10 * MB)
    assert not dest.exists()


def test_zip_bombs_are_refused_from_the_declared_sizes(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("t/train/a/x.png", b"\0" * (8 * MB))  # compresses to a few kB
        zf.writestr("t/test/a/x.png", b"\0")
    data = buf.getvalue()
    assert len(data) < 100_000
    with pytest.raises(TaskUploadError, match="unpacks to 8 MB, above the 0 MB limit"):
        unpack_task_upload("bomb.zip", data, tmp_path / "u", max_bytes=100_000)
    with pytest.raises(TaskUploadError, match="2 files, above the limit of 1"):
        unpack_task_upload("bomb.zip", data, tmp_path / "u", max_bytes=100_000, max_unpacked_bytes=10 * MB,
                           max_files=1)
    buf = io.BytesIO()
    np.savez_compressed(buf, x_train=np.zeros((2000, 3, 32, 32), np.uint8))
    with pytest.raises(TaskUploadError, match="its arrays take 6 MB unpacked"):
        unpack_task_upload("bomb.npz", buf.getvalue(), tmp_path / "u", max_bytes=100_000)
    assert _listing(tmp_path / "u") == []


def test_a_bad_image_inside_names_the_entry(folder: Path, tmp_path: Path) -> None:
    (folder / "train" / "sun" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    dest = tmp_path / "u"
    with pytest.raises(TaskUploadError) as exc:
        unpack_task_upload("weather.zip", _zip(folder, "weather/"), dest, 10 * MB)
    msg = str(exc.value)
    assert "upload 'weather.zip' refused: train/sun/broken.png: not a readable image" in msg
    assert ".tmp-" not in msg and isinstance(exc.value, TaskDataError)
    assert _listing(dest) == []


def test_a_wrong_layout_and_a_bad_npz_are_refused(folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "u"
    with pytest.raises(TaskUploadError, match=r"no train/ and test/ folders .* \(top-level folders: a, b\)"):
        unpack_task_upload("x.zip", _two_tops(folder), dest, 10 * MB)
    with pytest.raises(TaskUploadError, match="'cloudy' only in train/"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for p in sorted(folder.rglob("*.png")):
                rel = p.relative_to(folder).as_posix()
                if not rel.startswith("test/cloudy"):
                    zf.write(p, rel)
        unpack_task_upload("x.zip", buf.getvalue(), dest, 10 * MB)
    buf = io.BytesIO()
    np.savez(buf, x_train=np.zeros((2, 1, 2, 2)), y_train=np.array([0, 1], dtype=object),
             x_test=np.zeros((2, 1, 2, 2)), y_test=np.array([0, 1]))
    with pytest.raises(TaskUploadError, match="upload 'a.npz' refused: a.npz: array 'y_train' holds Python objects"):
        unpack_task_upload("a.npz", buf.getvalue(), dest, 10 * MB)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("t/train/a", b"a file")
        zf.writestr("t/train/a/x.png", b"under that file")
        zf.writestr("t/test/a/x.png", b"x")
    with pytest.raises(TaskUploadError, match="entry 't/train/a/x.png' cannot be unpacked"):
        unpack_task_upload("x.zip", buf.getvalue(), dest, 10 * MB)
    with pytest.raises(TaskUploadError, match="not a readable zip archive"):
        unpack_task_upload("x.zip", b"PK\x03\x04 not really", dest, 10 * MB)
    assert _listing(dest) == []


def _two_tops(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(folder / "train" / "sun" / "0-RGB.png", "a/x.png")
        zf.write(folder / "train" / "sun" / "0-RGB.png", "b/x.png")
    return buf.getvalue()


def test_prune_removes_only_old_uploads(folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "u"
    ref = unpack_task_upload("w.zip", _zip(folder), dest, 10 * MB)
    stored = Path(ref[len("folder:"):]).parent
    mine = dest / "notes.txt"
    mine.write_text("keep")
    stale_tmp = dest / ".tmp-abc"
    stale_tmp.mkdir()
    old = time.time() - 2 * 24 * 3600
    for p in (stored, mine, stale_tmp):
        os.utime(p, (old, old))
    touch_task_upload(ref)  # used now: kept
    assert prune_task_uploads(dest) == 1 and not stale_tmp.exists() and stored.exists() and mine.exists()
    os.utime(stored, (old, old))
    assert prune_task_uploads(dest, older_than_s=3600) == 1
    assert not stored.exists() and mine.exists()
    assert prune_task_uploads(tmp_path / "missing") == 0


def test_task_upload_dir_is_under_the_cache(tmp_path: Path) -> None:
    assert task_upload_dir(tmp_path) == tmp_path / "task-uploads"


def test_store_task_upload_prunes_then_stores_under_the_cache(folder: Path, tmp_path: Path) -> None:
    dest = task_upload_dir(tmp_path)
    stale = Path(unpack_task_upload("old.zip", _zip(folder, "old/"), dest, 10 * MB)[len("folder:"):]).parent
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    ref = store_task_upload("w.zip", _zip(folder), 10 * MB, cache_dir=tmp_path)
    assert ref.startswith(f"folder:{dest}") and create_task(ref).name == "w", "stored under the cache, loadable"
    assert not stale.exists(), "an upload unused for two days is pruned first"
    with pytest.raises(TaskUploadError, match="MB"):
        store_task_upload("w.zip", _zip(folder), 10, cache_dir=tmp_path)


def test_a_typed_path_becomes_a_task_reference() -> None:
    assert user_ref_of_path(" /data/weather ") == "folder:/data/weather"
    assert user_ref_of_path("/data/x.NPZ") == "npz:/data/x.NPZ"
    assert user_ref_of_path("npz:/data/x") == "npz:/data/x" and user_ref_of_path("folder:~/d") == "folder:~/d"


def test_no_typed_path_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="no path given.*npz"):
        user_ref_of_path("  ")
