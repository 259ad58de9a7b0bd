"""No silent wrong answer from a backbone: its identity covers what it computes (code, attributes,
hooks, feature function, weights), bad outputs and dtypes are refused with the fix, devices are
checked before any work, and weight files are checked for what they are and what they hold."""

from __future__ import annotations

import ast
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import rtcore
from rtcore import cached as steps
from rtcore.errors import CacheDirError, CheckpointError
from rtcore.models import registry as R
from rtcore.models.wrapper import FeatureInfo, resolve_device

REPO = Path(__file__).resolve().parents[2]

NET_SOURCE = '''
import torch
from torch import nn

SCALE = {scale}


def act(x):
    return torch.{act}(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.gain = {gain}
        self.tags = {{"b", "a", "c"}}
        self.table = {{"z": 1.0, "y": (2, "x")}}

    def forward(self, x):
        return act(self.fc(x.flatten(1))) * SCALE * self.gain
'''


def _load(path: Path, name: str, **fields: object) -> ModuleType:
    """Write NET_SOURCE with ``fields`` to ``path`` and import it as module ``name`` (source available)."""
    values = {"act": "relu", "scale": 1.0, "gain": 1.0, **fields}
    path.write_text(NET_SOURCE.format(**values))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _exec_net(act: str) -> type[nn.Module]:
    """A class ``Net`` defined by exec (no source available: the REPL case)."""
    src = textwrap.dedent(f"""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 3)

            def forward(self, x):
                return torch.{act}(self.fc(x.flatten(1)))
        """)
    ns: dict[str, object] = {"nn": nn, "torch": torch}
    exec(compile(src, "<stdin>", "exec"), ns)
    return ns["Net"]  # type: ignore[return-value]


