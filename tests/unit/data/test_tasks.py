"""Tests for rtcore.data (tasks), rtcore.data.idx and rtcore.data.generators (offline, no network)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from rtcore.data import fashion_mnist as fm
from rtcore.data import online, registry
from rtcore.data import generators, task_cache
from rtcore.data.generators import balanced_labels, generate_glyphs, generate_shapes
from rtcore.data.task_cache import cache_path, cached_generate
from rtcore.data.cifar import CIFARFormatError, read_cifar_bin, write_cifar_bin
from rtcore.data.idx import IDXFormatError, read_idx, write_idx
from rtcore.data import (
    HELDOUT_START,
    Task,
    TaskUnavailableError,
    list_tasks,
    create_task,
    load_upstream,
    relabel_task,
    subset_task,
    task_info,
)

OFFLINE = ["fmnist-novel", "fmnist-seen", "fmnist-torso", "shapes", "glyphs"]
ONLINE = ["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"]
FMNIST_TASKS = ["fmnist-novel", "fmnist-seen", "fmnist-torso"]
_ORIG_FMNIST_ENV = os.environ.get("RTCORE_FASHION_MNIST")

# Pinned output of the pure-numpy shapes generator: catches accidental changes and
# cross-machine differences (bump generators._SHAPES_VERSION when changing it on purpose).
SHAPES_30_15_SEED0_SHA256 = "d90d047f0625fa8e1e22831be052022630924505bcc8e8225a25cdabf4564807"
GLYPHS_30_15_SEED0_SHA256 = {"13.0.0": "112a2aac9e891277caeb341cdebffba5e5deca8cc1f260df3b1ef700b5cff47d"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated-task cache for the module, so shapes/glyphs are generated once."""
    return tmp_path_factory.mktemp("rtcore-cache")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, shared_cache: Path, tmp_path: Path):
    """Never touch the user's home: caches and data dirs point into temp folders."""
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(shared_cache))
    monkeypatch.setenv("RTCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RTCORE_FASHION_MNIST", raising=False)
    registry._MEMO.clear()  # raw Fashion-MNIST arrays stay cached: keyed by folder, files never change
    yield
    registry._MEMO.clear()


