"""One number everywhere: the same specs give bit-identical tables with one and two torch threads, on a
fresh cache and on the cache another thread count filled, with another batch size, and on a real local
Ray instance; for the bundled CNN (both norms, a robust probe, a transfer method that fine-tunes), timm's
ResNet and the ResNet-18.

Each condition runs in a fresh process (``OMP_NUM_THREADS`` is read when torch starts) over a small
own-data task, so the matrix stays quick; every number column is compared exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from rtcore.numerics import by_rows, chunk_rows, fixed_threads
from rtcore.numerics import TAIL_ROWS, linear_rows

REPO = Path(__file__).resolve().parents[2]

#: the matrix: each entry a sweep (a spec whose fields hold lists)
SWEEPS = [
    {"backbones": ["fmnist-cnn-pgd-linf-0.1"], "norm": ["linf", "l2"], "eps": ["2/255", "8/255"],
     "probes": ["logistic", "robust"], "transfers": ["lp", "ft"], "finetune": {"epochs": 1}},
    {"backbones": ["fmnist-timm-resnet-standard", "autoattack-resnet18-cifar10"], "eps": ["2/255"]},
]
RUN = """
import json, sys
import rtcore
sweeps, task, out, extra = json.loads(sys.argv[1])
for i, s in enumerate(sweeps):
    rtcore.sweep({**s, "tasks": [task], "n": 10, "attack": "fast", **extra}, f"{out}/{i}", **json.loads(sys.argv[2]))