def _seeded(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls()


def _fp(net: nn.Module, **kw: object) -> str:
    return rtcore.as_backbone(net, name="Net", **kw).fingerprint()


# ------------------------------------------------------------------------------------ cause 1: identity
def test_editing_forward_in_a_file_gives_another_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    relu = _load(tmp_path / "a" / "usernet.py", "usernet_relu")
    tanh = _load(tmp_path / "b" / "usernet.py", "usernet_tanh", act="tanh")
    a, b = _seeded(relu.Net), _seeded(tanh.Net)
    assert type(a).__qualname__ == type(b).__qualname__ and all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert _fp(a) != _fp(b)
    assert _fp(a) == _fp(_seeded(relu.Net)), "the same code and weights give the same fingerprint"


def test_editing_forward_of_a_class_without_source_gives_another_fingerprint() -> None:
    relu, tanh = _exec_net("relu"), _exec_net("tanh")
    import inspect

    with pytest.raises(OSError):
        inspect.getsource(relu.forward)  # the REPL case: identified by its compiled code
    assert _fp(_seeded(relu)) != _fp(_seeded(tanh))
    assert _fp(_seeded(relu)) == _fp(_seeded(_exec_net("relu")))


@pytest.mark.parametrize("field, value", [("scale", 2.0), ("gain", 3.0)])
def test_a_module_constant_or_a_plain_attribute_is_part_of_the_identity(tmp_path: Path, field: str,
                                                                         value: float) -> None:
    base = _load(tmp_path / "base.py", f"usernet_base_{field}")
    other = _load(tmp_path / "other.py", f"usernet_other_{field}", **{field: value})
    assert _fp(_seeded(base.Net)) != _fp(_seeded(other.Net))


def test_an_attribute_changed_after_wrapping_is_seen(tmp_path: Path) -> None:
    mod = _load(tmp_path / "n.py", "usernet_attr")
    g = rtcore.as_backbone(_seeded(mod.Net), name="Net")
    before = g.fingerprint()
    g.net.gain = 2.0
    assert g.fingerprint() != before
    g.net.gain = 1.0
    assert g.fingerprint() == before


def test_editing_a_helper_the_forward_calls_gives_another_fingerprint(tmp_path: Path) -> None:
    a = _load(tmp_path / "h1.py", "usernet_h1")
    src = NET_SOURCE.format(act="relu", scale=1.0, gain=1.0).replace("return torch.relu(x)", "return torch.relu(x) + 1")
    (tmp_path / "h2.py").write_text(src)
    spec = importlib.util.spec_from_file_location("usernet_h2", tmp_path / "h2.py")
    b = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(b)
    assert _fp(_seeded(a.Net)) != _fp(_seeded(b.Net))


def test_a_source_file_edited_after_import_never_collides_with_the_new_code(tmp_path: Path) -> None:
    path = tmp_path / "stale.py"
    old = _load(path, "usernet_stale_old")
    path.write_text(NET_SOURCE.format(act="tanh", scale=1.0, gain=1.0))  # edited, not re-imported
    stale = _fp(_seeded(old.Net))  # source says tanh, the code that runs is relu
    spec = importlib.util.spec_from_file_location("usernet_stale_new", path)
    new = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(new)
    assert stale != _fp(_seeded(new.Net))


def test_feature_function_hooks_buffers_and_weights_are_part_of_the_identity() -> None:
    net = _seeded(_exec_net("relu"))
    base = _fp(net)
    assert _fp(net, features=lambda n, x: torch.tanh(n(x))) != _fp(net, features=lambda n, x: torch.relu(n(x)))
    handle = net.register_forward_hook(lambda m, i, o: o * 2)
    assert _fp(net) != base
    handle.remove()
    assert _fp(net) == base
    net.register_buffer("shift", torch.zeros(3), persistent=False)  # not in the state dict
    with_zero = _fp(net)
    net.shift.fill_(1.0)
    assert _fp(net) != with_zero
    g = rtcore.as_backbone(net, name="Net")
    before = g.fingerprint()
    with torch.no_grad():
        g.net.fc.weight[0, 0] += 1.0  # changed in place after wrapping
    assert g.fingerprint() != before


def test_preprocessing_is_part_of_the_identity() -> None:
    net = _seeded(_exec_net("relu"))
    assert _fp(net, mean=[0.5], std=[1.0]) != _fp(net, mean=[0.0], std=[1.0])
    assert _fp(net, input_size=(1, 2, 2)) != _fp(net, input_size=(1, 4, 4))


def test_fingerprint_is_the_same_in_other_processes(tmp_path: Path) -> None:
    """Hash randomisation differs per process (PYTHONHASHSEED): set and dict attributes must not matter."""
    mod = _load(tmp_path / "procnet.py", "procnet")
    here = _fp(_seeded(mod.Net))
    bundled = rtcore.create_backbone("fmnist-cnn-standard", device="cpu").fingerprint()
    code = textwrap.dedent(f"""
        import importlib.util, sys, torch, rtcore
        spec = importlib.util.spec_from_file_location("procnet", {str(tmp_path / "procnet.py")!r})
        mod = importlib.util.module_from_spec(spec); sys.modules["procnet"] = mod; spec.loader.exec_module(mod)
        torch.manual_seed(0)
        print(rtcore.as_backbone(mod.Net(), name="Net").fingerprint())
        print(rtcore.create_backbone("fmnist-cnn-standard", device="cpu").fingerprint())
        """)
    outs = []
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "OMP_NUM_THREADS": "1"}
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                             timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        outs.append(res.stdout.split())
    assert outs[0] == outs[1] == [here, bundled]


def test_library_classes_are_identified_by_release_and_user_code_by_its_code() -> None:
    from rtcore.models.identity import library_tag

    assert library_tag(nn.Linear) == f"torch=={torch.__version__}", "a torch upgrade is another identity"
    timm = pytest.importorskip("timm")
    assert library_tag(timm.models.resnet.ResNet) == f"timm=={timm.__version__}"
    net = _exec_net("relu")
    assert net.__module__ == "builtins" and library_tag(net) is None, "exec'd code claims builtins: it is read"
    assert library_tag(_Out) is None


