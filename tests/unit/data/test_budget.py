"""The input memory budget (rtcore.budget): every reader compares an input's decoded size with it before decoding.

The two bombs of the field report are measured in a fresh process (peak RSS from resource.getrusage): a folder of
14 one-bit PNGs of 6000 x 6000 pixels (a few kB each on disk) and an npz whose arrays declare 12000 x 3 x 224 x 224
with a payload of a few bytes. Both are refused from their headers with the budget's message, far below 3 GB.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtcore.budget import CHUNK_ROWS, DEFAULT_MAX_INPUT_BYTES, ENV_MAX_INPUT_GB, MemoryBudget, input_budget
from rtcore.data import TaskDataError, TaskUploadError, create_task, unpack_task_upload
from rtcore.data.npz import read_npz
from rtcore.data.refs import TaskTooLargeError
from rtcore.data.user import load_user_task
from rtcore.errors import InputTooLargeError

#: measured in a fresh interpreter: load a task, print the error and the peak resident memory (bytes, Linux)
PEAK = """
import json, resource, sys
import rtcore
try:
    rtcore.create_task(sys.argv[1], use_cache=False)
    out = {"error": None}
except Exception as e:
    out = {"type": type(e).__name__, "error": str(e)}
out["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(out))
"""
GB = 10**9


def _peak(ref: str, env: dict[str, str] | None = None) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", PEAK, ref], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _png_folder(root: Path, size: tuple[int, int], n: int, mode: str = "1") -> Path:
    """``n`` PNGs of ``size`` (copies of one file: encoding is the slow part), split over two classes."""
    one = root / "one.png"
    Image.new(mode, size).save(one)
    for i in range(n):
        split, cls = ("train", "test")[i % 2], "ab"[(i // 2) % 2]
        (root / "task" / split / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(one, root / "task" / split / cls / f"{i}.png")
        os.utime(root / "task" / split / cls / f"{i}.png", (time.time() - 60, time.time() - 60))  # not racy
    return root / "task"


def _npz_declaring(path: Path, shapes: dict[str, tuple[tuple[int, ...], str]], payload: int = 16) -> Path:
    """An npz whose members' headers declare ``shapes`` (with dtype strings) but hold ``payload`` bytes each."""
    with zipfile.ZipFile(path, "w") as zf:
        for key, (shape, descr) in shapes.items():
            with zf.open(f"{key}.npy", "w") as fh:
                np.lib.format.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False, "shape": shape})
                fh.write(b"\0" * payload)
    return path


def test_the_budget_comes_from_the_caller_then_the_environment_then_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_MAX_INPUT_GB, raising=False)
    assert input_budget().max_bytes == DEFAULT_MAX_INPUT_BYTES == 4 * GB
    monkeypatch.setenv(ENV_MAX_INPUT_GB, "12.5")
    assert input_budget() == MemoryBudget(12_500_000_000, f"{ENV_MAX_INPUT_GB}=12.5")
    assert input_budget(2e9).max_bytes == 2 * GB  # the caller wins
    b = MemoryBudget(10**6)
    assert input_budget(b) is b
    # a chunk of CHUNK_ROWS images at the pixel limit, float32 RGB, fits the budget; one pixel more does not
    assert b.max_image_pixels == 10**6 // (CHUNK_ROWS * 3 * 4) == 2604
    assert b.pixels_problem("x", 2604, 1) is None and "2605x1 pixels" in str(b.pixels_problem("x", 2605, 1))
    assert b.bytes_problem("x", 10**6) is None and "needs 1 MB" in str(b.bytes_problem("x", 10**6 + 1))
    for bad in ["0", "-1", "lots", "nan", "inf"]:
        monkeypatch.setenv(ENV_MAX_INPUT_GB, bad)
        with pytest.raises(ValueError, match=f"{ENV_MAX_INPUT_GB}='{bad}' must be a positive number of GB"):
            input_budget()
    for bad_value in [0, -5, True, "4e9", float("nan")]:
        with pytest.raises(ValueError, match="max_input_bytes=.* must be a positive number of bytes"):
            input_budget(bad_value)  # type: ignore[arg-type]


def test_a_folder_of_huge_one_bit_pngs_is_refused_before_decoding(tmp_path: Path) -> None:
    folder = _png_folder(tmp_path, (6000, 6000), 14)
    assert sum(p.stat().st_size for p in folder.rglob("*.png")) < 1_000_000  # small on disk
    out = _peak(f"folder:{folder}")
    assert out["type"] == "TaskTooLargeError", out
    msg = str(out["error"])
    assert str(folder) in msg and "6000x6000 pixels" in msg and "10.4-megapixel limit per image" in msg
    assert "input memory budget of 4 GB" in msg and "--max-input-gb" in msg and ENV_MAX_INPUT_GB in msg
    assert int(out["peak"]) < 3 * GB, f"peak {int(out['peak']) / 1e9:.2f} GB"  # type: ignore[call-overload]
    # Pillow's own guard, set to the same limit, stopped it (36 > 2 x 10.4 megapixels); a budget whose limit is
    # above half the image's pixels leaves it to the header check: the same message
    limit = MemoryBudget(8 * 10**9)  # 20.8 megapixels
    with pytest.raises(TaskTooLargeError, match="6000x6000 pixels .*above the 20.8-megapixel limit"), \
            pytest.warns(Image.DecompressionBombWarning):  # Pillow's guard warns between its limit and twice it
        load_user_task(f"folder:{folder}", max_input_bytes=limit)
    assert Image.MAX_IMAGE_PIXELS == limit.max_image_pixels  # set, never disabled