"""


def run(tmp: Path, name: str, task: str, threads: int, cache: Path, extra: dict | None = None,
        engine: dict | None = None) -> dict[str, pd.DataFrame]:
    """The matrix in a fresh process with ``threads`` torch threads; the tables of every sweep."""
    out = tmp / name
    home = tmp / f"home-{name}"
    home.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HOME": str(home),
           "RTCORE_CACHE_DIR": str(cache)}
    args = json.dumps([SWEEPS, task, str(out), extra or {}])
    proc = subprocess.run([sys.executable, "-c", RUN, args, json.dumps(engine or {})], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = {}
    for i in range(len(SWEEPS)):
        for kind in ("summary", "samples"):
            df = pd.read_csv(out / str(i) / f"{kind}.csv")
            tables[f"{i}/{kind}"] = df.drop(columns=[c for c in ("seconds",) if c in df.columns])
    return tables


def assert_identical(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame], what: str) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        assert list(x.columns) == list(y.columns) and len(x) == len(y) > 0, (what, key)
        for col in x.columns:
            if x[col].dtype.kind == "f":
                same = (x[col].to_numpy() == y[col].to_numpy()) | (x[col].isna() & y[col].isna()).to_numpy()
                assert same.all(), f"{what}: {key} column {col!r} differs in {int((~same).sum())} rows"
            else:
                assert x[col].tolist() == y[col].tolist(), f"{what}: {key} column {col!r} differs"


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory: pytest.TempPathFactory, tiny_task: str) -> tuple[Path, dict[str, pd.DataFrame]]:
    """The matrix on one thread, on a fresh cache: the reference every other condition must equal bit for bit."""
    tmp = tmp_path_factory.mktemp("determinism")
    one = run(tmp, "one-thread", tiny_task, 1, tmp / "cache-1")
    assert len(one) == 4 and len(one["0/summary"]) == 2 * 2 * 3  # 2 norms x 2 eps x (lp logistic, lp robust, ft)
    return tmp, one


def test_the_same_specs_give_the_same_bits_everywhere(one_thread: tuple[Path, dict[str, pd.DataFrame]],
                                                      tiny_task: str) -> None:
    tmp, one = one_thread
    two = run(tmp, "two-threads", tiny_task, 2, tmp / "cache-2", extra={"batch_size": 64})
    assert_identical(one, two, "1 thread vs 2 threads with batch size 64, each on a fresh cache")
    warm = run(tmp, "warm", tiny_task, 2, tmp / "cache-1")
    assert_identical(one, warm, "2 threads reading the cache 1 thread filled")


@pytest.mark.slow
def test_the_same_specs_give_the_same_bits_on_ray(one_thread: tuple[Path, dict[str, pd.DataFrame]],
                                                  tiny_task: str) -> None:
    """The matrix on a real local Ray instance (two workers, two threads each) equals one thread locally
    (`make test-all`; the suite checks Ray against the local engine on a smaller sweep, tests/unit/test_sweep.py)."""
    pytest.importorskip("ray")
    tmp, one = one_thread
    ray = run(tmp, "ray", tiny_task, 2, tmp / "cache-ray", engine={"engine": "ray", "workers": 2})
    assert_identical(one, ray, "a local Ray instance (2 workers) on a fresh cache")


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_by_rows_makes_a_rows_result_independent_of_its_batch(device: str) -> None:
    """Row i of the head's by_rows(linear_rows, x) equals row i computed alone or in other batches, bit for bit
    (an inner size of 37, where a matrix product treats rows by position); each chunk has chunk_rows rows."""
    seen: list[int] = []
    gen = torch.Generator().manual_seed(0)
    w, b = torch.randn(5, 37, generator=gen).to(device), torch.randn(5, generator=gen).to(device)

    def f(z: torch.Tensor) -> torch.Tensor:
        seen.append(z.shape[0])
        return linear_rows(z, w, b)

    x = torch.randn(83, 37, generator=gen).to(device)
    with fixed_threads():
        full = by_rows(f, x)
        alone = torch.cat([by_rows(f, x[i:i + 1]) for i in range(x.shape[0])])
        parts = torch.cat([by_rows(f, x[lo:lo + 7]) for lo in range(0, x.shape[0], 7)])
    assert set(seen) == {chunk_rows(device)}
    assert torch.equal(full, alone) and torch.equal(full, parts)
    assert by_rows(f, x[:0]).shape == (0, 5)
    assert torch.allclose(full, x @ w.T + b, atol=1e-5)


def test_a_model_that_computes_rows_by_position_is_found_and_its_batch_enters_the_keys(tmp_path: Path) -> None:
    """row_invariant agrees with a direct comparison of a row at every position of a chunk; for a backbone
    that fails it, the batch size is fixed (not from free memory) and enters its cache keys."""
    import rtcore
    from rtcore.numerics import positional_batch, row_invariant
    from rtcore.runs import EvalSpec, Executor
    from rtcore.runs.execute import FIXED_BATCH
    from rtcore.cached import backbone_key

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 37), torch.nn.ReLU(), torch.nn.Linear(37, 5))
    g = rtcore.as_backbone(net, name="mlp37")
    row = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(1))
    rows = chunk_rows("cpu")
    with fixed_threads(), torch.no_grad():
        ref = g(row[None])[0]
        direct = all(torch.equal(g(torch.zeros(rows, 1, 28, 28).index_copy(0, torch.tensor([p]), row[None]))[p], ref)
                     for p in range(rows))
    assert row_invariant(g, row) == direct
    spec = EvalSpec(backbone=rtcore.BackboneRef.of_module(g), tasks=("shapes",), eps=(0.01,), n=8, attack="fast")
    ex = Executor(spec, backbone=g, cache_dir=str(tmp_path))
    batch = ex.batch_size("shapes")
    if direct:
        assert positional_batch(g) is None and "-b" not in backbone_key(g)
    else:
        assert batch == FIXED_BATCH and positional_batch(g) == FIXED_BATCH and backbone_key(g).endswith(f"-b{batch}")


def test_a_batch_below_the_chunk_bounds_the_chunk_and_is_keyed_apart(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch size below the device's chunk computes in chunks of that size (the backbone never sees more rows:
    memory bounded by the batch), under another numerics tag (its results are never served for the default
    chunk's, nor the other way), and gives the same bits again on a fresh cache."""
    import rtcore
    from rtcore.numerics import numerics_tag, rows_per_chunk

    def stored(cache: Path) -> int:
        return sum(1 for f in cache.rglob("*") if f.is_file())

    with rows_per_chunk(4):
        tag4 = numerics_tag("cpu")
        with rows_per_chunk(None), rows_per_chunk(8):
            assert chunk_rows("cpu") == 4, "nested, the smaller chunk holds"
        with rows_per_chunk(2):
            assert chunk_rows("cpu") == 2
    assert chunk_rows("cuda") == 256 and chunk_rows("cpu") == 32
    assert "-r4-" in tag4 and tag4 != numerics_tag("cpu") and f"-r{chunk_rows('cpu')}-" in numerics_tag("cpu")
    with pytest.raises(ValueError, match="at least 1, not 0"):
        with rows_per_chunk(0):
            pass
    from rtcore.runs import EvalSpec

    auto = EvalSpec(backbone="fmnist-cnn-standard", tasks=("shapes",), eps=(0.01,), n=6)
    assert auto.with_(batch_size=512).digest() == auto.digest(), "from the largest chunk up the batch is no number"
    assert auto.with_(batch_size=4).digest() != auto.digest() != auto.with_(batch_size=64).digest(), \
        "below a device's chunk the batch is the chunk: the digest (job and sweep keys) names it"
    seen: list[int] = []  # the rows of every chunk a backbone computes
    rows = rtcore.Backbone._rows
    monkeypatch.setattr(rtcore.Backbone, "_rows", lambda self, x: (seen.append(x.shape[0]), rows(self, x))[1])
    spec = dict(tasks=["shapes"], eps=["2/255"], n=6, attack="fast")
    cache = tmp_path / "cache"
    small = rtcore.evaluate("fmnist-cnn-standard", **spec, batch_size=4, cache_dir=str(cache))
    assert seen and set(seen) == {4}, sorted(set(seen))
    before = stored(cache)
    seen.clear()
    rtcore.evaluate("fmnist-cnn-standard", **spec, cache_dir=str(cache))
    assert stored(cache) > before and chunk_rows("cpu") in seen, "the default chunk computes its own"
    assert set(seen) <= {chunk_rows("cpu"), *TAIL_ROWS}, "full chunks, and exact smaller ones for an attack's rest"
    again = rtcore.evaluate("fmnist-cnn-standard", **spec, batch_size=4, cache_dir=str(tmp_path / "fresh"))
    number = [c for c in small.columns if small[c].dtype.kind == "f" and c != "seconds"]
    assert small[number].equals(again[number])