# ------------------------------------------------------------------------ cause 1: outputs and shapes
class _Out(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> object:
        f = self.fc(x.flatten(1))
        return {"good": f, "flat": f.sum(1), "tuple": (f, f), "scalar": f.sum(),
                "nan": f * float("nan")}[self.kind]


def test_feature_info_reports_m_and_dtype_and_is_memoised(monkeypatch: pytest.MonkeyPatch) -> None:
    g = rtcore.create_backbone("fmnist-cnn-standard", device="cpu")
    info = g.feature_info((1, 28, 28))
    assert info == FeatureInfo(g.card["feature_dim"], torch.float32) and g.feature_dim((1, 28, 28)) == info.dim
    calls = []
    real = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert g.feature_info((1, 28, 28)) == info and calls == [], "memoised per shape"
    assert g.feature_info([3, 32, 32]) == info and len(calls) == 1, "another shape: one forward pass"
    for bad in [(28, 28), (1, 0, 28), "1x28x28", (1.0, 28, 28), None]:
        with pytest.raises(ValueError, match="input_shape"):
            g.feature_info(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind, words", [("flat", r"returned \(32,\) for a chunk of 32 images"), ("tuple", "returned tuple"),
                                         ("scalar", r"returned \(\) for a chunk of 32 images"), ("nan", "NaN or inf")])
def test_bad_outputs_are_refused_and_do_not_share_an_identity(kind: str, words: str) -> None:
    torch.manual_seed(0)
    bad = rtcore.as_backbone(_Out(kind), name="Out")
    torch.manual_seed(0)
    good = rtcore.as_backbone(_Out("good"), name="Out")
    assert bad.fingerprint() != good.fingerprint()
    assert good.feature_info((1, 2, 2)) == FeatureInfo(3, torch.float32)
    with pytest.raises(ValueError, match=words):
        bad.feature_info((1, 2, 2))


def _tiny_task() -> rtcore.Task:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(48, 1, 2, 2, generator=g)
    y = (x.flatten(1) @ torch.randn(4, 3, generator=g)).argmax(1)
    return rtcore.Task(name="tiny", x_train=x[:32], y_train=y[:32], x_test=x[32:], y_test=y[32:],
                       classes=("a", "b", "c"), source="test")


def _evaluate(net: nn.Module, cache_dir: Path) -> object:
    return rtcore.run_evaluation(rtcore.as_backbone(net, name="Net"), _tiny_task(), [0.1], "linf", n=16,
                                 attack="fast", head_attack=False, loss_attack=False, cache_dir=str(cache_dir))


def test_an_edited_forward_is_recomputed_through_the_pipeline(tmp_path: Path) -> None:
    """Same class name and weights, forward edited: the old numbers must not come back."""
    relu = _evaluate(_seeded(_exec_net("relu")), tmp_path / "c")
    tanh_warm = _evaluate(_seeded(_exec_net("tanh")), tmp_path / "c")
    tanh_fresh = _evaluate(_seeded(_exec_net("tanh")), tmp_path / "fresh")
    cols = ["clean_acc", "robust_acc", "mean_delta"]
    assert tanh_warm.summary[cols].values.tolist() == tanh_fresh.summary[cols].values.tolist()
    assert relu.summary["mean_delta"].tolist() != tanh_warm.summary["mean_delta"].tolist()


GAIN = [1.0]  # a module-level list the forward below reads: a change the fingerprint does not see


class _GainNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(GAIN[0] * self.lin(x.flatten(1)))


