"""The report of bench/attacks.py: the result of a run, the markdown tables, the targets, and
``results.json`` / ``results.md``."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from harness import ContenderResult, MachineInfo, ModelFlops, Profile, achieved, median
from sanity_section import SanityRun
from sections import (
    AA,
    DEFAULT,
    FAST,
    GPU,
    PGD_PEERS,
    UNFUSED,
    FeatureResult,
    FlopsResult,
    RowResult,
    SingleResult,
    SweepResult,
    TasksResult,
)

FAST_RATIO = 5.0  # 'fast' at the peers' steps: at least this many times faster than every PGD peer


@dataclass
class Config:
    backbone: str
    task: str
    n: int
    reps: int
    eps: float
    steps: int
    train_n: int
    quick: bool
    threads: int


@dataclass
class Target:
    measured: str
    met: bool
    value: float | None = None


@dataclass
class Row:
    """One row of the main table."""

    section: str
    contender: str
    median_s: float
    times: list[float]
    ratio: float  # contender time / rtcore time (>1: rtcore faster), wall
    median_cpu_s: float
    ratio_cpu: float  # the same with process CPU time
    metric: str
    value: str  # the result, formatted
    gflops: float  # achieved model GFLOP/s (nan where passes were not counted)
    min_cpu_util: float
    peak_pct: float  # achieved model FLOP/s as % of the matmul peak


@dataclass
class BenchResult:
    """Everything a run measured; sections that did not run are None."""

    config: Config
    machine: MachineInfo
    clean_acc: float
    fuse: dict[str, object]  # rtcore's fused copy of the model (FuseReport as a dict)
    single: SingleResult | None = None
    sweep: SweepResult | None = None
    feature: FeatureResult | None = None
    tasks: TasksResult | None = None
    flops: FlopsResult | None = None
    profile: dict[str, Profile] | None = None
    sanity: list[SanityRun] | None = None
    rows: list[RowResult] | None = None  # 'fast' against the PGD peers on more rows of bench/rows.py
    targets: dict[str, Target] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # measured, not targets: fused vs unfused, GPU
    table: list[Row] = field(default_factory=list)

    def complete(self) -> bool:
        """Whether anything was timed (the report shows the sections that ran)."""
        return self.single is not None or bool(self.rows)


def fmt_s(v: float) -> str:
    return f"{v:.3f}" if v < 100 else f"{v:.1f}"


def section_rows(section: str, ref: str, contenders: dict[str, ContenderResult], metric: str,
                 fmt: Callable[[list[Any]], str], flops: ModelFlops, peak: float) -> list[Row]:
    """The rows of one section, ratios against its rtcore reference ``ref``; records on each
    contender the FLOP rate it achieved."""
    t_ref = contenders[ref].median_s
    rows = []
    for name, c in contenders.items():
        ach = achieved(c.passes, flops, c.median_s, peak)
        c.achieved = ach
        rows.append(Row(
            section=section, contender=name, median_s=c.median_s, times=c.times,
            ratio=c.median_s / t_ref,  # peer time / rtcore time
            median_cpu_s=c.median_cpu_s, ratio_cpu=c.median_cpu_s / contenders[ref].median_cpu_s,
            metric=metric, value=fmt(c.evals),
            gflops=(ach.flops_per_s if ach else math.nan) / 1e9,
            min_cpu_util=min(c.cpu_util or [math.nan]),
            peak_pct=100 * (ach.peak_fraction if ach else math.nan),
        ))
    return rows


def _pct(evs: list[float]) -> str:
    return f"{100 * median(evs):.1f}%"


def table_rows(res: BenchResult) -> list[Row]:
    """The main table's rows, of the sections that ran."""
    assert res.flops
    peak = res.flops.matmul_peak.flops_per_s
    s, w, f = res.single, res.sweep, res.feature
    out: list[Row] = []
    if s is not None:
        out += section_rows(f"1 single eps={s.eps}", "rtcore (same work)", s.contenders, "robust acc", _pct,
                            res.flops.model, peak)
    if w is not None:
        def sweep_fmt(evs: list[list[float]]) -> str:
            return " / ".join(f"{100 * median([e[i] for e in evs]):.1f}" for i in range(len(w.eps))) + " %"

        out += section_rows("2 sweep eps=" + ",".join(str(e) for e in w.eps), "rtcore sweep (one call)",
                            w.contenders, "robust acc per eps", sweep_fmt, res.flops.model, peak)
    if f is not None:
        out += section_rows(f"3 feature eps={f.eps}", "rtcore feature_attack (same work)", f.contenders,
                            "mean Delta", lambda evs: f"{median(evs):.4f}", res.flops.backbone, peak)
    return out