def test_an_npz_declaring_huge_arrays_is_refused_from_its_headers(tmp_path: Path) -> None:
    path = _npz_declaring(tmp_path / "bomb.npz", {
        "x_train": ((12000, 3, 224, 224), "|u1"), "y_train": ((12000,), "<i8"),
        "x_test": ((10, 3, 224, 224), "|u1"), "y_test": ((10,), "<i8")})
    assert path.stat().st_size < 10_000
    out = _peak(f"npz:{path}")
    assert out["type"] == "TaskTooLargeError", out
    need = 4 * 12010 * 3 * 224 * 224 + 8 * 12010
    assert f"npz:{path}: 12000 + 10 images of 3x224x224 (float32) needs {need / 1e9:.4g} GB" in str(out["error"])
    assert "budget of 4 GB" in str(out["error"]) and "Traceback" not in str(out["error"])
    assert int(out["peak"]) < 3 * GB  # type: ignore[call-overload]
    # the same file under a budget that holds it gets past the size check to the truncated data
    with pytest.raises(TaskDataError, match="cannot be read|corrupt") as exc:
        read_npz(path, max_input_bytes=need)
    assert not isinstance(exc.value, InputTooLargeError)


def test_the_npz_budget_is_exact_at_its_boundary(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "t.npz"
    np.savez(path, x_train=rng.integers(0, 256, (100, 1, 16, 16), dtype=np.uint8), y_train=np.arange(100) % 2,
             x_test=rng.integers(0, 256, (10, 1, 16, 16), dtype=np.uint8), y_test=np.arange(10) % 2)
    need = 4 * 110 * 256 + 8 * 110  # images as float32, labels as int64
    arrays, _ = read_npz(path, max_input_bytes=need)
    assert arrays["x_train"].shape == (100, 1, 16, 16)
    with pytest.raises(TaskTooLargeError, match=f"needs {need / 1e6:.4g} MB in memory once decoded"):
        read_npz(path, max_input_bytes=need - 1)


def test_folder_budget_covers_the_decoded_cache_and_the_image_size(tmp_path: Path) -> None:
    folder = _png_folder(tmp_path, (16, 16), 8, mode="L")
    cache = tmp_path / "cache"
    need = 4 * 8 * 16 * 16  # 8 gray images as float32
    task = load_user_task(f"folder:{folder}", cache_dir=cache, max_input_bytes=MemoryBudget(10**6))
    assert task.x_train.shape == (4, 1, 16, 16) and list((cache / "tasks").glob("folder-*"))
    with pytest.raises(TaskTooLargeError, match=f"8 images of 1x16x16 \\(float32\\) needs {need} bytes .* of "
                                                f"{need - 1} bytes"):
        load_user_task(f"folder:{folder}", cache_dir=cache, max_input_bytes=MemoryBudget(need - 1))  # from the cache
    chunk = 16 * 16 * CHUNK_ROWS * 12  # 32 such images, float32 RGB
    with pytest.raises(TaskTooLargeError, match="16x16 pixels"):  # from the cache's header
        load_user_task(f"folder:{folder}", cache_dir=cache, max_input_bytes=MemoryBudget(chunk - 1))
    with pytest.raises(TaskTooLargeError, match="16x16 pixels"), pytest.warns(Image.DecompressionBombWarning):
        load_user_task(f"folder:{folder}", max_input_bytes=MemoryBudget(chunk - 1))  # from the images' headers
    assert load_user_task(f"folder:{folder}", max_input_bytes=MemoryBudget(chunk)).x_test.shape == (4, 1, 16, 16)


def test_the_registry_and_uploads_take_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _png_folder(tmp_path, (16, 16), 8, mode="L")
    with pytest.raises(TaskTooLargeError):
        create_task(f"folder:{folder}", use_cache=False, max_input_bytes=1000)
    monkeypatch.setenv(ENV_MAX_INPUT_GB, "0.000001")  # 1000 bytes: every path without an argument uses it
    with pytest.raises(TaskTooLargeError, match=f"{ENV_MAX_INPUT_GB}=0.000001"):
        load_user_task(f"folder:{folder}")
    data = (tmp_path / "up.zip")
    with zipfile.ZipFile(data, "w") as zf:
        for p in folder.rglob("*.png"):
            zf.write(p, f"w/{p.relative_to(folder)}")
    with pytest.raises(TaskUploadError, match="refused: .*pixels"):
        unpack_task_upload("w.zip", data.read_bytes(), tmp_path / "u", 10**6)
    monkeypatch.delenv(ENV_MAX_INPUT_GB)
    assert unpack_task_upload("w.zip", data.read_bytes(), tmp_path / "u", 10**6).startswith("folder:")