@pytest.fixture
def bundled_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide any system Fashion-MNIST copy so only the bundled subset can be found."""
    monkeypatch.setattr(fm, "DEBIAN_FMNIST_DIR", tmp_path / "no-debian")


def _full_copy_dir() -> Path | None:
    """A folder with a full Fashion-MNIST copy on this machine, or None."""
    for cand in (_ORIG_FMNIST_ENV, str(fm.DEBIAN_FMNIST_DIR)):
        if not cand:
            continue
        found = fm._fmnist_folder_in(Path(cand))
        if found is not None and fm._read_fmnist_folder(str(found.resolve())).full:
            return found
    return None


@pytest.fixture
def full_copy() -> Path:
    """Path of a full Fashion-MNIST copy; skips the test if there is none."""
    found = _full_copy_dir()
    if found is None:
        pytest.skip("no full Fashion-MNIST copy on this machine")
    return found


def _row_hashes(x: torch.Tensor | np.ndarray) -> set[bytes]:
    """Hash of each image, via its uint8 pixels (float tasks are exactly k/255)."""
    if isinstance(x, torch.Tensor):
        x = (x * 255.0).round().to(torch.uint8).numpy()
    x = x.reshape(x.shape[0], -1)
    return {hashlib.sha1(row.tobytes()).digest() for row in x}


def _tiny_task(n_per_class: int = 4, k: int = 3) -> Task:
    """Hand-made task whose image i is filled with value i/255 (to track rows)."""
    n = n_per_class * k
    y = torch.arange(n) % k
    x = (torch.arange(n, dtype=torch.float32) / 255.0).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()
    return Task(name="tiny", x_train=x, y_train=y, x_test=x.clone(), y_test=y.clone(),
                classes=tuple(f"c{i}" for i in range(k)), source="test", description="tiny")


# --------------------------------------------------------------------------- registry


def test_registry_lists_all_tasks() -> None:
    assert set(OFFLINE + ONLINE) <= set(list_tasks())
    assert set(list_tasks(offline_only=True)) == set(OFFLINE)
    for name in OFFLINE:
        spec = task_info(name)
        assert spec.offline and spec.name == name and spec.domain in registry.DOMAINS
        assert spec.description
    for name in ONLINE:
        assert not task_info(name).offline


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(ValueError) as exc:
        create_task("no-such-task")
    msg = str(exc.value)
    assert "no-such-task" in msg
    for name in OFFLINE + ONLINE:
        assert name in msg


def test_bad_seed_rejected() -> None:
    with pytest.raises(ValueError, match="-1"):
        create_task("shapes", seed=-1)


def test_register_duplicate_name_rejected() -> None:
    with pytest.raises(ValueError, match="shapes"):
        registry.register_task("shapes", description="x", domain="near", offline=True)(lambda **k: None)


# --------------------------------------------------------------------------- offline tasks


def _check_task(t: Task, name: str) -> None:
    assert t.name == name
    for x, y in ((t.x_train, t.y_train), (t.x_test, t.y_test)):
        assert x.dim() == 4 and tuple(x.shape[1:]) == (1, 28, 28)
        assert x.dtype == torch.float32 and x.is_contiguous()
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
        assert x.shape[0] > 0
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert int(y.min()) >= 0 and int(y.max()) < t.num_classes
        # every class appears in both splits
        assert torch.bincount(y, minlength=t.num_classes).min() > 0
    assert len(t.classes) == t.num_classes
    assert t.source and t.description


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_task_loads(name: str) -> None:
    t = create_task(name)
    _check_task(t, name)
    assert create_task(name) is t  # memoised


@pytest.mark.parametrize("name", FMNIST_TASKS)
def test_fmnist_tasks_from_bundled_subset(name: str, bundled_only: None) -> None:
    t = create_task(name)
    _check_task(t, name)
    assert t.source.startswith("bundled subset")
    assert "50000-55999" in t.source
    if name == "fmnist-torso":  # all ten classes: the whole subset
        assert t.x_train.shape[0] == 6000 and t.x_test.shape[0] == 4000


def test_fmnist_task_classes() -> None:
    assert create_task("fmnist-novel").classes == ("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert create_task("fmnist-seen").classes == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
    assert create_task("fmnist-torso").classes == ("torso garment", "other")


def test_fmnist_torso_grouping(full_copy: Path) -> None:
    torso = create_task("fmnist-torso", root=str(full_copy))
    data = fm._read_fmnist_folder(str(full_copy.resolve()))
    y10 = data.y_test
    expected = np.where(np.isin(y10, [0, 2, 3, 4, 6]), 0, 1)
    assert np.array_equal(torso.y_test.numpy(), expected)


def test_generated_tasks_are_balanced() -> None:
    for name, (n_tr, n_te, k) in {"shapes": (3000, 1500, 3), "glyphs": (5000, 2000, 10)}.items():
        t = create_task(name)
        assert t.x_train.shape[0] == n_tr and t.x_test.shape[0] == n_te
        for y, n in ((t.y_train, n_tr), (t.y_test, n_te)):
            counts = torch.bincount(y, minlength=k)
            assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == n


def test_generated_images_are_antialiased_not_binary() -> None:
    x = create_task("shapes").x_train
    frac = ((x > 0) & (x < 1)).float().mean()
    assert float(frac) > 0.005  # grey edge pixels exist


def test_root_with_torchvision_layout_and_raw_files(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in fm.BUNDLED_FMNIST_DIR.glob("*.gz"):  # decompressed copies: tests the raw naming
        (raw / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    t = create_task("fmnist-seen", root=str(tmp_path))
    ref = fm._read_fmnist_folder(str(fm.BUNDLED_FMNIST_DIR.resolve()))
    assert str(raw.resolve()) in t.source
    assert t.x_train.shape[0] == int(np.isin(ref.y_train, [0, 1, 2, 3, 4]).sum())


def test_env_var_pointing_nowhere_is_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("RTCORE_FASHION_MNIST", str(tmp_path / "empty"))
    with pytest.raises(TaskUnavailableError, match="RTCORE_FASHION_MNIST"):
        create_task("fmnist-novel")


def test_corrupt_fmnist_file_is_clear_error(tmp_path: Path) -> None:
    for f in fm.BUNDLED_FMNIST_DIR.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02\x08\x03junk"))
    with pytest.raises(TaskUnavailableError, match="corrupt"):
        create_task("fmnist-novel", root=str(tmp_path))


def test_bundled_subset_checksums_and_indices() -> None:
    fm._verify_bundled(fm.BUNDLED_FMNIST_DIR)
    sizes = sum(p.stat().st_size for p in fm.BUNDLED_FMNIST_DIR.iterdir())
    assert sizes < 5_000_000
    data = fm._read_fmnist_folder(str(fm.BUNDLED_FMNIST_DIR.resolve()))
    assert not data.full
    assert np.array_equal(data.i_train, np.arange(50000, 56000))
    assert np.array_equal(data.i_test, np.arange(0, 4000))
    assert (np.bincount(data.y_train, minlength=10) > 0).all()
    readme = (fm.BUNDLED_FMNIST_DIR / "README.md").read_text()
    assert "MIT" in readme and "50000" in readme and "55999" in readme and "3999" in readme


def test_bundled_subset_matches_full_copy(full_copy: Path) -> None:
    full = fm._read_fmnist_folder(str(full_copy.resolve()))
    sub = fm._read_fmnist_folder(str(fm.BUNDLED_FMNIST_DIR.resolve()))
    assert np.array_equal(sub.x_train, full.x_train[sub.i_train])
    assert np.array_equal(sub.y_train, full.y_train[sub.i_train])
    assert np.array_equal(sub.x_test, full.x_test[sub.i_test])
    assert np.array_equal(sub.y_test, full.y_test[sub.i_test])


# --------------------------------------------------------------------------- split integrity


def test_split_integrity_no_upstream_image_downstream(full_copy: Path) -> None:
    """No downstream Fashion-MNIST image (train or test) equals any upstream training image."""
    x_up, _, _ = load_upstream(root=str(full_copy))
    upstream = _row_hashes(x_up)
    # stronger: no train image with index < 50000 (any class) may appear downstream
    full = fm._read_fmnist_folder(str(full_copy.resolve()))
    pretrain_range = _row_hashes(full.x_train[:HELDOUT_START])
    assert upstream <= pretrain_range
    for name in FMNIST_TASKS:
        for root in (str(full_copy), None):
            t = create_task(name, root=root)
            for x in (t.x_train, t.x_test):
                hashes = _row_hashes(x)
                assert not hashes & upstream, name
                assert not hashes & pretrain_range, name
    # and the held-out train split really is index range [50000, 60000)
    assert _row_hashes(create_task("fmnist-torso", root=str(full_copy)).x_train) == _row_hashes(
        full.x_train[HELDOUT_START:])


def test_split_integrity_bundled_indices(bundled_only: None) -> None:
    """With only the bundled subset, downstream train images are exactly indices 50000-55999."""
    sub = fm._read_fmnist_folder(str(fm.BUNDLED_FMNIST_DIR.resolve()))
    assert sub.i_train.min() >= HELDOUT_START
    t = create_task("fmnist-torso")
    assert _row_hashes(t.x_train) == _row_hashes(sub.x_train)


def test_load_upstream_content(full_copy: Path) -> None:
    x, y, classes = load_upstream(root=str(full_copy))
    full = fm._read_fmnist_folder(str(full_copy.resolve()))
    keep = (np.arange(60000) < HELDOUT_START) & (full.y_train < 5)
    assert classes == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
    assert x.shape == (int(keep.sum()), 1, 28, 28) and x.dtype == torch.float32
    assert 24000 < x.shape[0] < 26000
    assert set(torch.unique(y).tolist()) == {0, 1, 2, 3, 4}
    assert np.array_equal((x[:, 0] * 255).round().to(torch.uint8).numpy(), full.x_train[keep])
    assert np.array_equal(y.numpy(), full.y_train[keep])


def test_load_upstream_without_full_copy_raises(bundled_only: None) -> None:
    with pytest.raises(TaskUnavailableError, match="full local copy"):
        load_upstream()


# --------------------------------------------------------------------------- generators


def _digest(d: generators.GeneratedData) -> str:
    m = hashlib.sha256()
    for a in (d.x_train, d.y_train, d.x_test, d.y_test):
        m.update(np.ascontiguousarray(a).tobytes())
    return m.hexdigest()


@pytest.mark.parametrize("gen", [generate_shapes, generate_glyphs])
def test_generators_deterministic(gen) -> None:
    a = gen(n_train=40, n_test=20, seed=7)
    b = gen(n_train=40, n_test=20, seed=7)
    c = gen(n_train=40, n_test=20, seed=8)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0


def test_generators_pinned_output() -> None:
    assert _digest(generate_shapes(30, 15, seed=0)) == SHAPES_30_15_SEED0_SHA256
    import PIL

    pinned = GLYPHS_30_15_SEED0_SHA256.get(PIL.__version__)
    if pinned is not None:
        assert _digest(generate_glyphs(30, 15, seed=0)) == pinned


def test_load_task_seed_changes_generated_data() -> None:
    a = create_task("shapes", seed=0)
    b = create_task("shapes", seed=1)
    assert a is not b and not torch.equal(a.x_train, b.x_train)


@pytest.mark.parametrize("n,k", [(10, 3), (3000, 3), (7, 10), (0, 2)])
def test_balanced_labels(n: int, k: int) -> None:
    y = balanced_labels(n, k, np.random.default_rng(0))
    counts = np.bincount(y, minlength=k)
    assert counts.sum() == n and counts.max() - counts.min() <= 1


def test_cache_written_and_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(tmp_path))
    first = cached_generate("shapes", seed=3, n_train=30, n_test=12)
    path = cache_path("shapes", 3, 30, 12)
    assert path.parent == tmp_path / "tasks" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left

    def boom(**kwargs):
        raise AssertionError("cache was not reused")

    _, classes, version = generators.GENERATORS["shapes"]
    monkeypatch.setitem(generators.GENERATORS, "shapes", (boom, classes, version))
    again = cached_generate("shapes", seed=3, n_train=30, n_test=12)
    assert _digest(again) == _digest(first)


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "wrong-meta", "bad-values"])
def test_corrupt_cache_regenerated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   corruption: str) -> None:
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(tmp_path))
    good = cached_generate("glyphs", seed=2, n_train=20, n_test=10)
    path = cache_path("glyphs", 2, 20, 10)
    raw = path.read_bytes()
    if corruption == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif corruption == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    else:
        meta = task_cache.cache_meta("glyphs", 2, 20, 10)
        arrays = {k: getattr(good, k) for k in ("x_train", "y_train", "x_test", "y_test")}
        if corruption == "wrong-meta":
            meta = dict(meta, seed=99)
        else:
            arrays["x_train"] = arrays["x_train"] * 3.0
        task_cache.write_cache(path, generators.GeneratedData(**arrays, classes=good.classes), meta)
    regenerated = cached_generate("glyphs", seed=2, n_train=20, n_test=10)
    assert _digest(regenerated) == _digest(good)
    # the cache file was rewritten and is valid again
    assert _digest(task_cache.read_cache(path, task_cache.cache_meta("glyphs", 2, 20, 10))) == _digest(good)


def test_cache_dir_default_is_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RTCORE_CACHE_DIR")
    assert task_cache.tasks_cache_dir() == Path.home() / ".cache" / "rtcore" / "tasks"


# --------------------------------------------------------------------------- subset / relabel


def test_subset_task_keeps_order_and_relabels() -> None:
    t = _tiny_task()
    s = subset_task(t, [2, 0])
    assert s.classes == ("c2", "c0") and s.num_classes == 2
    assert s.name == "tiny[2,0]"
    old_y = t.y_train
    kept = torch.nonzero((old_y == 2) | (old_y == 0)).flatten()
    assert torch.equal(s.x_train, t.x_train[kept])
    assert torch.equal(s.y_train, torch.where(old_y[kept] == 2, 0, 1))
    assert subset_task(t, np.array([1]), name="one").name == "one"


@pytest.mark.parametrize("bad,fragment", [([5], "5"), ([0, 0], "0"), ([], "[]"), (["a"], "'a'"),
                                           ([-1], "-1"), ("01", "'01'")])
def test_subset_task_bad_inputs(bad, fragment: str) -> None:
    with pytest.raises(ValueError) as exc:
        subset_task(_tiny_task(), bad)
    assert fragment in str(exc.value)


def test_relabel_task_sequence_and_mapping() -> None:
    t = _tiny_task()
    r = relabel_task(t, [1, 0, 1], ["even-ish", "odd-ish"], name="r")
    assert r.classes == ("even-ish", "odd-ish") and r.name == "r"
    assert torch.equal(r.y_train, torch.tensor([1, 0, 1])[t.y_train])
    assert r.x_train is t.x_train or torch.equal(r.x_train, t.x_train)
    r2 = relabel_task(t, {0: 1, 1: 0, 2: 1}, ["a", "b"])
    assert torch.equal(r2.y_test, r.y_test)


@pytest.mark.parametrize("mapping,names,fragment", [
    ([0, 1], ["a", "b"], "length 2"),
    ([0, 1, 5], ["a", "b"], "5"),
    ({0: 0, 1: 1}, ["a", "b"], "[2]"),
    ({0: 0, 1: 1, 2: 1, 7: 0}, ["a", "b"], "[7]"),
    ([0, 0, 0], ["a", "b"], "'b'"),
    ([0, 1, 1], [], "[]"),
    ([0, 1, 1.5], ["a", "b"], "1.5"),
])
def test_relabel_task_bad_inputs(mapping, names, fragment: str) -> None:
    with pytest.raises(ValueError) as exc:
        relabel_task(_tiny_task(), mapping, names)
    assert fragment in str(exc.value)


def test_task_validation() -> None:
    t = _tiny_task()
    with pytest.raises(ValueError, match="float32"):
        Task("x", t.x_train.double(), t.y_train, t.x_test, t.y_test, t.classes, "s", "d")
    with pytest.raises(ValueError, match="outside"):
        Task("x", t.x_train, t.y_train + 5, t.x_test, t.y_test, t.classes, "s", "d")
    with pytest.raises(ValueError, match="not \\[0, 1\\]"):
        Task("x", t.x_train * 300, t.y_train, t.x_test, t.y_test, t.classes, "s", "d")
    assert "tiny" in repr(t)


# --------------------------------------------------------------------------- online tasks


@pytest.mark.parametrize("name", ONLINE)
def test_online_task_without_files(name: str, tmp_path: Path, bundled_only: None) -> None:
    with pytest.raises(TaskUnavailableError) as exc:
        create_task(name, root=str(tmp_path), download=False)
    msg = str(exc.value)
    assert str(tmp_path) in msg and "download=True" in msg
    assert name in msg


def test_online_task_descriptions_native_space() -> None:
    for name in ("cifar10", "cifar100", "svhn"):
        d = task_info(name).description
        assert "native 3x32x32 RGB" in d and "inside the model" in d and "28x28" not in d
    assert "1x28x28" in task_info("mnist").description


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"])
@pytest.mark.parametrize("error", [urllib.error.URLError("no network"), OSError("unreachable")])
def test_online_download_failure_is_task_unavailable(name: str, error: Exception,
                                                      tmp_path: Path, bundled_only: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets as tvd
    import torchvision.datasets.utils as tvu

    calls: list[str] = []

    def offline_download(url, *args, **kwargs):
        calls.append(url)
        raise error

    class Offline:  # SVHN downloads through its own class
        def __init__(self, *args, **kwargs):
            raise error

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline_download)
    monkeypatch.setattr(tvd, "SVHN", Offline)
    with pytest.raises(TaskUnavailableError) as exc:
        create_task(name, root=str(tmp_path), download=True)
    msg = str(exc.value)
    if "scipy" not in msg:  # svhn stops earlier when scipy is absent
        assert exc.value.__cause__ is error
        assert name in msg and str(tmp_path) in msg
    if name.startswith("cifar"):
        assert calls and all(u.startswith("https://www.cs.toronto.edu/~kriz/") for u in calls)
        assert calls[0].endswith("-binary.tar.gz")


def test_fashion_mnist_online_task_uses_local_full_copy(full_copy: Path) -> None:
    t = create_task("fashion-mnist", root=str(full_copy))
    assert t.x_train.shape == (60000, 1, 28, 28) and t.x_test.shape == (10000, 1, 28, 28)
    assert t.num_classes == 10


def test_no_rgb_to_gray_conversion_left() -> None:
    assert not hasattr(online, "_rgb_to_gray28")


# --------------------------------------------------------------------------- CIFAR (binary)

_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                  "truck")


def _cifar_images(n: int, seed: int) -> np.ndarray:
    """(n, 3, 32, 32) uint8 with distinct, recognisable R/G/B planes (R=10+i, G=100+i, B=200+i)."""
    x = np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    for i in range(n):
        x[i, 0, 0, 0], x[i, 1, 0, 0], x[i, 2, 0, 0] = 10 + i, 100 + i, 200 + i
    return x


def _write_fake_cifar10(folder: Path, n_per_file: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A tiny cifar-10-batches-bin folder; returns the (images, labels) written per file."""
    sub = folder / "cifar-10-batches-bin"
    sub.mkdir(parents=True, exist_ok=True)
    written = {}
    for j, f in enumerate([f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]):
        x = _cifar_images(n_per_file, seed=j)
        y = (np.arange(n_per_file) + 3 * j) % 10
        write_cifar_bin(sub / f, x, y)
        written[f] = (x, y)
    (sub / "batches.meta.txt").write_text("\n".join(_CIFAR10_NAMES) + "\n\n")
    return written


