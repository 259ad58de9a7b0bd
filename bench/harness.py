"""Measuring and checking for bench/attacks.py: devices and machine info, interleaved timing with
pass counts, validity checks of returned images, FLOP counting, the matmul peak, profilers."""

from __future__ import annotations

import cProfile
import hashlib
import math
import os
import platform
import pstats
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from peers import PEER_MODULES, peer_version
from torch import nn

import rtcore.attacks
import rtcore.attacks.pool

TOL = 1e-6  # float32 slack for the eps-ball check
ENGINE_PY = rtcore.attacks.pool.__file__  # the PGD loop: the file the line tracer times

Eval = float | list[float]  # what a section's check returns for one output: one number or one per eps


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def median(v: Sequence[float]) -> float:
    return float(statistics.median(v))


# ============================================================== device and machine

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


def attacks_sha256() -> str:
    """First 16 hex digits of the sha256 over the source files of the rtcore.attacks package."""
    h = hashlib.sha256()
    for p in sorted(Path(rtcore.attacks.__file__).parent.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class MachineInfo:
    cpu: str
    logical_cores: int | None
    torch_threads: int
    torch: str
    python: str
    device: str
    platform: str
    gpu: str | None
    torchattacks: str | None
    foolbox: str | None
    eagerpy: str | None
    rtcore_attacks_sha256: str
    pyautoattack: str | None
    adv_lib: str | None = None


def machine_info(device: torch.device, threads: int) -> MachineInfo:
    versions = {mod: peer_version(mod) for mod in PEER_MODULES}
    return MachineInfo(
        cpu=cpu_model(), logical_cores=os.cpu_count(), torch_threads=threads, torch=torch.__version__,
        python=platform.python_version(), device=str(device), platform=platform.platform(),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        torchattacks=versions["torchattacks"], foolbox=versions["foolbox"], eagerpy=versions["eagerpy"],
        rtcore_attacks_sha256=attacks_sha256(), pyautoattack=versions["pyautoattack"], adv_lib=versions["adv_lib"],
    )


# ============================================================== checks

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


# ============================================================== timing

@dataclass
class Passes:
    grad_rows: int
    nograd_rows: int
    calls: int


class PassCounter:
    """Counts rows pushed through a module (or any of several): with a graph (forward+backward) or without."""

    def __init__(self, module: nn.Module | Sequence[nn.Module]) -> None:
        self.grad_rows = 0
        self.nograd_rows = 0
        self.calls = 0
        mods = [module] if isinstance(module, nn.Module) else list(module)
        self._hs = [m.register_forward_pre_hook(self._hook) for m in mods]

    def _hook(self, mod: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]
        self.calls += 1
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad_rows += x.shape[0]
        else:
            self.nograd_rows += x.shape[0]

    def remove(self) -> Passes:
        for h in self._hs:
            h.remove()
        return Passes(grad_rows=self.grad_rows, nograd_rows=self.nograd_rows, calls=self.calls)


@dataclass
class Achieved:
    """Model FLOPs of one call (from its pass counts) and the rate at the median time."""

    model_flops: float
    flops_per_s: float
    peak_fraction: float
    grad_rows: int
    nograd_rows: int
    calls: int


@dataclass
class ContenderResult:
    """One contender of a section: wall times and results of the timed repetitions."""

    times: list[float] = field(default_factory=list)
    evals: list[Eval] = field(default_factory=list)
    passes: Passes | None = None  # rows through the model in the warm-up call, where counted
    cpu_util: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds of each timed repetition
    started_at: list[float] = field(default_factory=list)
    median_s: float = math.nan
    median_cpu_s: float = math.nan
    achieved: Achieved | None = None  # filled in by the report, once the FLOPs are known


def interleave(contenders: dict[str, Callable[[], Any]], reps: int, device: torch.device,
               count_on: nn.Module | Sequence[nn.Module] | None = None,
               after: Callable[[str, Any], Eval] | None = None,
               count_on_for: dict[str, nn.Module | Sequence[nn.Module]] | None = None,
               warm_up: bool = True) -> dict[str, ContenderResult]:
    """Warm up each contender once (untimed, counting passes through ``count_on``, or the
    contender's own module in ``count_on_for``; not with ``warm_up=False``), then time ``reps`` rounds
    A B C A B C ...; ``after(name, output)`` (untimed) evaluates each output."""
    out = {k: ContenderResult() for k in contenders}
    for name, fn in contenders.items() if warm_up else ():
        module = (count_on_for or {}).get(name, count_on)
        counter = PassCounter(module) if module is not None else None
        fn()
        sync(device)
        if counter is not None:
            out[name].passes = counter.remove()
    for r in range(reps):
        for name, fn in contenders.items():
            sync(device)
            c0, t0 = time.process_time(), time.perf_counter()
            res = fn()
            sync(device)
            dt = time.perf_counter() - t0
            c = out[name]
            c.times.append(dt)
            # CPU seconds of this process per wall second and thread: well below 1 when another
            # process took the cores during this repetition (on CPU; meaningless on a GPU)
            c.cpu_times.append(time.process_time() - c0)
            c.cpu_util.append(c.cpu_times[-1] / dt / torch.get_num_threads())
            c.started_at.append(time.time())
            if after is not None:
                c.evals.append(after(name, res))
            log(f"    rep {r + 1}/{reps} {name:<28s} {dt:8.3f} s  cpu util {c.cpu_util[-1]:.2f}")
    for name, c in out.items():
        c.median_s = median(c.times)
        c.median_cpu_s = median(c.cpu_times)
        ev = c.evals[-1] if c.evals else None
        shown = ", ".join(f"{e:.4f}" for e in ev) if isinstance(ev, list) else (f"{ev:.4f}" if ev is not None else "")
        passes = None if c.passes is None else vars(c.passes)
        log(f"  {name:<50s} median {c.median_s:8.3f} s  last result {shown}  passes {passes}")
    return out


# ============================================================== FLOPs

@dataclass
class ModelFlops:
    """FLOPs per image of one forward (no graph) and one forward+backward to the input."""

    fwd: float
    fwd_bwd: float


@dataclass
class MatmulPeak:
    size: int
    best_s: float
    flops_per_s: float


def model_flops(module: nn.Module, x: torch.Tensor) -> ModelFlops:
    """FLOPs per image of one forward (no graph) and one forward+backward to the input."""
    from torch.utils.flop_counter import FlopCounterMode

    xb = x[: min(16, x.shape[0])].detach().clone()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        module(xb)
    fwd = fc.get_total_flops() / xb.shape[0]
    xg = xb.clone().requires_grad_(True)
    with FlopCounterMode(display=False) as fc:
        module(xg).float().sum().backward()  # parameters are frozen: only the input gradient
    return ModelFlops(fwd=fwd, fwd_bwd=fc.get_total_flops() / xb.shape[0])


def matmul_peak(device: torch.device, size: int, reps: int) -> MatmulPeak:
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
    return MatmulPeak(size=size, best_s=best, flops_per_s=2 * size**3 / best)


def achieved(passes: Passes | None, flops: ModelFlops, seconds: float, peak: float) -> Achieved | None:
    if passes is None:
        return None
    total = passes.grad_rows * flops.fwd_bwd + passes.nograd_rows * flops.fwd
    return Achieved(model_flops=total, flops_per_s=total / seconds, peak_fraction=total / seconds / peak,
                    grad_rows=passes.grad_rows, nograd_rows=passes.nograd_rows, calls=passes.calls)


# ============================================================== profile

@dataclass
class LineTime:
    line: str  # "file.py:LINE function"
    code: str
    s: float
    hits: int
    share: float  # of the traced call's wall time


@dataclass
class OpTime:
    op: str
    self_s: float
    calls: int
    share: float


@dataclass
class FunctionTime:
    function: str
    tottime_s: float
    cumtime_s: float
    calls: int


@dataclass
class Profile:
    """One call under torch.profiler, one under the line tracer of the engine, one under cProfile."""

    wall_s_under_profiler: float
    op_self_total_s: float
    top_ops: list[OpTime]
    line_timer_wall_s: float
    engine_py_lines: list[LineTime]
    cprofile_wall_s: float
    cprofile_top: list[FunctionTime]


def line_times(fn: Callable[[], Any], filename: str) -> tuple[float, list[LineTime]]:
    """Inclusive wall time per source line of ``filename`` (time until the frame's next line
    event, callees included), with a sys.settrace line tracer; only frames of that file are traced."""
    times: dict[tuple[str, int], float] = defaultdict(float)
    hits: dict[tuple[str, int], int] = defaultdict(int)
    state: dict[FrameType, tuple[int, float]] = {}

    def local(frame: FrameType, event: str, arg: Any) -> Any:
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

    def glob(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == filename else None

    t0 = time.perf_counter()
    sys.settrace(glob)
    try:
        fn()
    finally:
        sys.settrace(None)
    wall = time.perf_counter() - t0
    src = Path(filename).read_text().splitlines()
    rows = [LineTime(line=f"{Path(filename).name}:{ln} {name}", code=src[ln - 1].strip()[:90], s=t,
                     hits=hits[(name, ln)], share=t / wall) for (name, ln), t in times.items()]
    rows.sort(key=lambda d: -d.s)
    return wall, rows


def profile_call(fn: Callable[[], Any], top: int = 12) -> Profile:
    """One call under torch.profiler (top aten ops by self time), one under a line timer of
    rtcore/attacks/pool.py (inclusive time per line), one under cProfile (Python functions)."""
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        fn()
    wall = time.perf_counter() - t0
    ka = prof.key_averages()
    ops = sorted((e for e in ka if e.self_cpu_time_total > 0), key=lambda e: -e.self_cpu_time_total)
    total_self = sum(e.self_cpu_time_total for e in ka) / 1e6
    top_ops = [OpTime(op=e.key, self_s=e.self_cpu_time_total / 1e6, calls=e.count,
                      share=e.self_cpu_time_total / 1e6 / wall) for e in ops[:top]]
    lt_wall, lines = line_times(fn, ENGINE_PY)
    pr = cProfile.Profile()
    t1 = time.perf_counter()
    pr.enable()
    fn()
    pr.disable()
    wall_cp = time.perf_counter() - t1
    st = pstats.Stats(pr)
    funcs = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        funcs.append(FunctionTime(function=f"{Path(file).name}:{line}({name})", tottime_s=tt, cumtime_s=ct, calls=nc))
    funcs.sort(key=lambda d: -d.tottime_s)
    return Profile(wall_s_under_profiler=wall, op_self_total_s=total_self, top_ops=top_ops,
                   line_timer_wall_s=lt_wall, engine_py_lines=lines[:25],
                   cprofile_wall_s=wall_cp, cprofile_top=funcs[:top])