def build_tables(res: BenchResult, rows: list[Row]) -> str:
    assert res.flops
    peak = res.flops.matmul_peak.flops_per_s
    m, cfg = res.machine, res.config
    lines = [
        (f"Machine: {m.cpu}, {m.logical_cores} logical cores, torch {m.torch} ({m.torch_threads} threads), "
         f"device {m.device}{' (' + m.gpu + ')' if m.gpu else ''}; torchattacks {m.torchattacks}, "
         f"foolbox {m.foolbox}, adv-lib {m.adv_lib}; pyautoattack {m.pyautoattack}."),
        (f"Model: backbone `{cfg.backbone}` + LinearProbe (C=1) on `{cfg.task}` train "
         f"features; {cfg.n} test images; medians of {cfg.reps} interleaved repetitions "
         f"after one warm-up each. Ratio = contender time / rtcore time (>1: rtcore faster), by wall and by process "
         f"CPU time; the targets use {'CPU' if _by_cpu(res) else 'wall'} time. Min CPU util = lowest "
         f"(process CPU s) / (wall s x threads) over the repetitions: well below 1 means another process took cores. "
         f"Matmul peak {peak / 1e9:.1f} GFLOP/s (float32 {res.flops.matmul_peak.size}^2)."),
        "",
        "| section | contender | median s (wall / CPU) | ratio vs rtcore (wall / CPU) | result | model GFLOP/s | % of peak | min CPU util |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r.section} | {r.contender} | {fmt_s(r.median_s)} / {fmt_s(r.median_cpu_s)} | "
                     f"{r.ratio:.2f}x / {r.ratio_cpu:.2f}x | "
                     f"{r.metric}: {r.value} | {r.gflops:.2f} | {r.peak_pct:.1f}% | "
                     f"{r.min_cpu_util:.2f} |")
    lines += _tasks_lines(res.tasks) + _rows_lines(res)
    if res.targets:
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        for k, v in res.targets.items():
            lines.append(f"| {k} | {v.measured} | {'yes' if v.met else 'NO'} |")
    return "\n".join(lines + _notes_lines(res)) + "\n"


def _tasks_lines(t: TasksResult | None) -> list[str]:
    if t is None:
        return []
    lines = [
        "",
        (f"Tasks sharing the inputs (eps {t.eps}, rtcore 'same work' settings): bound = one feature attack + per "
         f"task a probe fit and margins; end-to-end = per task a probe fit and one attack."),
        "",
        "| K tasks | bound s | K end-to-end s | e2e / bound |",
        "|---:|---:|---:|---:|",
    ]
    for tr in t.rows:
        lines.append(f"| {tr.K} | {fmt_s(tr.bound_s)} | {fmt_s(tr.e2e_s)} | {tr.ratio_e2e_over_bound:.2f}x |")
    lines += [
        "",
        (f"Extra task on inputs already attacked: probe fit {t.median_probe_fit_s:.3f} s + margins "
         f"{t.median_margins_s * 1e3:.1f} ms = {100 * t.extra_task_fraction_of_e2e_attack:.1f}% of one "
         f"end-to-end attack ({t.median_e2e_attack_s:.3f} s); without the probe fit (which the end-to-end path "
         f"needs too): {100 * t.extra_task_fraction_excl_fit:.2f}%. Per task, (fit + margins) / (fit + attack): "
         + ", ".join(f"{nm} {100 * v:.1f}%" for nm, v in zip(t.tasks, t.extra_vs_task)) + "."),
        "Per task, bound RA vs end-to-end RA: " + ", ".join(
            f"{nm} {100 * b:.1f}/{100 * e:.1f}%" for nm, b, e in zip(t.tasks, t.bound_ra, t.e2e_ra)),
    ]
    return lines


def _rows_lines(res: BenchResult) -> list[str]:
    """'fast' against the PGD peers on the further rows: CPU medians and peer / fast ratios."""
    if not res.rows:
        return []
    lines = ["", (f"'fast' at the peers' steps against the PGD peers on more models (bench/rows.py; medians of "
                  f"{len(next(iter(res.rows[0].contenders.values())).cpu_times)} interleaved repetition(s), each "
                  f"contender warmed up on two points):"), "",
             "| row | backbone | n | eps | contender | CPU s (median) | contender / fast (CPU) | robust acc |",
             "|---|---|---:|---|---|---:|---:|---:|"]
    for r in res.rows:
        t_fast = r.contenders[FAST].median_cpu_s
        for name, c in r.contenders.items():
            lines.append(f"| {r.row} | {r.backbone} | {r.n} | {r.eps * 255:.0f}/255 | {name} | {fmt_s(c.median_cpu_s)} | "
                         f"{c.median_cpu_s / t_fast:.2f}x | {_pct(c.evals)} |")
    return lines