def _write_fake_cifar100(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A tiny cifar-100-binary folder; labels are (coarse, fine) per record."""
    sub = folder / "cifar-100-binary"
    sub.mkdir(parents=True, exist_ok=True)
    written = {}
    for j, (f, n) in enumerate((("train.bin", 5), ("test.bin", 3))):
        x = _cifar_images(n, seed=10 + j)
        fine = np.array([99, 0, 42, 7, 63][:n])
        coarse = fine % 20
        write_cifar_bin(sub / f, x, np.stack([coarse, fine], axis=1))
        written[f] = (x, fine)
    (sub / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)) + "\n")
    (sub / "coarse_label_names.txt").write_text("\n".join(f"coarse{i}" for i in range(20)) + "\n")
    return written


def test_cifar10_binary_loader(tmp_path: Path) -> None:
    written = _write_fake_cifar10(tmp_path)
    t = create_task("cifar10", root=str(tmp_path))
    assert t.x_train.shape == (15, 3, 32, 32) and t.x_test.shape == (3, 3, 32, 32)
    assert t.x_train.dtype == torch.float32 and t.x_train.is_contiguous()
    assert 0.0 <= float(t.x_train.min()) and float(t.x_train.max()) <= 1.0
    assert t.classes == _CIFAR10_NAMES and t.image_shape == (3, 32, 32)
    x_tr = np.concatenate([written[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    y_tr = np.concatenate([written[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    assert torch.equal(t.x_train, torch.from_numpy(x_tr).float() / 255.0)  # exact k/255 pixels
    assert t.y_train.tolist() == y_tr.tolist()
    assert t.y_test.tolist() == written["test_batch.bin"][1].tolist()
    # channel order: the first pixel plane of a record is red
    assert round(float(t.x_test[2, 0, 0, 0]) * 255) == 12
    assert round(float(t.x_test[2, 1, 0, 0]) * 255) == 102
    assert round(float(t.x_test[2, 2, 0, 0]) * 255) == 202
    assert t.source == str(tmp_path / "cifar-10-batches-bin")


def test_cifar_record_layout_is_r_plane_first(tmp_path: Path) -> None:
    """Hand-built record (no write_cifar_bin): label byte, then 1024 R, 1024 G, 1024 B bytes."""
    path = tmp_path / "one.bin"
    r = np.arange(1024, dtype=np.uint16) % 251
    path.write_bytes(bytes([7]) + bytes(r.astype(np.uint8)) + bytes([128]) * 1024 + bytes([255]) * 1024)
    x, y = read_cifar_bin(path, label_bytes=1, num_labels=(10,))
    assert y.tolist() == [[7]] and x.shape == (1, 3, 32, 32) and x.dtype == np.uint8
    assert x[0, 0].ravel().tolist() == r.tolist()  # row-major red plane
    assert x[0, 0, 1, 0] == 32 and (x[0, 1] == 128).all() and (x[0, 2] == 255).all()


def test_cifar100_binary_loader_uses_fine_labels(tmp_path: Path) -> None:
    written = _write_fake_cifar100(tmp_path)
    t = create_task("cifar100", root=str(tmp_path))
    assert t.x_train.shape == (5, 3, 32, 32) and t.x_test.shape == (3, 3, 32, 32)
    assert t.num_classes == 100 and t.classes[0] == "fine0" and t.classes[99] == "fine99"
    assert t.y_train.tolist() == [99, 0, 42, 7, 63] and t.y_test.tolist() == [99, 0, 42]
    assert torch.equal(t.x_test, torch.from_numpy(written["test.bin"][0]).float() / 255.0)
    assert round(float(t.x_train[1, 0, 0, 0]) * 255) == 11  # R plane first
    assert round(float(t.x_train[1, 2, 0, 0]) * 255) == 201


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("cut", [1, 5000, -1])
def test_cifar_truncated_file_is_clear_error(name: str, cut: int, tmp_path: Path) -> None:
    if name == "cifar10":
        _write_fake_cifar10(tmp_path)
        path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    else:
        _write_fake_cifar100(tmp_path)
        path = tmp_path / "cifar-100-binary" / "test.bin"
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut > 0 else data + b"\x00")
    with pytest.raises(TaskUnavailableError) as exc:
        create_task(name, root=str(tmp_path))
    msg = str(exc.value)
    assert str(path) in msg and "truncated or corrupt" in msg and "download=True" in msg
    assert isinstance(exc.value.__cause__, CIFARFormatError)


def test_cifar_empty_file_and_bad_labels(tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(CIFARFormatError, match="not a positive multiple"):
        read_cifar_bin(empty, label_bytes=1)
    bad = tmp_path / "bad.bin"
    write_cifar_bin(bad, _cifar_images(2, 0), np.array([3, 10]))
    with pytest.raises(CIFARFormatError, match="record 1 .*outside 0..9"):
        read_cifar_bin(bad, label_bytes=1, num_labels=(10,))
    with pytest.raises(FileNotFoundError):
        read_cifar_bin(tmp_path / "missing.bin", label_bytes=1)


def test_cifar_bad_names_file(tmp_path: Path) -> None:
    _write_fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").write_text("cat\ndog\n")
    with pytest.raises(TaskUnavailableError, match="expected 10 distinct class names"):
        create_task("cifar10", root=str(tmp_path))


def test_cifar_partial_folder_reported(tmp_path: Path) -> None:
    _write_fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_4.bin").unlink()
    with pytest.raises(TaskUnavailableError) as exc:
        create_task("cifar10", root=str(tmp_path))
    assert "data_batch_4.bin" in str(exc.value) and "download=True" in str(exc.value)


def test_python_cifar_layout_is_not_used(tmp_path: Path) -> None:
    """A pickled cifar-10-batches-py folder must not satisfy (or be read by) the task."""
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    for f in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
              "test_batch", "batches.meta"):
        (py / f).write_bytes(b"\x80\x04not-a-real-pickle")
    with pytest.raises(TaskUnavailableError, match="cifar-10-batches-bin"):
        create_task("cifar10", root=str(tmp_path))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_download_extracts_official_archive(name: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tvu

    calls = []

    def fake_download(url, download_root, *args, **kwargs):
        calls.append((url, Path(download_root), kwargs.get("md5")))
        (_write_fake_cifar10 if name == "cifar10" else _write_fake_cifar100)(Path(download_root))

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake_download)
    t = create_task(name, root=str(tmp_path), download=True)
    assert t.image_shape == (3, 32, 32)
    expected = {"cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                            "c32a1d4ab5d03f1284b67883e8d87530"),
                "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                             "03b5dce01913d631647c71ecec9e9cb8")}[name]
    assert calls == [(expected[0], tmp_path, expected[1])]
    registry._MEMO.clear()
    create_task(name, root=str(tmp_path), download=True)  # files present: no second download
    assert len(calls) == 1


def test_cifar_download_without_expected_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tvu

    monkeypatch.setattr(tvu, "download_and_extract_archive", lambda *a, **k: None)
    with pytest.raises(TaskUnavailableError, match="still missing"):
        create_task("cifar10", root=str(tmp_path), download=True)


# --------------------------------------------------------------------------- MNIST, SVHN


def _fake_mnist_download(monkeypatch: pytest.MonkeyPatch, n: int = 20) -> list[str]:
    """Patch torchvision's download_and_extract_archive to write small MNIST-format IDX files."""
    import torchvision.datasets.utils as tvu

    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n) % 10).astype(np.uint8),
    }
    urls: list[str] = []

    def fake(url, download_root, *args, filename=None, md5=None, **kwargs):
        urls.append(url)
        assert md5 and filename in arrays
        write_idx(Path(download_root) / filename, arrays[filename])
        write_idx(Path(download_root) / filename[:-3], arrays[filename])  # "extracted"

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake)
    return urls