def test_fixed_threads_restores_the_callers_setting() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with fixed_threads():
            assert torch.get_num_threads() == 1
            with fixed_threads():
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("which", ["feature", "head", "end-to-end", "loss"])
def test_every_attack_gives_the_same_bits_with_any_batch_size(which: str, norm: str) -> None:
    """Each attack's reported numbers for the same points are bit-identical with a batch of 8 and of 512 (which
    points share a chunk, and how many runs wait for room, never changes a row)."""
    import dataclasses

    import rtcore
    from rtcore.attacks import attack, create_strength, feature_attack, loss_attack
    from rtcore.bounds import head_projector

    g = rtcore.create_backbone("fmnist-cnn-pgd-linf-0.1", device="cpu")
    t = rtcore.create_task("shapes")
    x, y = t.x_test[:20], t.y_test[:20]
    head = rtcore.LinearProbe(C=1.0).fit(g(t.x_train[:300]).detach(), t.y_train[:300])
    model = rtcore.ProbedModel(g, head.as_module())
    eps = [2 / 255, 8 / 255] if norm == "linf" else [0.1, 0.5]
    out = []
    for batch in (8, 512):
        cfg = dataclasses.replace(create_strength("fast"), batch_size=batch)
        if which in ("feature", "head"):
            proj = head_projector(head.weight_) if which == "head" else None
            out.append(feature_attack(g, x, eps, norm=norm, settings=cfg, projector=proj).delta)
        elif which == "end-to-end":
            out.append(attack(model, x, y, eps, norm=norm, settings=cfg).robust)
        else:
            out.append(loss_attack(model, x, y, eps, norm=norm, settings=cfg).loss)
    assert torch.equal(out[0], out[1])