def _notes_lines(res: BenchResult) -> list[str]:
    lines: list[str] = []
    if res.notes:
        fz = res.fuse
        lines += ["", (f"rtcore's fused copy (rtcore.models.fused: {fz.get('folded')} batch norms folded into the "
                       f"convolutions, channels_last; max |logit difference| {float(fz.get('max_abs_diff', 0)):.1e} on "
                       f"a probe batch; every reported number recomputed on the original model): "
                       + "; ".join(f"{k} {v}" for k, v in res.notes.items()) + ".")]
    if res.sanity:
        names = [str(f["name"]) for f in res.sanity[0].flags]
        lines += ["", "Sanity flags (rtcore.sanity, subset checks on 128 points) of rtcore's runs on this model:", "",
                  "| run | eps | flags | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
        for r in res.sanity:
            cells = [f"{f['status']} ({_flag_values(f)})" for f in r.flags]
            lines.append(f"| {r.run} | {', '.join(f'{e:g}' for e in r.eps)} | {r.summary} | " + " | ".join(cells) + " |")
    return lines


def _flag_values(f: dict[str, object]) -> str:
    keys = {"monotone_large_eps": ("robust_acc_at_large_eps",), "noise_weaker": ("gap",),
            "more_steps": ("drop",), "gradient_free": ("drop",)}.get(str(f["name"]), ())
    vals = f.get("values") or {}
    return ", ".join(f"{k} {float(vals[k]):.3f}" for k in keys if k in vals)  # type: ignore[index,operator]


def fast_target(label: str, contenders: dict[str, ContenderResult],
                cost: Callable[[ContenderResult], float]) -> dict[str, Target]:
    """'fast' at the peers' steps: at least FAST_RATIO x every PGD peer's time, and at least as strong as the
    strongest of them (robust accuracy no higher)."""
    peers = [p for p in PGD_PEERS if p in contenders]
    ra = {k: median(contenders[k].evals) for k in [FAST, *peers]}
    ratio = {p: cost(contenders[p]) / cost(contenders[FAST]) for p in peers}
    worst = min(ratio.values())
    return {f"{label}: 'fast' >= {FAST_RATIO:.0f}x every PGD peer, as strong": Target(
        measured=", ".join(f"{r:.2f}x {p}" for p, r in ratio.items()) + f"; robust acc {100 * ra[FAST]:.1f}% vs "
                 + " / ".join(f"{100 * ra[p]:.1f}%" for p in peers),
        met=worst >= FAST_RATIO and ra[FAST] <= min(ra[p] for p in peers), value=worst)}


def evaluate_targets(res: BenchResult) -> tuple[dict[str, Target], dict[str, str]]:
    """The targets for rtcore (of the sections that ran), and notes: the fused engine against rtcore unfused,
    the GPU rows."""
    cost = _cost(res)
    targets: dict[str, Target] = {}
    notes: dict[str, str] = {}
    for r in res.rows or []:
        targets.update(fast_target(f"{r.row}, eps {r.eps * 255:.0f}/255", r.contenders, cost))
    if not (res.single and res.sweep and res.tasks and res.feature):
        if res.single:
            targets.update(fast_target(f"single eps {res.single.eps}", res.single.contenders, cost))
        return targets, notes
    s, w, f = res.single.contenders, res.sweep.contenders, res.feature.contenders
    t_rt = cost(s["rtcore (same work)"])
    ra = {k: median(v.evals) for k, v in s.items()}
    peers = [k for k in ("torchattacks.PGD", "foolbox LinfPGD", AA) if k in ra]
    strongest_peer = min(ra[k] for k in peers)
    r_ta = cost(s["torchattacks.PGD"]) / t_rt
    r_fb = cost(s["foolbox LinfPGD"]) / t_rt
    r_sw = cost(w["foolbox LinfPGD epsilons=[...]"]) / cost(w["rtcore sweep (one call)"])
    extra = res.tasks.extra_task_fraction_of_e2e_attack
    for label, section, ref in (("single eps", s, "rtcore (same work)"), ("sweep", w, "rtcore sweep (one call)"),
                                ("feature attack", f, "rtcore feature_attack (same work)")):
        if UNFUSED + ref in section:
            notes[f"{label}: unfused / fused time"] = f"{cost(section[UNFUSED + ref]) / cost(section[ref]):.2f}x"
        if ref + GPU in section:
            notes[f"{label}: CPU / GPU time"] = f"{section[ref].median_s / section[ref + GPU].median_s:.2f}x"
    if AA in s:
        notes["single eps: AutoAttack APGD-CE / rtcore time"] = f"{cost(s[AA]) / t_rt:.2f}x"
    targets.update({
        "single eps, same work: >= 3x torchattacks": Target(measured=f"{r_ta:.2f}x", met=r_ta >= 3.0, value=r_ta),
        "single eps, same work: >= 3x foolbox": Target(measured=f"{r_fb:.2f}x", met=r_fb >= 3.0, value=r_fb),
        "robust acc <= strongest peer + 0.5 pt": Target(
            measured=f"rtcore {100 * ra['rtcore (same work)']:.1f}% vs strongest peer {100 * strongest_peer:.1f}% "
                     f"({', '.join(peers)})",
            met=ra["rtcore (same work)"] <= strongest_peer + 0.005),
        **_default_target(s, ra, cost),
        **fast_target(f"single eps {res.single.eps}", s, cost),
        "5-eps sweep: >= 3x foolbox multi-eps": Target(measured=f"{r_sw:.2f}x", met=r_sw >= 3.0, value=r_sw),
        "extra task < 5% of one e2e attack": Target(measured=f"{100 * extra:.1f}%", met=extra < 0.05, value=extra),
    })
    return targets, notes


def _by_cpu(res: BenchResult) -> bool:
    """Ratios by process CPU time on a CPU (robust to other processes on a shared machine), by wall
    time on an accelerator (where the host's CPU time says little)."""
    return res.machine.device == "cpu"


def _cost(res: BenchResult) -> Callable[[ContenderResult], float]:
    return (lambda c: c.median_cpu_s) if _by_cpu(res) else (lambda c: c.median_s)


def _default_target(s: dict[str, ContenderResult], ra: dict[str, float],
                    cost: Callable[[ContenderResult], float]) -> dict[str, Target]:
    """What a call without settings gets (rtcore's default strength) against the same-work peers."""
    if DEFAULT not in s:
        return {}
    r_ta = cost(s["torchattacks.PGD"]) / cost(s[DEFAULT])
    r_fb = cost(s["foolbox LinfPGD"]) / cost(s[DEFAULT])
    weakest_gap = ra[DEFAULT] - min(ra["torchattacks.PGD"], ra["foolbox LinfPGD"])
    return {"single eps, rtcore default: >= 3x both at equal or better strength": Target(
        measured=f"{r_ta:.2f}x torchattacks, {r_fb:.2f}x foolbox; robust acc {100 * ra[DEFAULT]:.1f}% vs "
                 f"{100 * ra['torchattacks.PGD']:.1f}% / {100 * ra['foolbox LinfPGD']:.1f}%",
        met=min(r_ta, r_fb) >= 3.0 and weakest_gap <= 0, value=min(r_ta, r_fb))}


def profile_markdown(prof: dict[str, Profile]) -> str:
    lines = []
    for who, p in prof.items():
        lines += [(f"Profile of one call, {who} (wall {p.wall_s_under_profiler:.3f} s under torch.profiler; "
                   f"op self time {p.op_self_total_s:.3f} s):"), "",
                  "| op | self s | calls | share of wall |", "|---|---:|---:|---:|"]
        lines += [f"| `{o.op}` | {o.self_s:.3f} | {o.calls} | {100 * o.share:.1f}% |" for o in p.top_ops[:8]]
        if p.engine_py_lines:
            lines += ["", ("Inclusive time per line of rtcore/attacks/pool.py, the PGD loop (line tracer, wall "
                           f"{p.line_timer_wall_s:.3f} s):"),
                      "", "| line | code | s | share |", "|---|---|---:|---:|"]
            lines += [f"| {d.line} | `{d.code}` | {d.s:.3f} | {100 * d.share:.1f}% |" for d in p.engine_py_lines[:12]]
        lines.append("")
    return "\n".join(lines)


def _jsonable(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return _jsonable(dataclasses.asdict(o))
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


def write_report(res: BenchResult, out: Path) -> str:
    """Evaluate the targets, build the tables (filled into ``res``), write results.md and
    results.json under ``out``; return the markdown."""
    res.targets, res.notes = evaluate_targets(res)
    res.table = table_rows(res)
    md = build_tables(res, res.table)
    if res.profile is not None:
        md += "\n" + profile_markdown(res.profile)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps(_jsonable(res), indent=1))
    return md