def test_mnist_download_reads_idx_without_torch_load(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    urls = _fake_mnist_download(monkeypatch)
    # A legacy torchvision cache must never be unpickled (torchvision's MNIST class would).
    processed = tmp_path / "MNIST" / "processed"
    processed.mkdir(parents=True)
    for f in ("training.pt", "test.pt"):
        (processed / f).write_bytes(b"\x80\x04not-a-real-pickle")

    def no_torch_load(*args, **kwargs):
        raise AssertionError("torch.load must not be called on downloaded data")

    monkeypatch.setattr(torch, "load", no_torch_load)
    t = create_task("mnist", root=str(tmp_path), download=True)
    assert t.x_train.shape == (20, 1, 28, 28) and t.x_test.shape == (20, 1, 28, 28)
    assert t.classes == tuple(str(i) for i in range(10))
    assert len(urls) == 4 and all(u.endswith(".gz") for u in urls)


def test_svhn_native_rgb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("scipy")
    import torchvision.datasets as tvd

    rng = np.random.default_rng(0)

    class FakeSVHN:
        def __init__(self, root, split, download):
            n = 12 if split == "train" else 10
            self.data = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
            self.data[0, 0], self.data[0, 1], self.data[0, 2] = 1, 2, 3
            self.labels = np.arange(n) % 10

    monkeypatch.setattr(tvd, "SVHN", FakeSVHN)
    t = create_task("svhn", root=str(tmp_path), download=True)
    assert t.x_train.shape == (12, 3, 32, 32) and t.x_test.shape == (10, 3, 32, 32)
    assert 0.0 <= float(t.x_train.min()) and float(t.x_train.max()) <= 1.0
    assert round(float(t.x_train[0, 0, 5, 5]) * 255) == 1 and round(float(t.x_train[0, 2, 5, 5]) * 255) == 3
    assert t.y_test.tolist() == list(range(10))


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([50000, -7, 2**31 - 1], dtype=np.int32),
    np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
    np.array([[1.5, -2.25]], dtype=np.float64),
    np.array([-3, 4], dtype=np.int16),
])
def test_idx_round_trip(tmp_path: Path, array: np.ndarray, suffix: str) -> None:
    path = tmp_path / f"a-idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=") and np.array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_idx_matches_official_header(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([9, 0, 3], np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 3])


@pytest.mark.parametrize("content,fragment", [
    (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "magic"),
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "dtype code 0x42"),
    (bytes([0, 0, 8, 2, 0, 0, 0, 2]), "truncated header"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "size mismatch"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), "size mismatch"),
    (b"\x00", "too short"),
])
def test_idx_corrupt_files(tmp_path: Path, content: bytes, fragment: str) -> None:
    for name, data in (("raw", content), ("z.gz", gzip.compress(content))):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(IDXFormatError) as exc:
            read_idx(path)
        assert fragment in str(exc.value) and str(path) in str(exc.value)


def test_idx_bad_gzip_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(b"\x1f\x8b" + b"\x00" * 20)
    with pytest.raises(IDXFormatError, match="gzip"):
        read_idx(path)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))