def test_a_change_the_fingerprint_misses_recomputes_the_probe_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The features' spot check catches it; the stored probe of the old model must not be used either."""
    torch.manual_seed(0)
    net = _GainNet()
    monkeypatch.setattr(steps, "_SALTS", {})
    first = _evaluate(net, tmp_path / "c")
    fp = rtcore.as_backbone(net, name="Net").fingerprint()
    GAIN[0] = 25.0
    try:
        assert rtcore.as_backbone(net, name="Net").fingerprint() == fp, "a change the fingerprint does not see"
        warm = _evaluate(net, tmp_path / "c")
        fresh = _evaluate(net, tmp_path / "fresh")
    finally:
        GAIN[0] = 1.0
    cols = ["clean_acc", "clean_loss", "robust_acc", "mean_delta"]
    assert warm.summary[cols].values.tolist() == fresh.summary[cols].values.tolist()
    assert first.summary["clean_loss"].tolist() != warm.summary["clean_loss"].tolist()


@pytest.mark.parametrize("kind", ["flat", "tuple", "scalar", "nan"])
def test_a_bad_module_on_a_warm_cache_raises(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    _evaluate(_Out("good"), tmp_path)
    torch.manual_seed(0)
    with pytest.raises(ValueError):
        _evaluate(_Out(kind), tmp_path)


# ------------------------------------------------------------------------------ cause 8: dtype, device
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_a_non_float32_backbone_is_refused_with_the_fix(dtype: torch.dtype) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).to(dtype)
    for make in (lambda: rtcore.as_backbone(net), lambda: rtcore.create_backbone(net, device="cpu")):
        with pytest.raises(ValueError, match=rf"{str(dtype)}.*module\.float\(\)"):
            make()
    g = rtcore.as_backbone(net.float())
    g.double()
    with pytest.raises(ValueError, match=r"converted to torch.float64 after wrapping.*\.float\(\)"):
        g(torch.rand(2, 1, 2, 2))


def test_nan_or_inf_weights_are_refused_naming_the_tensor() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        net[1].bias[1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN in parameter '1\.bias'"):
        rtcore.as_backbone(net)
    with torch.no_grad():
        net[1].bias[1] = float("inf")
    with pytest.raises(ValueError, match=r"inf in parameter '1\.bias'"):
        rtcore.as_backbone(net)


def test_images_are_computed_in_float32_and_integer_images_are_refused() -> None:
    g = rtcore.create_backbone("fmnist-cnn-standard", device="cpu")
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(g(x.double()), g(x))
    with pytest.raises(ValueError, match=r"dtype torch.uint8.*x.float\(\) / 255"):
        g((x * 255).to(torch.uint8))


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")
    with pytest.raises(ValueError, match=r"meta tensors hold shapes but no numbers.*'cpu'"):
        resolve_device("meta")
    for bad, words in [("tpu", "not a device name"), ("gpu0", "not a device name"), (3, "int"), (True, "bool")]:
        with pytest.raises(ValueError, match=words):
            resolve_device(bad)  # type: ignore[arg-type]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for dev in ("cuda", "cuda:0", torch.device("cuda", 1)):
        with pytest.raises(ValueError, match=r"CUDA is not available on this machine.*available here: \['cpu'\]"):
            resolve_device(dev)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="has 1 CUDA device"):
        resolve_device("cuda:3")


def test_a_bad_device_is_refused_before_anything_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*a: object, **k: object) -> None:
        raise AssertionError("the backbone was loaded before the device was checked")

    monkeypatch.setattr(R, "create_bundled_backbone", never)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for dev in ("meta", "cuda"):
        with pytest.raises(ValueError, match="device="):
            rtcore.create_backbone("fmnist-cnn-standard", device=dev)


# ------------------------------------------------------------------ cause 4 and 12: weight files
def _state(name: str = "fmnist-cnn-standard") -> dict[str, torch.Tensor]:
    g = rtcore.create_backbone(name, device="cpu")
    return {k: v.detach().clone().contiguous() for k, v in g.net.state_dict().items()}


