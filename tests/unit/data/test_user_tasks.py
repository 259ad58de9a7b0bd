"""folder: and npz: tasks: identical tensors from both layouts, content identity, caching, and every bad input."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rtcore
from rtcore.data import (
    TaskDataError,
    TaskUnavailableError,
    check_task_ref,
    create_task,
    is_task_ref,
    task_display_name,
    task_info,
)
from rtcore.data import folder as folder_mod
from rtcore.data import registry
from rtcore.errors import CacheDirError

# --------------------------------------------------------------------------- same images, two layouts


def _save_npz(path: Path, arrays: dict[str, np.ndarray], **extra: np.ndarray) -> Path:
    np.savez(path, **arrays, **extra)
    return path


def test_folder_and_npz_give_identical_tensors(folder: Path, build, tmp_path: Path) -> None:
    ref = build.reference(folder)
    npz = _save_npz(tmp_path / "weather-arrays.npz", ref, classes=np.array(build.classes))
    a = create_task(f"folder:{folder}", cache_dir=tmp_path / "cache")
    b = create_task(f"npz:{npz}", cache_dir=tmp_path / "cache")
    assert a.name == "weather" and b.name == "weather-arrays"
    assert a.classes == b.classes == build.classes
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert a.x_train.dtype == torch.float32 and a.image_shape == (3, 6, 5)
    assert torch.equal(a.x_train, torch.from_numpy(ref["x_train"]).float() / 255)  # exact k/255 pixels
    assert a.digest == b.digest
    assert a.source == f"folder:{folder}" and "6 train" not in a.description and "18 train / 18 test" in a.description


def test_folder_matches_torchvision_image_folder(folder: Path, build) -> None:
    tvd = pytest.importorskip("torchvision.datasets")
    rng = np.random.default_rng(9)
    for sub in ("deeper", "a-b", "Z"):  # nested folders: torchvision sorts folder paths, then file names
        build.image(folder / "train" / "rain" / sub / "0.png", "RGB", rng)
    build.image(folder / "train" / "rain" / "deeper" / "more" / "1.png", "RGB", rng)
    t = create_task(f"folder:{folder}", use_cache=False)
    for split in ("train", "test"):
        ds = tvd.ImageFolder(str(folder / split))
        assert tuple(ds.classes) == t.classes
        assert [y for _, y in ds.samples] == getattr(t, f"y_{split}").tolist()
        x = getattr(t, f"x_{split}")
        for i, (path, _) in enumerate(ds.samples):
            img = np.asarray(ds.loader(path)).transpose(2, 0, 1)  # torchvision's pil_loader: convert("RGB")
            assert torch.equal(x[i], torch.from_numpy(img.copy()).float() / 255), path


def test_class_order_is_sorted_names_and_nested_files_are_read(tmp_path: Path, build) -> None:
    root = tmp_path / "t"
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for c in ("b", "a", "C"):
            build.image(root / split / c / "x.png", "L", rng)
        build.image(root / split / "a" / "deeper" / "y.png", "L", rng)
    (root / "train" / "a" / ".DS_Store").write_bytes(b"junk")
    (root / "train" / "a" / "Thumbs.db").write_bytes(b"junk")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    t = create_task(f"folder:{root}", use_cache=False)
    assert t.classes == ("C", "a", "b")  # Python's sort, as torchvision
    assert t.y_train.tolist() == [0, 1, 1, 2] and t.image_shape == (1, 6, 5)
    nested = np.asarray(Image.open(root / "train" / "a" / "deeper" / "y.png")).copy()
    assert torch.equal(t.x_train[2, 0], torch.from_numpy(nested).float() / 255)  # after a/x.png


def test_grayscale_folder_stays_one_channel(tmp_path: Path, build) -> None:
    root = build.folder(tmp_path / "g", modes=("L", "1"))
    t = create_task(f"folder:{root}", use_cache=False)
    ref = build.reference(root, channels=1)
    assert t.image_shape == (1, 6, 5)
    assert torch.equal(t.x_test, torch.from_numpy(ref["x_test"]).float() / 255)


def test_sixteen_bit_images_keep_their_depth(tmp_path: Path, build) -> None:
    root = build.folder(tmp_path / "d", modes=("I;16", "L"))
    t = create_task(f"folder:{root}", use_cache=False)
    assert t.image_shape == (1, 6, 5) and "16-bit" in t.description
    raw16 = np.asarray(Image.open(root / "train" / "rain" / "0-I16.png")).astype(np.float32)
    assert torch.equal(t.x_train[2, 0], torch.from_numpy(raw16) / 65535)
    raw8 = np.asarray(Image.open(root / "train" / "rain" / "1-L.png")).copy()
    assert torch.equal(t.x_train[3, 0], torch.from_numpy(raw8).float() / 255)  # k*257/65535 == k/255 exactly


def test_mixed_sizes_resized_to_the_most_common_or_refused(tmp_path: Path, build) -> None:
    root = build.folder(tmp_path / "m", modes=("RGB", "L"))
    odd = build.image(root / "test" / "sun" / "2-big.png", "RGB", np.random.default_rng(3), h=12, w=10)
    t = create_task(f"folder:{root}", use_cache=False)
    assert t.image_shape == (3, 6, 5)
    assert "1 image of another size resized to 5x6" in t.description
    expected = np.asarray(Image.open(odd).resize((5, 6), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert torch.equal(t.x_test[-1], torch.from_numpy(expected.copy()).float() / 255)
    with pytest.raises(TaskDataError) as exc:
        create_task(f"folder:{root}", use_cache=False, mixed_sizes="refuse")
    msg = str(exc.value)
    assert "2 different sizes" in msg and "5x6 (12" in msg and "10x12 (1, e.g. test/sun/2-big.png)" in msg
    assert "mixed_sizes='resize'" in msg
    with pytest.raises(ValueError, match="mixed_sizes='squash'"):
        create_task(f"folder:{root}", mixed_sizes="squash")


def test_float_and_uint8_npz(tmp_path: Path, build) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 3, 3)).astype(np.float64)
    y = np.array([0, 1, 0, 1])
    p = _save_npz(tmp_path / "f.npz", {"x_train": x, "y_train": y, "x_test": x[:2], "y_test": y[:2].astype(np.uint8)})
    t = create_task(f"npz:{p}")
    assert t.classes == ("0", "1") and t.x_train.dtype == torch.float32 and t.y_test.dtype == torch.int64
    assert torch.equal(t.x_train, torch.from_numpy(x.astype(np.float32)))


# --------------------------------------------------------------------------- references


def test_check_task_ref_is_cheap_and_canonical(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               build) -> None:
    monkeypatch.chdir(folder.parent)
    npz = _save_npz(tmp_path / "a.npz", build.reference(folder))

    def no_decoding(*args, **kwargs):
        raise AssertionError("check_task_ref must not open images")

    monkeypatch.setattr(folder_mod, "_open", no_decoding)
    assert check_task_ref("folder:weather") == f"folder:{folder}"
    assert check_task_ref(f"npz:{npz}") == f"npz:{npz}"
    assert check_task_ref("shapes") == "shapes"
    with pytest.raises(ValueError, match="unknown task 'nope'.*shapes.*folder:PATH"):
        check_task_ref("nope")


def test_is_task_ref_looks_at_the_string_only() -> None:
    assert is_task_ref("shapes") and is_task_ref("folder:/no/such/dir") and is_task_ref("npz:x.npz")
    assert not is_task_ref("nope") and not is_task_ref("folder:") and not is_task_ref("npz:  ")
    assert not is_task_ref(3) and not is_task_ref(None)


def test_task_info_and_display_name_of_a_reference(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = task_info(f"folder:{folder}")
    assert info.domain == "user" and info.offline and info.name == f"folder:{folder}"
    assert str(folder) in info.description
    assert torch.equal(info.loader(cache_dir=None).x_train, create_task(f"folder:{folder}").x_train)
    missing = task_info("npz:~/no/such/file.npz")  # the string alone: no file looked at
    assert missing.name == f"npz:{Path.home()}/no/such/file.npz" and missing.domain == "user"
    monkeypatch.chdir(folder)
    assert task_display_name("folder:.") == "weather" and task_display_name("npz:a/b/c.npz") == "c"
    assert task_display_name("shapes") == "shapes"
    with pytest.raises(ValueError, match="unknown task"):
        task_display_name("nope")


def test_name_option(folder: Path) -> None:
    assert create_task(f"folder:{folder}", name="clouds").name == "clouds"
    with pytest.raises(ValueError, match="apply to folder:/npz: references only"):
        create_task("shapes", name="x")
    with pytest.raises(ValueError, match="non-empty"):
        create_task(f"folder:{folder}", name=" ")


# --------------------------------------------------------------------------- content identity and caches


def _rewrite_pixel(path: Path, value: int) -> None:
    a = np.asarray(Image.open(path).convert("RGB")).copy()
    a[0, 0, 0] = value
    Image.fromarray(a).save(path, format="PNG")


def test_a_changed_pixel_is_seen_at_once(folder: Path, tmp_path: Path) -> None:
    ref = f"folder:{folder}"
    first = create_task(ref, cache_dir=tmp_path / "cache")
    target = folder / "test" / "rain" / "0-RGB.png"
    old = int(np.asarray(Image.open(target))[0, 0, 0])
    _rewrite_pixel(target, (old + 1) % 256)  # just now: within the racy window, so no cache may answer
    second = create_task(ref, cache_dir=tmp_path / "cache")
    assert second.digest != first.digest
    assert round(float(second.x_test[6, 0, 0, 0]) * 255) == (old + 1) % 256


def test_a_changed_file_with_an_old_mtime_is_seen(folder: Path, tmp_path: Path, build) -> None:
    ref, cache = f"folder:{folder}", tmp_path / "cache"
    first = create_task(ref, cache_dir=cache)
    assert create_task(ref, cache_dir=cache) is first  # memoised while unchanged
    target = folder / "train" / "sun" / "0-RGB.png"
    _rewrite_pixel(target, 7 if int(np.asarray(Image.open(target))[0, 0, 0]) != 7 else 8)
    build.age(folder, 500.0)  # another mtime, outside the racy window: the listing changed
    second = create_task(ref, cache_dir=cache)
    assert second is not first and second.digest != first.digest
    assert len(list((cache / "tasks").glob("folder-*.safetensors"))) == 2


def test_other_pixels_with_the_same_names_sizes_and_mtimes_never_read_anothers_cache(tmp_path: Path, build) -> None:
    """Two folders alike in every stat field (uncompressed BMPs of one size, one mtime, as zips restore them) but
    with other pixels: the second is decoded, not served the first one's arrays."""
    cache, stamp = tmp_path / "cache", 1_600_000_000
    folders = []
    for seed in (1, 2):
        root = tmp_path / f"t{seed}" / "weather"
        rng = np.random.default_rng(seed)
        for split in ("train", "test"):
            for c in ("rain", "sun"):
                path = root / split / c / "0.bmp"
                path.parent.mkdir(parents=True)
                Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(path, format="BMP")
                os.utime(path, (stamp, stamp))
        folders.append(root)
    sizes = [sorted(p.stat().st_size for p in f.rglob("*.bmp")) for f in folders]
    assert sizes[0] == sizes[1]
    a = create_task(f"folder:{folders[0]}", cache_dir=cache)
    b = create_task(f"folder:{folders[1]}", cache_dir=cache)
    fresh = create_task(f"folder:{folders[1]}", use_cache=False)
    assert torch.equal(b.x_train, fresh.x_train) and not torch.equal(a.x_train, b.x_train)


