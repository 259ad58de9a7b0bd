"""Benchmark rtcore's PGD engine against torchattacks and foolbox on one model, one input set.

Run from the repository root (peers are *not* runtime dependencies of rtcore)::

    python -m venv .venv-bench
    .venv-bench/bin/pip install -r requirements.txt -r bench/requirements.txt
    .venv-bench/bin/python bench/attacks.py            # --n 512 --reps 3 --device auto
    .venv-bench/bin/python bench/attacks.py --quick    # smoke test: tiny n, 1 repetition

Every section runs its contenders in one process on the same model object, the same
images, the same eps and the same number of steps, interleaved (A B C A B C ...), after one
untimed warm-up call each; the tables report medians. Every contender's returned images are
checked (inside the eps-ball, inside [0, 1]) and robust accuracy / Delta is recomputed here
from those images with the same model, never taken from a library's own success flag.

Sections (see bench/README.md for what each row means):

1. ``single``  end-to-end linf PGD, eps 0.1, 20 steps, 1 restart
2. ``sweep``   the same over 5 eps: rtcore's one-call sweep, foolbox's ``epsilons=[...]``,
               a torchattacks loop
3. ``feature`` the feature attack max ||g(x')-g(x)||_2 (20 steps) vs the same loss in foolbox
4. ``tasks``   the bound for K = 1..5 tasks sharing inputs vs K end-to-end attacks
5. ``flops``   achieved model FLOP/s as a fraction of the measured float32 matmul peak

Writes ``bench/out/results.json`` and ``bench/out/results.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import json
import math
import os
import platform
import pstats
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "bench"):  # `python bench/attacks.py` from anywhere; bench/fast_model.py
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from fast_model import ascending_sweep, prepare_for_attack

import rtcore
from rtcore import AttackSettings, LinearProbe, ProbedModel
from rtcore.pipeline import test_indices

DEFAULT_BACKBONE = "fmnist-cnn-pgd-linf-0.1"
DEFAULT_TASK = "fmnist-novel"
SWEEP_EPS = (0.02, 0.04, 0.06, 0.08, 0.1)
# K tasks that share the test images: relabellings of fmnist-novel
# (0 Sandal, 1 Shirt, 2 Sneaker, 3 Bag, 4 Ankle boot)
RELABELLINGS: list[tuple[str, list[int], list[str]]] = [
    ("novel-5way", [0, 1, 2, 3, 4], ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]),
    ("footwear-vs-rest", [1, 0, 1, 0, 1], ["other", "footwear"]),
    ("footwear-shirt-bag", [0, 1, 0, 2, 0], ["footwear", "shirt", "bag"]),
    ("bag-vs-rest", [0, 0, 0, 1, 0], ["other", "bag"]),
    ("boot-vs-low-vs-other", [1, 2, 1, 2, 0], ["boot", "low shoe", "other"]),
]
TOL = 1e-6  # float32 slack for the eps-ball check
PROTO = "prototype: "  # rows that are not rtcore as it is (bench/fast_model.py), never used for the targets


# ============================================================== helpers

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device, threads: int) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "torch_threads": threads,
        "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    for mod in ("torchattacks", "foolbox", "eagerpy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a peer that is missing or broken is just not listed
            info[mod] = None
    info["rtcore_attacks_py_sha256"] = hashlib.sha256((ROOT / "rtcore" / "attacks.py").read_bytes()).hexdigest()[:16]
    info["autoattack"] = "not on PyPI (`pip download --no-deps autoattack`: no matching distribution); skipped"
    return info


def median(v: Sequence[float]) -> float:
    return float(statistics.median(v))


def check_ball(x_adv: torch.Tensor, x: torch.Tensor, eps: float, who: str) -> float:
    """Raise unless x_adv is in the linf eps-ball around x and in [0, 1]; return max distance."""
    x_adv = x_adv.detach().to(x.device, torch.float32)
    if x_adv.shape != x.shape:
        raise RuntimeError(f"{who}: returned shape {tuple(x_adv.shape)} != {tuple(x.shape)}")
    dist = float((x_adv - x).abs().flatten(1).amax(dim=1).max()) if x.numel() else 0.0
    lo, hi = float(x_adv.min()), float(x_adv.max())
    if dist > eps + TOL or lo < 0 or hi > 1 or not torch.isfinite(x_adv).all():
        raise RuntimeError(f"{who}: adversarial examples leave the eps={eps} ball (max dist {dist:.6g}) "
                           f"or [0,1] (min {lo:.3g}, max {hi:.3g})")
    return dist


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, bs: int = 512) -> torch.Tensor:
    return torch.cat([fn(x[i:i + bs]) for i in range(0, x.shape[0], bs)])


def robust_acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, eps: float,
               who: str) -> float:
    """Recomputed here: correct on x and on the returned x_adv (x itself is in the ball)."""
    check_ball(x_adv, x, eps, who)
    clean = batched(model, x).argmax(1) == y
    adv = batched(model, x_adv.to(x.device, torch.float32)).argmax(1) == y
    return float((clean & adv).float().mean())


def mean_delta(g: nn.Module, x: torch.Tensor, f0: torch.Tensor, x_adv: torch.Tensor, eps: float, who: str) -> float:
    check_ball(x_adv, x, eps, who)
    return float((batched(g, x_adv.to(x.device, torch.float32)) - f0).norm(dim=1).mean())


class PassCounter:
    """Counts rows pushed through a module: with a graph (forward+backward) or without."""

    def __init__(self, module: nn.Module) -> None:
        self.grad_rows = 0
        self.nograd_rows = 0
        self.calls = 0
        self._h = module.register_forward_pre_hook(self._hook)

    def _hook(self, mod: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]
        self.calls += 1
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad_rows += x.shape[0]
        else:
            self.nograd_rows += x.shape[0]

    def remove(self) -> dict[str, int]:
        self._h.remove()
        return {"grad_rows": self.grad_rows, "nograd_rows": self.nograd_rows, "calls": self.calls}


def interleave(contenders: dict[str, Callable[[], Any]], reps: int, device: torch.device,
               count_on: nn.Module | None = None,
               after: Callable[[str, Any], Any] | None = None,
               count_on_for: dict[str, nn.Module] | None = None) -> dict[str, dict[str, Any]]:
    """Warm up each contender once (untimed, counting passes through ``count_on``, or the
    contender's own module in ``count_on_for``), then time ``reps`` rounds A B C A B C ...;
    ``after(name, output)`` (untimed) evaluates each output."""
    out: dict[str, dict[str, Any]] = {k: {"times": [], "evals": []} for k in contenders}
    for name, fn in contenders.items():
        module = (count_on_for or {}).get(name, count_on)
        counter = PassCounter(module) if module is not None else None
        fn()
        sync(device)
        if counter is not None:
            out[name]["passes"] = counter.remove()
    for r in range(reps):
        for name, fn in contenders.items():
            sync(device)
            c0, t0 = time.process_time(), time.perf_counter()
            res = fn()
            sync(device)
            dt = time.perf_counter() - t0
            out[name]["times"].append(dt)
            # CPU seconds of this process per wall second and thread: well below 1 when another
            # process took the cores during this repetition (on CPU; meaningless on a GPU)
            out[name].setdefault("cpu_util", []).append((time.process_time() - c0) / dt / torch.get_num_threads())
            out[name].setdefault("started_at", []).append(time.time())
            if after is not None:
                out[name]["evals"].append(after(name, res))
            log(f"    rep {r + 1}/{reps} {name:<28s} {dt:8.3f} s  cpu util {out[name]['cpu_util'][-1]:.2f}")
    for name, v in out.items():
        v["median_s"] = median(v["times"])
        ev = v["evals"][-1] if v["evals"] else None
        shown = ", ".join(f"{e:.4f}" for e in ev) if isinstance(ev, list) else (f"{ev:.4f}" if ev is not None else "")
        log(f"  {name:<50s} median {v['median_s']:8.3f} s  last result {shown}  passes {v.get('passes')}")
    return out


# ============================================================== setup

def random_backbone(device: torch.device) -> rtcore.Backbone:
    """A tiny random SmallCNN (for the smoke test; no weights needed)."""
    from rtcore.models.nets import SmallCNN

    torch.manual_seed(0)
    net = SmallCNN(in_chans=1, width=8, feature_dim=32, num_classes=5)
    g = rtcore.as_backbone(net, name="random-small-cnn", input_size=(1, 28, 28), mean=[0.286], std=[0.353],
                           features=lambda m, x: m.forward_features(x))
    return g.to(device)


def load_backbone(name: str, device: torch.device) -> rtcore.Backbone:
    if name == "random":
        return random_backbone(device)
    return rtcore.create_backbone(name, device=device)


def assert_eval(model: nn.Module, what: str) -> None:
    bad = [n for n, m in model.named_modules() if m.training]
    if bad:
        raise RuntimeError(f"{what} has modules in training mode: {bad[:5]}")


def fit_probe(f_train: torch.Tensor, y_train: torch.Tensor, num_classes: int) -> LinearProbe:
    return LinearProbe(C=1.0, num_classes=num_classes).fit(f_train, y_train)


# ============================================================== peers

def make_torchattacks(model: nn.Module, eps: float, steps: int, alpha: float):  # -> torchattacks.PGD
    import torchattacks

    return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)


def foolbox_model(module: nn.Module, device: torch.device):  # -> foolbox.PyTorchModel
    import foolbox as fb

    return fb.PyTorchModel(module, bounds=(0, 1), device=device)


def foolbox_feature_attack(steps: int, rel_stepsize: float):
    """The feature loss written with foolbox, as the paper's code did: LinfPGD with
    ``get_loss_fn`` overridden to ``0.5 ||g(x') - g(x)||^2`` and a criterion that never
    succeeds (so every step runs). The "labels" carried by the criterion are g(x)."""
    import eagerpy as ep
    import foolbox as fb

    class NeverAdversarial(fb.criteria.Misclassification):
        def __call__(self, perturbed, outputs):  # type: ignore[no-untyped-def]
            outputs_, restore_type = ep.astensor_(outputs)
            return restore_type(ep.zeros(outputs_, (len(outputs_),)) > 1)

    class FeatureLinfPGD(fb.attacks.LinfPGD):
        def get_loss_fn(self, model, labels):  # type: ignore[no-untyped-def]
            def loss_fn(inputs):  # type: ignore[no-untyped-def]
                d = model(inputs) - labels
                return 0.5 * (d * d).sum()
            return loss_fn

    return FeatureLinfPGD(rel_stepsize=rel_stepsize, steps=steps, random_start=True), NeverAdversarial


# ============================================================== FLOPs

def model_flops(module: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """FLOPs per image of one forward (no graph) and one forward+backward to the input."""
    from torch.utils.flop_counter import FlopCounterMode

    xb = x[: min(16, x.shape[0])].detach().clone()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        module(xb)
    fwd = fc.get_total_flops() / xb.shape[0]
    xg = xb.clone().requires_grad_(True)
    with FlopCounterMode(display=False) as fc:
        module(xg).float().sum().backward()  # parameters are frozen: only the input gradient
    return {"fwd": fwd, "fwd_bwd": fc.get_total_flops() / xb.shape[0]}


def matmul_peak(device: torch.device, size: int, reps: int) -> dict[str, float]:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.matmul(a, b)  # warm-up
    sync(device)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return {"size": size, "best_s": best, "flops_per_s": 2 * size**3 / best}


def achieved(passes: dict[str, int] | None, flops: dict[str, float], seconds: float, peak: float) -> dict[str, float]:
    if not passes:
        return {}
    total = passes["grad_rows"] * flops["fwd_bwd"] + passes["nograd_rows"] * flops["fwd"]
    return {"model_flops": total, "flops_per_s": total / seconds, "peak_fraction": total / seconds / peak,
            "grad_rows": passes["grad_rows"], "nograd_rows": passes["nograd_rows"], "calls": passes["calls"]}


# ============================================================== profile

def line_times(fn: Callable[[], Any], filename: str) -> tuple[float, list[dict[str, Any]]]:
    """Inclusive wall time per source line of ``filename`` (time until the frame's next line
    event, callees included), with a sys.settrace line tracer; only frames of that file are traced."""
    times: dict[tuple[str, int], float] = defaultdict(float)
    hits: dict[tuple[str, int], int] = defaultdict(int)
    state: dict[Any, tuple[int, float]] = {}

    def local(frame: Any, event: str, arg: Any) -> Any:
        now = time.perf_counter()
        prev = state.get(frame)
        if prev is not None:
            key = (frame.f_code.co_name, prev[0])
            times[key] += now - prev[1]
            hits[key] += 1
        if event == "return":
            state.pop(frame, None)
        else:
            state[frame] = (frame.f_lineno, time.perf_counter())
        return local

    def glob(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == filename else None

    t0 = time.perf_counter()
    sys.settrace(glob)
    try:
        fn()
    finally:
        sys.settrace(None)
    wall = time.perf_counter() - t0
    src = Path(filename).read_text().splitlines()
    rows = [{"line": f"{Path(filename).name}:{ln} {name}", "code": src[ln - 1].strip()[:90], "s": t,
             "hits": hits[(name, ln)], "share": t / wall} for (name, ln), t in times.items()]
    rows.sort(key=lambda d: -d["s"])
    return wall, rows


def profile_call(fn: Callable[[], Any], top: int = 12) -> dict[str, Any]:
    """One call under torch.profiler (top aten ops by self time), one under a line timer of
    rtcore/attacks.py (inclusive time per line), one under cProfile (Python functions)."""
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        fn()
    wall = time.perf_counter() - t0
    ka = prof.key_averages()
    ops = sorted((e for e in ka if e.self_cpu_time_total > 0), key=lambda e: -e.self_cpu_time_total)
    total_self = sum(e.self_cpu_time_total for e in ka) / 1e6
    top_ops = [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "calls": e.count,
                "share": e.self_cpu_time_total / 1e6 / wall} for e in ops[:top]]
    lt_wall, lines = line_times(fn, str(ROOT / "rtcore" / "attacks.py"))
    pr = cProfile.Profile()
    t1 = time.perf_counter()
    pr.enable()
    fn()
    pr.disable()
    wall_cp = time.perf_counter() - t1
    st = pstats.Stats(pr)
    funcs = []
    for (file, line, name), (cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        funcs.append({"function": f"{Path(file).name}:{line}({name})", "tottime_s": tt, "cumtime_s": ct, "calls": nc})
    funcs.sort(key=lambda d: -d["tottime_s"])
    return {"wall_s_under_profiler": wall, "op_self_total_s": total_self, "top_ops": top_ops,
            "line_timer_wall_s": lt_wall, "attacks_py_lines": lines[:25],
            "cprofile_wall_s": wall_cp, "cprofile_top": funcs[:top]}


# ============================================================== sections

def section_single(ctx: dict[str, Any], reps: int) -> dict[str, Any]:
    model, x, y, dev = ctx["model"], ctx["x"], ctx["y"], ctx["device"]
    eps, steps = ctx["eps"], ctx["steps"]
    alpha = 2.5 * eps / steps
    same = AttackSettings(steps=steps, restarts=1, feature_restarts=1, losses=("ce",), targets=0)
    ta = make_torchattacks(model, eps, steps, alpha)
    import foolbox as fb

    fmodel = foolbox_model(model, dev)
    fpgd = fb.attacks.LinfPGD(abs_stepsize=alpha, steps=steps, random_start=True)
    contenders = {
        "rtcore (same work)": lambda: rtcore.attack(model, x, y, eps, settings=same).x_adv,
        "torchattacks.PGD": lambda: ta(x, y),
        "foolbox LinfPGD": lambda: fpgd(fmodel, x, y, epsilons=eps)[1],
        "rtcore ('standard' preset)": lambda: rtcore.attack(model, x, y, eps, settings="standard").x_adv,
    }
    counts: dict[str, nn.Module] = {}
    if ctx["prototype"]:  # the proposed change, proved with the real rtcore.attack on a prepared copy
        fast = ctx["fast_model"]
        ta_fast = make_torchattacks(fast, eps, steps, alpha)
        contenders[PROTO + "rtcore (same work) on prepared copy"] = \
            lambda: rtcore.attack(fast, x, y, eps, settings=same).x_adv
        contenders[PROTO + "torchattacks.PGD on prepared copy"] = lambda: ta_fast(x, y)
        counts = {k: fast for k in contenders if k.startswith(PROTO)}
    res = interleave(contenders, reps, dev, count_on=model, count_on_for=counts,
                     after=lambda name, xa: robust_acc(model, x, y, xa, eps, name))
    ctx["settings_same"] = same
    return {"eps": eps, "steps": steps, "peer_alpha": alpha, "rtcore_settings": same.key(), "contenders": res}


def section_sweep(ctx: dict[str, Any], reps: int) -> dict[str, Any]:
    model, x, y, dev, steps = ctx["model"], ctx["x"], ctx["y"], ctx["device"], ctx["steps"]
    eps_list = list(ctx["sweep_eps"])
    same = ctx["settings_same"]
    import foolbox as fb

    fmodel = foolbox_model(model, dev)
    fpgd = fb.attacks.LinfPGD(rel_stepsize=2.5 / steps, steps=steps, random_start=True)
    tas = [make_torchattacks(model, e, steps, 2.5 * e / steps) for e in eps_list]

    def rt() -> list[torch.Tensor]:
        xa = rtcore.attack(model, x, y, eps_list, settings=same).x_adv
        return [xa[i] for i in range(len(eps_list))]

    contenders = {
        "rtcore sweep (one call)": rt,
        "torchattacks.PGD loop": lambda: [a(x, y) for a in tas],
        "foolbox LinfPGD epsilons=[...]": lambda: fpgd(fmodel, x, y, epsilons=eps_list)[1],
    }
    counts: dict[str, nn.Module] = {}
    if ctx["prototype"]:
        fast = ctx["fast_model"]

        def rt_fast() -> list[torch.Tensor]:
            xa = rtcore.attack(fast, x, y, eps_list, settings=same).x_adv
            return [xa[i] for i in range(len(eps_list))]

        contenders[PROTO + "rtcore sweep on prepared copy"] = rt_fast
        contenders[PROTO + "ascending eps, broken points skipped"] = \
            lambda: ascending_sweep(model, x, y, eps_list, same)
        contenders[PROTO + "both (prepared copy, ascending, skipped)"] = \
            lambda: ascending_sweep(fast, x, y, eps_list, same)
        counts = {PROTO + "rtcore sweep on prepared copy": fast,
                  PROTO + "both (prepared copy, ascending, skipped)": fast}
    res = interleave(contenders, reps, dev, count_on=model, count_on_for=counts,
                     after=lambda name, xs: [robust_acc(model, x, y, xa, e, name) for xa, e in zip(xs, eps_list)])
    return {"eps": eps_list, "steps": steps, "peer_alpha": "2.5*eps/steps", "contenders": res}


def section_feature(ctx: dict[str, Any], reps: int) -> dict[str, Any]:
    g, x, dev, eps, steps = ctx["g"], ctx["x"], ctx["device"], ctx["eps"], ctx["steps"]
    f0 = batched(g, x)
    same = AttackSettings(steps=steps, restarts=1, feature_restarts=1, losses=("ce",), targets=0)
    fattack, never = foolbox_feature_attack(steps, 2.5 / steps)
    fmodel = foolbox_model(g, dev)
    crit = never(f0)
    contenders = {
        "rtcore feature_attack (same work)": lambda: rtcore.feature_attack(g, x, eps, settings=same).x_adv,
        "foolbox LinfPGD + feature loss": lambda: fattack(fmodel, x, crit, epsilons=eps)[1],
        "rtcore feature_attack ('standard')": lambda: rtcore.feature_attack(g, x, eps, settings="standard").x_adv,
    }
    if steps > 5:  # rtcore's first start costs 5 power iterations: the same number of gradient passes as foolbox
        eq = AttackSettings(steps=steps - 5, restarts=1, feature_restarts=1, losses=("ce",), targets=0)
        contenders[f"rtcore feature_attack ({steps} passes: 5 power + {steps - 5} steps)"] = \
            lambda: rtcore.feature_attack(g, x, eps, settings=eq).x_adv
    counts: dict[str, nn.Module] = {}
    if ctx["prototype"]:
        fast_g = ctx["fast_backbone"]
        contenders[PROTO + "rtcore feature_attack on prepared copy"] = \
            lambda: rtcore.feature_attack(fast_g, x, eps, settings=same).x_adv
        counts = {PROTO + "rtcore feature_attack on prepared copy": fast_g}
    res = interleave(contenders, reps, dev, count_on=g, count_on_for=counts,
                     after=lambda name, xa: mean_delta(g, x, f0, xa, eps, name))
    return {"eps": eps, "steps": steps, "peer_rel_stepsize": 2.5 / steps, "rtcore_settings": same.key(),
            "contenders": res}


def section_tasks(ctx: dict[str, Any], reps: int) -> dict[str, Any]:
    """Bound for K tasks on shared inputs (one feature attack + per task: probe fit, margins)
    vs per task: probe fit + one end-to-end attack. Timed per component in every rep."""
    g, x, dev, eps = ctx["g"], ctx["x"], ctx["device"], ctx["eps"]
    base, idx, f_train = ctx["task"], ctx["idx"], ctx["f_train"]
    same = ctx["settings_same"]
    tasks = [rtcore.relabel_task(base, m, names, name=nm) for nm, m, names in RELABELLINGS[: ctx["k_max"]]]
    ntr = ctx["train_n"]
    ys = [t.y_test[idx].to(dev) for t in tasks]

    def one_rep() -> dict[str, Any]:
        rec: dict[str, Any] = {"fit": [], "margins": [], "e2e": [], "bound_ra": [], "e2e_ra": []}
        t0 = time.perf_counter()
        fa = rtcore.feature_attack(g, x, eps, settings=same)
        sync(dev)
        rec["feature_attack"] = time.perf_counter() - t0
        f0, delta = fa.clean_features.to(dev), fa.delta.to(dev)
        for t, y in zip(tasks, ys):
            t0 = time.perf_counter()
            probe = fit_probe(f_train, t.y_train[:ntr], t.num_classes)
            rec["fit"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ok = rtcore.bound_criterion(f0, y, probe.weight_.to(dev), probe.bias_.to(dev), delta)
            ra_bound = float(ok.double().mean())
            sync(dev)
            rec["margins"].append(time.perf_counter() - t0)
            model = ProbedModel(g, probe.as_module().to(dev)).eval()
            t0 = time.perf_counter()
            res = rtcore.attack(model, x, y, eps, settings=same)
            sync(dev)
            rec["e2e"].append(time.perf_counter() - t0)
            rec["bound_ra"].append(ra_bound)
            rec["e2e_ra"].append(robust_acc(model, x, y, res.x_adv, eps, f"rtcore e2e {t.name}"))
        return rec

    one_rep()  # warm-up
    recs = []
    for r in range(reps):
        recs.append(one_rep())
        log(f"    rep {r + 1}/{reps} feature attack {recs[-1]['feature_attack']:.3f} s, "
            f"fit {sum(recs[-1]['fit']):.3f} s, margins {sum(recs[-1]['margins']):.4f} s, "
            f"e2e {sum(recs[-1]['e2e']):.3f} s")
    rows = []
    for k in range(1, len(tasks) + 1):
        bound = [r["feature_attack"] + sum(r["fit"][:k]) + sum(r["margins"][:k]) for r in recs]
        e2e = [sum(r["fit"][:k]) + sum(r["e2e"][:k]) for r in recs]
        rows.append({"K": k, "bound_s": median(bound), "e2e_s": median(e2e),
                     "ratio_e2e_over_bound": median(e2e) / median(bound)})
    fit_m = median([x for r in recs for x in r["fit"]])
    mar_m = median([x for r in recs for x in r["margins"]])
    e2e_m = median([x for r in recs for x in r["e2e"]])
    fa_m = median([r["feature_attack"] for r in recs])
    return {
        "eps": eps, "settings": same.key(), "tasks": [t.name for t in tasks], "train_n": ntr,
        "rows": rows, "reps": recs,
        "median_feature_attack_s": fa_m, "median_probe_fit_s": fit_m, "median_margins_s": mar_m,
        "median_e2e_attack_s": e2e_m,
        "extra_task_bound_s": fit_m + mar_m,
        "extra_task_fraction_of_e2e_attack": (fit_m + mar_m) / e2e_m,
        "extra_task_fraction_excl_fit": mar_m / e2e_m,
        "bound_ra": recs[-1]["bound_ra"], "e2e_ra": recs[-1]["e2e_ra"],
        "extra_vs_task": [median([(r["fit"][i] + r["margins"][i]) / (r["fit"][i] + r["e2e"][i]) for r in recs])
                          for i in range(len(tasks))],
    }


# ============================================================== report

def fmt_s(v: float) -> str:
    return f"{v:.3f}" if v < 100 else f"{v:.1f}"


def build_tables(res: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    peak = res["flops"]["matmul_peak"]["flops_per_s"]
    rows: list[dict[str, Any]] = []

    def add(section: str, ref: str, contenders: dict[str, Any], metric: str, fmt: Callable[[Any], str],
            flops: dict[str, float]) -> None:
        t_ref = contenders[ref]["median_s"]
        for name, c in contenders.items():
            ach = achieved(c.get("passes"), flops, c["median_s"], peak)
            c["achieved"] = ach
            rows.append({
                "section": section, "contender": name, "median_s": c["median_s"],
                "times": c["times"],
                "ratio": c["median_s"] / t_ref,  # peer time / rtcore time
                "metric": metric, "value": fmt(c["evals"]),
                "gflops": ach.get("flops_per_s", float("nan")) / 1e9,
                "min_cpu_util": min(c.get("cpu_util") or [float("nan")]),
                "peak_pct": 100 * ach.get("peak_fraction", float("nan")),
            })

    pct = lambda evs: f"{100 * median(evs):.1f}%"
    s = res["single"]
    add(f"1 single eps={s['eps']}", "rtcore (same work)", s["contenders"], "robust acc", pct, res["flops"]["model"])
    w = res["sweep"]

    def sweep_fmt(evs: list[list[float]]) -> str:
        return " / ".join(f"{100 * median([e[i] for e in evs]):.1f}" for i in range(len(w["eps"]))) + " %"

    add("2 sweep eps=" + ",".join(str(e) for e in w["eps"]), "rtcore sweep (one call)", w["contenders"],
        "robust acc per eps", sweep_fmt, res["flops"]["model"])
    f = res["feature"]
    add(f"3 feature eps={f['eps']}", "rtcore feature_attack (same work)", f["contenders"], "mean Delta",
        lambda evs: f"{median(evs):.4f}", res["flops"]["backbone"])

    m = res["machine"]
    lines = [
        (f"Machine: {m['cpu']}, {m['logical_cores']} logical cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"device {m['device']}{' (' + m['gpu'] + ')' if m.get('gpu') else ''}; torchattacks {m['torchattacks']}, "
        f"foolbox {m['foolbox']}; autoattack: {m['autoattack']}."),
        (f"Model: backbone `{res['config']['backbone']}` + LinearProbe (C=1) on `{res['config']['task']}` train "
        f"features; {res['config']['n']} test images; medians of {res['config']['reps']} interleaved repetitions "
        f"after one warm-up each. Ratio = contender time / rtcore time (>1: rtcore faster). Min CPU util = lowest "
        f"(process CPU s) / (wall s x threads) over the repetitions: well below 1 means another process took cores. "
        f"Matmul peak {peak / 1e9:.1f} GFLOP/s (float32 {res['flops']['matmul_peak']['size']}^2)."),
        "",
        "| section | contender | median s | ratio vs rtcore | result | model GFLOP/s | % of peak | min CPU util |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['section']} | {r['contender']} | {fmt_s(r['median_s'])} | {r['ratio']:.2f}x | "
                     f"{r['metric']}: {r['value']} | {r['gflops']:.2f} | {r['peak_pct']:.1f}% | "
                     f"{r['min_cpu_util']:.2f} |")
    t = res["tasks"]
    lines += [
        "",
        (f"Tasks sharing the inputs (eps {t['eps']}, rtcore 'same work' settings): bound = one feature attack + per "
        f"task a probe fit and margins; end-to-end = per task a probe fit and one attack."),
        "",
        "| K tasks | bound s | K end-to-end s | e2e / bound |",
        "|---:|---:|---:|---:|",
    ]
    for r in t["rows"]:
        lines.append(f"| {r['K']} | {fmt_s(r['bound_s'])} | {fmt_s(r['e2e_s'])} | {r['ratio_e2e_over_bound']:.2f}x |")
    lines += [
        "",
        (f"Extra task on inputs already attacked: probe fit {t['median_probe_fit_s']:.3f} s + margins "
        f"{t['median_margins_s'] * 1e3:.1f} ms = {100 * t['extra_task_fraction_of_e2e_attack']:.1f}% of one "
        f"end-to-end attack ({t['median_e2e_attack_s']:.3f} s); without the probe fit (which the end-to-end path "
        f"needs too): {100 * t['extra_task_fraction_excl_fit']:.2f}%. Per task, (fit + margins) / (fit + attack): "
        + ", ".join(f"{nm} {100 * v:.1f}%" for nm, v in zip(t["tasks"], t["extra_vs_task"])) + "."),
        "Per task, bound RA vs end-to-end RA: " + ", ".join(
            f"{nm} {100 * b:.1f}/{100 * e:.1f}%" for nm, b, e in zip(t["tasks"], t["bound_ra"], t["e2e_ra"])),
    ]
    targets = res.get("targets", {})
    if targets:
        lines += ["", "| target (rtcore as it is) | measured | met |", "|---|---|---|"]
        for k, v in targets.items():
            lines.append(f"| {k} | {v['measured']} | {'yes' if v['met'] else 'NO'} |")
    proto = res.get("targets_with_prototype") or {}
    if proto:
        lines += ["", "Prototype rows (bench/fast_model.py: the real rtcore functions on a copy of the model with "
                  "batch norm folded into the convolutions and channels_last weights; max |logit difference| "
                  f"{res.get('prototype_max_logit_diff') or 0:.1e}; results verified on the original model): "
                  + "; ".join(f"{k.split(': ', 1)[1]} {v}" for k, v in proto.items()) + "."]
    return "\n".join(lines) + "\n", rows


def evaluate_targets(res: dict[str, Any]) -> dict[str, Any]:
    s = res["single"]["contenders"]
    t_rt = s["rtcore (same work)"]["median_s"]
    ra = {k: median(v["evals"]) for k, v in s.items()}
    strongest_peer = min(ra["torchattacks.PGD"], ra["foolbox LinfPGD"])
    w = res["sweep"]["contenders"]
    r_ta = s["torchattacks.PGD"]["median_s"] / t_rt
    r_fb = s["foolbox LinfPGD"]["median_s"] / t_rt
    r_sw = w["foolbox LinfPGD epsilons=[...]"]["median_s"] / w["rtcore sweep (one call)"]["median_s"]
    extra = res["tasks"]["extra_task_fraction_of_e2e_attack"]
    proto = {}
    if PROTO + "rtcore (same work) on prepared copy" in s:
        t_p = s[PROTO + "rtcore (same work) on prepared copy"]["median_s"]
        t_pw = w[PROTO + "rtcore sweep on prepared copy"]["median_s"]
        t_both = w[PROTO + "both (prepared copy, ascending, skipped)"]["median_s"]
        ra_p = median(s[PROTO + "rtcore (same work) on prepared copy"]["evals"])
        proto = {
            "with the prototype change: single eps vs torchattacks": f"{s['torchattacks.PGD']['median_s'] / t_p:.2f}x",
            "with the prototype change: single eps vs foolbox": f"{s['foolbox LinfPGD']['median_s'] / t_p:.2f}x",
            "with the prototype change: robust acc": f"{100 * ra_p:.1f}%",
            "with the prototype change: sweep vs foolbox":
                f"{w['foolbox LinfPGD epsilons=[...]']['median_s'] / t_pw:.2f}x",
            "with the prototype changes: sweep (prepared copy, ascending, skipped) vs foolbox":
                f"{w['foolbox LinfPGD epsilons=[...]']['median_s'] / t_both:.2f}x",
        }
    res["targets_with_prototype"] = proto
    return {
        "single eps: >= 1.5x torchattacks": {"measured": f"{r_ta:.2f}x", "met": r_ta >= 1.5, "value": r_ta},
        "single eps: >= 2x foolbox": {"measured": f"{r_fb:.2f}x", "met": r_fb >= 2.0, "value": r_fb},
        "robust acc <= strongest peer + 0.5 pt": {
            "measured": f"rtcore {100 * ra['rtcore (same work)']:.1f}% vs strongest peer {100 * strongest_peer:.1f}%",
            "met": ra["rtcore (same work)"] <= strongest_peer + 0.005},
        "5-eps sweep: >= 3x foolbox multi-eps": {"measured": f"{r_sw:.2f}x", "met": r_sw >= 3.0, "value": r_sw},
        "extra task < 5% of one e2e attack": {"measured": f"{100 * extra:.1f}%", "met": extra < 0.05, "value": extra},
    }


# ============================================================== main

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=512, help="test images (default 512)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per contender (default 3)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: n=8, reps=1, 3 steps, K=2 tasks, 200 train images, small matmul")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"registry name, or 'random' (default {DEFAULT_BACKBONE})")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: all logical cores)")
    p.add_argument("--train-n", type=int, default=None, help="train images for the probes (default: all)")
    p.add_argument("--tasks", type=int, default=5, help="K max for the shared-inputs section (1..5)")
    p.add_argument("--sections", default="single,sweep,feature,tasks", help="comma list")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--no-prototype", action="store_true",
                   help="skip the rows that run rtcore on a prepared copy of the model (bench/fast_model.py)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"), help="folder for results.json and results.md")
    a = p.parse_args(argv)
    if a.quick:  # a smoke test of every code path, not a measurement
        a.n, a.reps, a.steps, a.tasks = min(a.n, 8), 1, min(a.steps, 3), min(a.tasks, 2)
        a.train_n = a.train_n or 200
    return a


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    a = parse_args(argv)
    threads = a.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = pick_device(a.device)
    torch.manual_seed(0)
    log(f"setting up: backbone {a.backbone}, task {a.task}, n={a.n}, reps={a.reps}, device {device}, threads {threads}")
    g = load_backbone(a.backbone, device)
    task = rtcore.load_task(a.task)
    ntr = min(a.train_n or task.x_train.shape[0], task.x_train.shape[0])
    idx = test_indices(task.x_test.shape[0], a.n, seed=0)
    x = task.x_test[idx].to(device, torch.float32).contiguous()
    y = task.y_test[idx].to(device)
    t0 = time.perf_counter()
    f_train = batched(g, task.x_train[:ntr].to(device, torch.float32)).cpu()
    probe = fit_probe(f_train, task.y_train[:ntr], task.num_classes)
    log(f"  train features + probe fit: {time.perf_counter() - t0:.2f} s")
    model = ProbedModel(g, probe.as_module().to(device)).eval()
    assert_eval(model, "the attacked model")
    assert_eval(g, "the backbone")
    clean_acc = float((batched(model, x).argmax(1) == y).float().mean())
    log(f"  clean accuracy on the {a.n} test images: {100 * clean_acc:.1f}%")
    ctx: dict[str, Any] = {
        "g": g, "model": model, "x": x, "y": y, "device": device, "eps": a.eps, "steps": a.steps,
        "sweep_eps": SWEEP_EPS, "task": task, "idx": idx, "f_train": f_train, "train_n": ntr,
        "k_max": max(1, min(a.tasks, len(RELABELLINGS))),
        "settings_same": AttackSettings(steps=a.steps, restarts=1, feature_restarts=1, losses=("ce",), targets=0),
        "prototype": not a.no_prototype,
    }
    if ctx["prototype"]:

        ctx["fast_model"] = prepare_for_attack(model)
        ctx["fast_backbone"] = prepare_for_attack(g)
        with torch.no_grad():
            diff = float((batched(ctx["fast_model"], x) - batched(model, x)).abs().max())
        log(f"  prototype copy (batch norm folded, channels_last): max |logit difference| {diff:.2e}")
        ctx["prototype_max_logit_diff"] = diff
    res: dict[str, Any] = {
        "config": {"backbone": a.backbone, "task": a.task, "n": a.n, "reps": a.reps, "eps": a.eps, "steps": a.steps,
                   "train_n": ntr, "quick": a.quick, "threads": threads},
        "machine": machine_info(device, threads), "clean_acc": clean_acc,
        "prototype_max_logit_diff": ctx.get("prototype_max_logit_diff"),
    }
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    runners = {"single": section_single, "sweep": section_sweep, "feature": section_feature, "tasks": section_tasks}
    for name in ("single", "sweep", "feature", "tasks"):
        if name in sections:
            log(f"[{name}]")
            t0 = time.perf_counter()
            res[name] = runners[name](ctx, a.reps)
            log(f"  {name} done in {time.perf_counter() - t0:.1f} s")
    log("[flops]")
    res["flops"] = {
        "matmul_peak": matmul_peak(device, 1024 if a.quick else 4096, 3 if a.quick else 5),
        "model": model_flops(model, x), "backbone": model_flops(g, x),
        "note": "FlopCounterMode counts matmul/conv FLOPs (not elementwise, batch norm, pooling); "
                "passes are the rows each contender pushed through the model, counted in its warm-up call",
    }
    if not a.no_profile:
        log("[profile]")
        same = ctx["settings_same"]
        res["profile"] = {
            "rtcore attack (same work)": profile_call(lambda: rtcore.attack(model, x, y, a.eps, settings=same)),
            "rtcore sweep (one call)": profile_call(lambda: rtcore.attack(model, x, y, list(SWEEP_EPS), settings=same)),
            "rtcore feature_attack (same work)":
                profile_call(lambda: rtcore.feature_attack(g, x, a.eps, settings=same)),
        }
        if "torchattacks" in sys.modules or _importable("torchattacks"):
            ta = make_torchattacks(model, a.eps, a.steps, 2.5 * a.eps / a.steps)
            res["profile"]["torchattacks.PGD"] = profile_call(lambda: ta(x, y))
    if all(k in res for k in ("single", "sweep", "feature", "tasks")):
        res["targets"] = evaluate_targets(res)
        md, rows = build_tables(res)
        res["table"] = rows
        if "profile" in res:
            md += "\n" + profile_markdown(res["profile"])
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text(md)
        (out / "results.json").write_text(json.dumps(_jsonable(res), indent=1))
        print(md)
        log(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return res


def profile_markdown(prof: dict[str, Any]) -> str:
    lines = []
    for who, p in prof.items():
        lines += [(f"Profile of one call, {who} (wall {p['wall_s_under_profiler']:.3f} s under torch.profiler; "
                  f"op self time {p['op_self_total_s']:.3f} s):"), "",
                  "| op | self s | calls | share of wall |", "|---|---:|---:|---:|"]
        lines += [f"| `{o['op']}` | {o['self_s']:.3f} | {o['calls']} | {100 * o['share']:.1f}% |"
                  for o in p["top_ops"][:8]]
        if p["attacks_py_lines"]:
            lines += ["", ("Inclusive time per line of rtcore/attacks.py (line tracer, wall "
                      f"{p['line_timer_wall_s']:.3f} s):"),
                      "", "| line | code | s | share |", "|---|---|---:|---:|"]
            lines += [f"| {d['line']} | `{d['code']}` | {d['s']:.3f} | {100 * d['share']:.1f}% |"
                      for d in p["attacks_py_lines"][:12]]
        lines.append("")
    return "\n".join(lines)


def _importable(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except Exception:  # noqa: BLE001
        return False


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, (str, int, float, bool)) or o is None:
        return o
    return str(o)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