def test_integer_weights_are_refused_naming_the_tensor(tmp_path: Path) -> None:
    state = _state()
    key = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 2)
    state[key] = (state[key] * 100).to(torch.int32)
    path = tmp_path / "int32.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=rf"{key} \(torch.int32 in the file, torch.float32 in the model\)"):
        rtcore.create_backbone("fmnist-cnn-standard", device="cpu", weights=path)
    R.register_backbone("test-silent-int", lambda: rtcore.create_backbone("fmnist-cnn-standard", device="cpu",
                                                                          pretrained=False).net, overwrite=True)
    try:
        with pytest.raises(CheckpointError, match="int32"):
            rtcore.create_backbone("test-silent-int", device="cpu", weights=path)
    finally:
        R.unregister_backbone("test-silent-int")


def test_integer_weights_into_a_timm_model_are_refused(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    ref = rtcore.create_backbone("timm:test_resnet", device="cpu", pretrained=False)
    state = {k: v.contiguous() for k, v in ref.net.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 4)
    state[key] = state[key].to(torch.int16)
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match=rf"{key} \(I16 in the file"):
        rtcore.create_backbone("timm:test_resnet", device="cpu", weights=tmp_path / "w.safetensors")


def test_float_casts_and_integer_buffers_are_allowed_but_a_float_counter_is_not(tmp_path: Path) -> None:
    state = _state()
    ref = rtcore.create_backbone("fmnist-cnn-standard", device="cpu")
    save_file({k: (v.double() if v.is_floating_point() else v) for k, v in state.items()}, str(tmp_path / "f64.st"))
    g = rtcore.create_backbone("fmnist-cnn-standard", device="cpu", weights=tmp_path / "f64.st")
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(g(x), ref(x)), "float64 weights cast exactly back to the float32 they came from"
    counter = next(k for k in state if k.endswith("num_batches_tracked"))
    state[counter] = state[counter].float()
    save_file(state, str(tmp_path / "cnt.st"))
    with pytest.raises(CheckpointError, match=rf"{counter} \(torch.float32 in the file, torch.int64"):
        rtcore.create_backbone("fmnist-cnn-standard", device="cpu", weights=tmp_path / "cnt.st")


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail (instead of hanging) if a check blocks, e.g. by opening a FIFO for reading."""
    def boom(*_: object) -> None:
        raise TimeoutError("blocked: the path was opened instead of inspected")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_weights_that_are_not_files_are_named_as_what_they_are(tmp_path: Path, alarm: None) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "withfile").mkdir()
    save_file({"a": torch.ones(1)}, str(tmp_path / "withfile" / "model.safetensors"))
    os.mkfifo(tmp_path / "fifo.safetensors")
    os.symlink("/dev/zero", tmp_path / "zero.safetensors")
    os.symlink(tmp_path / "gone.safetensors", tmp_path / "dangling.safetensors")
    cases = {
        "dir": r"is a directory, not a regular file; give the path of a .safetensors file \(it holds none\)",
        "withfile": r"is a directory.*give the file inside it \(model.safetensors\)",
        "fifo.safetensors": r"is a named pipe \(FIFO\), not a regular file",
        "zero.safetensors": r"is a character device \(a symbolic link to '/dev/zero'\)",
        "dangling.safetensors": r"is a symbolic link to .*gone.safetensors', which does not exist",
        "missing.safetensors": r"does not exist; give the path",
    }
    for name, words in cases.items():
        with pytest.raises(CheckpointError, match=words):
            rtcore.create_backbone("fmnist-cnn-standard", device="cpu", weights=tmp_path / name)
    for bad in ["", "  ", b"w.safetensors", 3]:
        with pytest.raises(CheckpointError, match="must be the path of a .safetensors file"):
            rtcore.create_backbone("fmnist-cnn-standard", device="cpu", weights=bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ cause 9 and 10: where it writes
@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RTCORE_CACHE_DIR", raising=False)
    return home


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_converted_weights_go_under_the_given_cache_dir_and_nowhere_without_a_cache(
        tmp_path: Path, empty_home: Path) -> None:
    pytest.importorskip("pyautoattack")
    from rtcore.models.thirdparty import AUTOATTACK_RESNET18

    mine = tmp_path / "mine"
    g = rtcore.create_backbone(AUTOATTACK_RESNET18, device="cpu", cache_dir=mine)
    assert _tree(empty_home) == [], "nothing under $HOME when a cache dir is given"
    assert (mine / "converted" / f"{AUTOATTACK_RESNET18}.safetensors").is_file()
    none = tmp_path / "none"
    none.mkdir()
    g2 = rtcore.create_backbone(AUTOATTACK_RESNET18, device="cpu", cache_dir=none, use_cache=False)
    assert _tree(none) == [] and _tree(empty_home) == [], "use_cache=False writes nothing"
    assert g2.fingerprint() == g.fingerprint() and "in memory" in g2.source
    with pytest.raises(CacheDirError, match="empty"):
        rtcore.create_backbone(AUTOATTACK_RESNET18, device="cpu", cache_dir="")
    assert _tree(empty_home) == []


def test_default_cache_dir_rules(empty_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rtcore.config import default_cache_dir, resolve_cache_dir

    assert default_cache_dir() == empty_home / ".cache" / "rtcore"
    monkeypatch.setenv("RTCORE_CACHE_DIR", "")
    with pytest.raises(CacheDirError, match="RTCORE_CACHE_DIR is set but empty.*unset RTCORE_CACHE_DIR"):
        default_cache_dir()
    monkeypatch.setenv("RTCORE_CACHE_DIR", "  ")
    with pytest.raises(CacheDirError, match="set but empty"):
        resolve_cache_dir(None)
    monkeypatch.setenv("RTCORE_CACHE_DIR", "~/elsewhere")
    assert resolve_cache_dir(None) == empty_home / "elsewhere"
    for bad in ["", " "]:  # (Path("") is Path("."): a folder the caller named, not an empty string)
        with pytest.raises(CacheDirError, match="empty, which would mean the current folder"):
            resolve_cache_dir(bad)
    with pytest.raises(CacheDirError, match="must be a folder path"):
        resolve_cache_dir(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- one registry shape
def test_the_backbone_registry_has_the_common_shape() -> None:
    names = rtcore.list_backbones()
    assert names[0] in R.BACKBONES and names == list(R.backbone_specs())
    info = R.backbone_info("fmnist-cnn-standard")
    assert (info.name, info.kind, info.offline) == ("fmnist-cnn-standard", "bundled", True) and callable(info.factory)
    assert R.backbone_info("timm:some_model").kind == "timm"
    with pytest.raises(ValueError, match="unknown backbone 'nope'; valid names: fmnist"):
        R.backbone_info("nope")
    with pytest.raises(ValueError, match="starts with 'timm:'"):
        R.register_backbone("timm:mine", lambda: nn.Identity())
    with pytest.raises(ValueError, match="is a bundled backbone"):
        R.register_backbone("fmnist-cnn-standard", lambda: nn.Identity(), overwrite=True)
    first, second = R.backbone_specs(), R.backbone_specs()
    assert first["fmnist-cnn-standard"] is second["fmnist-cnn-standard"], "entries are built once"


def test_models_do_not_import_attacks() -> None:
    for path in (REPO / "rtcore" / "models").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "attacks" not in (node.module or ""), f"{path.name} imports {node.module}"


def test_old_package_names_still_import_from_their_old_homes() -> None:
    from rtcore._packages import AUTOATTACK_INSTALL_HINT, autoattack_available
    from rtcore.attacks.autoattack import INSTALL_HINT, PACKAGE, PACKAGE_VERSION
    from rtcore.attacks.autoattack import autoattack_available as old_available
    from rtcore.models.thirdparty import INSTALL_HINT as models_hint

    assert INSTALL_HINT == AUTOATTACK_INSTALL_HINT == models_hint == f"pip install {PACKAGE}=={PACKAGE_VERSION}"
    assert old_available() == autoattack_available()