def test_a_moved_folder_keeps_its_digest_and_cache(folder: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = create_task(f"folder:{folder}", cache_dir=cache)
    moved = tmp_path / "elsewhere" / "weather"
    moved.parent.mkdir()
    shutil.move(str(folder), str(moved))  # same file system: mtimes kept

    def no_decoding(*args, **kwargs):
        raise AssertionError("a moved folder must be served from the task cache")

    monkeypatch.setattr(folder_mod, "_decode_folder", no_decoding)
    second = create_task(f"folder:{moved}", cache_dir=cache)
    assert second.digest == first.digest
    assert second.description == first.description.replace(str(folder), str(moved))
    assert second.source == f"folder:{moved}"


def test_a_corrupt_folder_cache_is_read_again(folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    first = create_task(f"folder:{folder}", cache_dir=cache)
    (entry,) = (cache / "tasks").glob("folder-*.safetensors")
    data = bytearray(entry.read_bytes())
    data[-1] ^= 0xFF  # one pixel byte
    entry.write_bytes(bytes(data))
    registry.clear_task_cache()
    with caplog.at_level(logging.WARNING):
        again = create_task(f"folder:{folder}", cache_dir=cache)
    assert again.digest == first.digest and "sha256" in caplog.text
    registry.clear_task_cache()
    assert create_task(f"folder:{folder}", cache_dir=cache).digest == first.digest  # rewritten, valid


def test_an_npz_changed_on_disk_is_read_again(tmp_path: Path, build, folder: Path) -> None:
    arrays = build.reference(folder)
    p = _save_npz(tmp_path / "a.npz", arrays)
    build.age(tmp_path, 100)
    first = create_task(f"npz:{p}")
    assert create_task(f"npz:{p}") is first
    arrays["x_test"][0, 0, 0, 0] ^= 1
    _save_npz(p, arrays)
    build.age(tmp_path, 50)
    assert create_task(f"npz:{p}").digest != first.digest


# --------------------------------------------------------------------------- no cache, no writes outside the cache dir


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def small_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shapes generator with 30 / 15 images (the cache logic unchanged), for speed."""
    from rtcore.data import generators

    fn, classes, version = generators.GENERATORS["shapes"]

    def small(n_train: int = 30, n_test: int = 15, seed: int = 0):
        return fn(n_train=n_train, n_test=n_test, seed=seed)

    monkeypatch.setitem(generators.GENERATORS, "shapes", (small, classes, version))


def test_no_cache_writes_nothing_anywhere(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          small_shapes: None) -> None:
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RTCORE_CACHE_DIR", raising=False)
    monkeypatch.delenv("RTCORE_DATA_DIR", raising=False)
    for cdir in (cache, None):
        create_task("shapes", seed=5, cache_dir=cdir, use_cache=False)
        create_task(f"folder:{folder}", cache_dir=cdir, use_cache=False)
    assert _files(home) == [] and _files(cache) == []


def test_a_cache_dir_keeps_every_write_inside_it(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 small_shapes: None) -> None:
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RTCORE_CACHE_DIR", raising=False)
    monkeypatch.delenv("RTCORE_DATA_DIR", raising=False)
    create_task("shapes", seed=6, cache_dir=cache)
    create_task(f"folder:{folder}", cache_dir=cache)
    with pytest.raises(TaskUnavailableError, match=str(cache / "data")):
        create_task("mnist", cache_dir=cache)  # the download folder is under the cache dir
    assert _files(home) == []
    assert {p.split("-")[0] for p in _files(cache / "tasks")} == {"shapes", "folder"}


@pytest.mark.parametrize("bad", ["", "  "])
def test_an_empty_cache_dir_is_an_error(bad: str) -> None:
    with pytest.raises(CacheDirError, match="is empty"):
        create_task("shapes", cache_dir=bad)
    with pytest.raises(ValueError, match="root='' is empty"):
        create_task("shapes", root="")


def test_a_failed_download_leaves_no_empty_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tvu

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    monkeypatch.delenv("RTCORE_DATA_DIR", raising=False)
    cache = tmp_path / "cache"
    for name in ("mnist", "cifar10"):
        with pytest.raises(TaskUnavailableError, match="could not download"):
            create_task(name, cache_dir=cache, download=True)
    assert not (cache / "data").exists()
    data = tmp_path / "data"  # an existing data folder keeps what it had, and gets nothing new
    (data / "mine").mkdir(parents=True)
    with pytest.raises(TaskUnavailableError):
        create_task("mnist", root=data, download=True)
    assert _files(data) == ["mine"]


# --------------------------------------------------------------------------- registry


def test_registry_verbs_and_alias(small_shapes: None) -> None:
    assert rtcore.load_task is create_task  # the older name, kept in rtcore only
    assert "user" in registry.DOMAINS
    with pytest.raises(ValueError, match="mark references"):
        registry.register_task("folder:x", description="d", domain="near", offline=True)

    calls = []

    @registry.register_task("test-tiny-task", description="tiny", domain="user", offline=True)
    def _loader(*, seed: int):  # a loader taking only the keywords it needs
        calls.append(seed)
        return create_task("shapes")

    try:
        assert "test-tiny-task" in registry.list_tasks(offline_only=True)
        assert create_task("test-tiny-task", seed=3).name == "shapes" and calls == [3]
        with pytest.raises(ValueError, match="already registered"):
            registry.register_task("test-tiny-task", description="d", domain="near", offline=True)
    finally:
        registry.TASKS.unregister("test-tiny-task")


# --------------------------------------------------------------------------- bad folders


def _messages(exc: pytest.ExceptionInfo) -> str:
    return str(exc.value)


@pytest.mark.parametrize("case,fragments", [
    ("corrupt", ["train/rain/bad.png", "not a readable image", "re-save it"]),
    ("truncated", ["test/sun/0-RGB.png", "cannot be decoded"]),
    ("one-split-only", ["'fog' only in train/", "same class folders"]),
    ("empty-class", ["class folder test/rain holds no images", "remove the class 'rain'"]),
    ("no-test", ["has no test/ folder", "it holds: train", "test/<class>/<image>"]),
    ("one-class", ["has 1 class ('cloudy')", "at least 2"]),
    ("not-an-image", ["train/sun/notes.txt", "not an image file", "'.txt'"]),
    ("loose-images", ["train/ holds images outside class folders (x.png)", "move each image into train/<class>/"]),
    ("float-image", ["train/sun/f.tif", "mode 'F'", "no defined [0, 1] range"]),
    ("no-classes", ["train/ has no class folders"]),
    ("fifo", ["train/sun/pipe.png", "not a regular file"]),
])
def test_bad_folders_are_named_with_the_fix(case: str, fragments: list[str], folder: Path) -> None:
    if case == "corrupt":
        (folder / "train" / "rain" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    elif case == "truncated":
        p = folder / "test" / "sun" / "0-RGB.png"
        p.write_bytes(p.read_bytes()[:60])
    elif case == "one-split-only":
        shutil.copytree(folder / "train" / "sun", folder / "train" / "fog")
    elif case == "empty-class":
        for p in (folder / "test" / "rain").iterdir():
            p.unlink()
    elif case == "no-test":
        shutil.rmtree(folder / "test")
    elif case == "one-class":
        for split in ("train", "test"):
            for c in ("rain", "sun"):
                shutil.rmtree(folder / split / c)
    elif case == "not-an-image":
        (folder / "train" / "sun" / "notes.txt").write_text("hello")
    elif case == "loose-images":
        shutil.copy(folder / "train" / "sun" / "0-RGB.png", folder / "train" / "x.png")
    elif case == "float-image":
        Image.fromarray(np.zeros((6, 5), np.float32)).save(folder / "train" / "sun" / "f.tif")
    elif case == "no-classes":
        shutil.rmtree(folder / "train")
        (folder / "train").mkdir()
    elif case == "fifo":
        os.mkfifo(folder / "train" / "sun" / "pipe.png")
    with pytest.raises(TaskDataError) as exc:
        create_task(f"folder:{folder}", use_cache=False)
    msg = _messages(exc)
    for f in fragments:
        assert f in msg, (f, msg)
    assert isinstance(exc.value, ValueError)
    if case not in ("corrupt", "truncated", "float-image"):  # layout errors: found by the cheap check too
        with pytest.raises(TaskDataError, match=fragments[0].replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[").replace("]", r"\]")):
            check_task_ref(f"folder:{folder}")


def test_missing_paths_are_task_unavailable(tmp_path: Path) -> None:
    for ref in (f"folder:{tmp_path}/nope", f"npz:{tmp_path}/nope.npz"):
        with pytest.raises(TaskUnavailableError, match=r"no such (folder|file).*relative path"):
            create_task(ref)
        with pytest.raises(TaskUnavailableError):
            check_task_ref(ref)


def test_a_file_given_as_folder_and_a_folder_given_as_npz(folder: Path, tmp_path: Path, build) -> None:
    npz = _save_npz(tmp_path / "a.npz", build.reference(folder))
    with pytest.raises(TaskDataError, match=r"is a file, not a folder \(an array file\? use npz:"):
        create_task(f"folder:{npz}")
    with pytest.raises(TaskDataError, match=r"is a folder, not an .npz file \(an image folder\? use folder:"):
        create_task(f"npz:{folder}")
    with pytest.raises(ValueError, match="names no path"):
        create_task("folder:")


# --------------------------------------------------------------------------- bad npz


def _good_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (6, 1, 4, 4), dtype=np.uint8), "y_train": np.array([0, 1, 2] * 2),
            "x_test": rng.integers(0, 256, (3, 1, 4, 4), dtype=np.uint8), "y_test": np.array([2, 1, 0])}


@pytest.mark.parametrize("change,fragments,cheap", [
    (dict(y_train=np.array([0, 1, 2])), ["y_train has 3 labels but x_train has 6 images"], True),
    (dict(y_test=np.array([2, 1, 5])), ["y_test[2] = 5 is out of range 0..2", "classes"], False),
    (dict(y_test=np.array([2, -1, 0])), ["y_test[1] = -1 is negative"], False),
    (dict(y_train=np.array([0, 1, 0] * 2)), ["classes ['c'] have no train images"], False),
    (dict(x_train=np.zeros((6, 4, 4), np.uint8)), ["x_train has shape (6, 4, 4), not (N, C, H, W)",
                                                   "x_train[:, None]"], True),
    (dict(x_train=np.zeros((6, 4, 4, 3), np.uint8)), ["4 channels, not 1 or 3", "transpose(0, 3, 1, 2)"], True),
    (dict(x_train=np.zeros((6, 1, 4, 4), np.int32)), ["x_train has dtype int32, not uint8 or float"], True),
    (dict(y_train=np.array([0.0, 1, 2] * 2)), ["y_train has dtype float64, not an integer type",
                                               "astype(np.int64)"], True),
    (dict(x_test=np.full((3, 1, 4, 4), 255.0)), ["x_test has values outside [0, 1]", "span [255, 255]",
                                                 "divide by 255"], False),
    (dict(x_test=np.full((3, 1, 4, 4), np.nan, np.float32)), ["x_test has values outside [0, 1]",
                                                              "48 NaN or infinite"], False),
    (dict(x_test=np.zeros((3, 1, 5, 5), np.uint8)), ["(1, 4, 4) and test images (1, 5, 5) differ"], True),
    (dict(y_test=np.array([[2], [1], [0]])), ["y_test has shape (3, 1), not (N,)", "reshape(-1)"], True),
    (dict(classes=np.array(["a", "a", "b"])), ["duplicate names ['a']"], False),
    (dict(classes=np.array([1, 2, 3])), ["classes has dtype int64", "list of strings"], False),
])
def test_bad_npz_are_named_with_the_fix(change: dict, fragments: list[str], cheap: bool, tmp_path: Path) -> None:
    arrays = {**_good_arrays(), "classes": np.array(["a", "b", "c"])}
    arrays.update(change)
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(TaskDataError) as exc:
        create_task(f"npz:{p}")
    msg = str(exc.value)
    assert f"npz:{p}" in msg and "Fix:" in msg
    for f in fragments:
        assert f in msg, (f, msg)
    if cheap:
        with pytest.raises(TaskDataError):
            check_task_ref(f"npz:{p}")
    else:
        assert check_task_ref(f"npz:{p}") == f"npz:{p}"


def test_npz_with_object_arrays_is_refused_without_unpickling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    arrays = _good_arrays()
    arrays["y_train"] = np.array([0, 1, 2, 0, 1, 2], dtype=object)
    p = tmp_path / "obj.npz"
    np.savez(p, **arrays)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("an npz must never be unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    for fn in (create_task, check_task_ref):
        with pytest.raises(TaskDataError, match="'y_train' holds Python objects.*refused because reading them would "
                                                "unpickle"):
            fn(f"npz:{p}")


def test_npz_missing_keys_single_class_and_not_a_zip(tmp_path: Path) -> None:
    arrays = _good_arrays()
    p = tmp_path / "m.npz"
    np.savez(p, **{k: v for k, v in arrays.items() if k != "x_test"})
    with pytest.raises(TaskDataError, match=r"has no array x_test \(it holds: x_train, y_test, y_train\)"):
        create_task(f"npz:{p}")
    one = {**arrays, "y_train": np.zeros(6, np.int64), "y_test": np.zeros(3, np.int64)}
    np.savez(p, **one)
    with pytest.raises(TaskDataError, match="has 1 class; a classification task needs at least 2"):
        create_task(f"npz:{p}")
    p.write_bytes(b"not a zip")
    with pytest.raises(TaskDataError, match="is not an .npz archive"):
        create_task(f"npz:{p}")


@pytest.mark.parametrize("label", [10**6, 10**12])
def test_a_huge_label_is_refused_at_once_with_a_short_message(tmp_path: Path, label: int) -> None:
    """A 1 kB npz whose label would mean a million (or a trillion) classes: no name per class is built."""
    x = np.zeros((2, 1, 4, 4), np.uint8)
    p = tmp_path / "huge.npz"
    np.savez(p, x_train=x, y_train=np.array([0, label]), x_test=x, y_test=np.array([0, 1]))
    with pytest.raises(TaskDataError, match=rf"y_train\[1\] = {label} cannot be a class index: with 2 train and 2 "
                                            r"test images there are at most 2 classes") as info:
        create_task(f"npz:{p}")
    assert len(str(info.value)) < 400
