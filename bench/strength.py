"""Strength and time: rtcore's strengths against AutoAttack and a minimum-norm attack on the same points.

Per row (a backbone, a task and n test points: bench/rows.py, or ``--backbones`` x ``--tasks``): the pipeline's
logistic probe (fitted on the task's train features, cached), the same seeded test points, and every contender
attacks all eps in one call. The points are split into chunks and the contenders take turns on each chunk (the
order rotates), so that a busy machine slows every contender alike; times are the process CPU time (one torch
thread) summed over the chunks. Robust accuracy is recomputed here from each contender's returned images
(checked to lie in the ball and [0, 1]) on the original model. Contenders:

* ``standard``, ``strong``: ``rtcore.attack(..., settings=name)``;
* ``AA custom``: AutoAttack's gradient core, APGD-CE + APGD-T (pyautoattack, ``version='custom'``,
  up to 9 targets), and ``AA standard`` (with FAB-T and Square, 5000 queries): both through
  ``rtcore.attack(settings=...autoattack=...)``, so they search on the same fused copy, attack
  eps in increasing order and skip points broken at a smaller eps, exactly as rtcore does;
* ``FMN``: the fast minimum-norm attack of adv-lib (Pintor et al., NeurIPS 2021; ``fmn``, linf,
  100 steps): one run gives each point's smallest breaking perturbation, so every eps at once.

Targets (against ``--ref``, AutoAttack's core by default), checked per row and printed with the ratios:

* strength, per row and eps: strong's robust accuracy at most one test point above the reference's; the union
  of both breaks at most 0.5 % of n more points than strong alone; standard's robust accuracy at most one
  percentage point above the reference's (rows marked timing-only are left out);
* time, per row: reference / strong >= 5 in CPU time, and >= 10 summed over the rows; standard's time at most
  strong's::

    python bench/strength.py                                          # every row of bench/rows.py
    python bench/strength.py --rows cnn-robust resnet18 --contenders strong "AA custom"
    python bench/strength.py --backbones fmnist-cnn-standard --tasks fmnist-seen --n 500

Writes ``bench/out/strength.md`` and ``bench/out/strength.json`` (``--out``). Exit status 0 when every target
is met.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "bench"):  # `python bench/strength.py` from anywhere; the modules next to this one
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import rows as rows_mod
from harness import check_ball, log
from peers import adv_lib_available, fmn_linf, peer_version

import rtcore
from rtcore.attacks import PRESETS

POINTS = 1  # strong's robust accuracy at most this many test points above the reference
STANDARD_TOLERANCE = 0.01  # standard's at most one percentage point above it
UNION = 0.005  # the union of both breaks at most 0.5 % of n more points than strong alone
ROW_RATIO, SUM_RATIO = 5.0, 10.0  # reference / strong CPU time: per row, summed over the rows
OURS = ("strong", "standard")
ALL = ("strong", "standard", "AA custom", "AA standard", "FMN")

Attack = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, list[float]], torch.Tensor]  # -> x_adv (E, N, ...)


def _rtcore(settings: rtcore.AttackSettings) -> Attack:
    return lambda model, x, y, eps: rtcore.attack(model, x, y, eps, settings=settings).x_adv


def _fmn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> torch.Tensor:
    """One FMN run; per eps the minimum-norm point where it lies within eps and breaks the point, else x."""
    adv = fmn_linf(model, x, y, steps=100)
    with torch.no_grad():
        broken = model(adv).argmax(1) != y
    norm = (adv - x).flatten(1).abs().amax(1)
    out = []
    for e in eps:
        use = broken & (norm <= e)
        out.append(torch.where(use[:, None, None, None], adv, x))
    return torch.stack(out)


def contenders(names: Sequence[str]) -> dict[str, Attack]:
    aa = PRESETS["autoattack"]
    table: dict[str, Attack] = {
        "strong": _rtcore(PRESETS["strong"]),
        "standard": _rtcore(PRESETS["standard"]),
        "AA custom": _rtcore(replace(aa, autoattack="custom")),
        "AA standard": _rtcore(replace(aa, autoattack="standard")),
        "FMN": _fmn,
    }
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown contender(s) {unknown}; choose from {list(table)}")
    if "FMN" in names and not adv_lib_available():
        log("  FMN skipped: adv-lib is not installed (pip install -r bench/requirements.txt)")
        names = [n for n in names if n != "FMN"]
    return {n: table[n] for n in names}


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0


@dataclass
class Setting:
    """One row: clean accuracy, per contender the robust flags (E, N) and the times."""

    backbone: str
    task: str
    n: int
    eps: list[float]
    clean: float
    robust: dict[str, list[list[bool]]] = field(default_factory=dict)
    times: dict[str, Timing] = field(default_factory=dict)
    timing_only: bool = False


def run_setting(row: rows_mod.Row, eps: list[float], attacks: dict[str, Attack], device: str) -> Setting:
    model, x, y = rows_mod.load(row, device)
    n = x.shape[0]
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    res = Setting(backbone=row.backbone, task=row.task, n=n, eps=eps, clean=float(clean.float().mean()),
                  timing_only=row.timing_only)
    flags = {k: torch.zeros(len(eps), n, dtype=torch.bool) for k in attacks}
    times = {k: Timing() for k in attacks}
    bounds = torch.linspace(0, n, row.chunks + 1).round().long().tolist()
    names = list(attacks)
    for c, (lo, hi) in enumerate(pairwise(bounds)):
        order = names[c % len(names):] + names[:c % len(names)]  # rotate who goes first
        for name in order:
            xs, ys = x[lo:hi], y[lo:hi]
            w, p = time.perf_counter(), time.process_time()
            xa = attacks[name](model, xs, ys, eps)
            times[name].wall += time.perf_counter() - w
            times[name].cpu += time.process_time() - p
            for i, e in enumerate(eps):
                check_ball(xa[i], xs, e, f"{name} at eps {e}")
                with torch.no_grad():
                    flags[name][i, lo:hi] = ((model(xa[i].to(xs)).argmax(1) == ys) & clean[lo:hi]).cpu()
        log(f"    {row.backbone} {row.task} chunk {c + 1}/{row.chunks}: " + ", ".join(
            f"{k} {times[k].cpu:.1f} s" for k in names))
    res.robust = {k: v.tolist() for k, v in flags.items()}
    res.times = times
    return res


@dataclass
class Check:
    """One target, where it was measured, and whether it holds."""

    what: str
    measured: str
    met: bool


def strength_table(settings: list[Setting], ref: str) -> tuple[str, list[Check]]:
    """Per row and eps: robust accuracy of every contender, the points only one side breaks, the union's extra."""
    names = list(settings[0].robust)
    ours = [k for k in names if k in OURS and ref in names]
    head = ("| backbone | task | n | eps | clean | " + " | ".join(f"{k} RA" for k in names)
            + "".join(f" | only {o} / only {ref} breaks | union - {o} (pts of n)" for o in ours) + " |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    checks = []
    for s in settings:
        for i, e in enumerate(s.eps):
            rob = {k: torch.tensor(v[i]) for k, v in s.robust.items()}
            ra = {k: float(v.float().mean()) for k, v in rob.items()}
            cells = [s.backbone, s.task + (" (timing only)" if s.timing_only else ""), str(s.n), f"{e * 255:.0f}/255",
                     f"{100 * s.clean:.1f}%"] + [f"{100 * ra[k]:.1f}%" for k in names]
            for o in ours:
                only_o, only_r = int((~rob[o] & rob[ref]).sum()), int((rob[o] & ~rob[ref]).sum())
                cells += [f"{only_o} / {only_r}", f"+{only_r} ({100 * only_r / s.n:.1f}%)"]
                if s.timing_only:
                    continue
                where = f"{s.backbone} {e * 255:.0f}/255"
                above = int(rob[o].sum()) - int(rob[ref].sum())  # robust points above the reference
                if o == "strong":
                    checks.append(Check(f"strong RA <= {ref} + {POINTS} test point", f"{where}: {above:+d} points",
                                        above <= POINTS))
                    checks.append(Check(f"union adds <= {100 * UNION:.1f}% of n to strong", f"{where}: +{only_r}",
                                        only_r <= UNION * s.n))
                else:
                    checks.append(Check(f"standard RA <= {ref} + {100 * STANDARD_TOLERANCE:.0f} pt",
                                        f"{where}: {100 * (ra[o] - ra[ref]):+.1f} pt",
                                        ra[o] <= ra[ref] + STANDARD_TOLERANCE + 1e-9))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), checks


def time_table(settings: list[Setting], ref: str) -> tuple[str, list[Check]]:
    """Per row: CPU (and wall) seconds of every contender and the ratios; the summed ratio."""
    names = list(settings[0].times)
    ratios = [(p, o) for o in OURS for p in names if o in names and p not in OURS]
    if "strong" in names and "standard" in names:
        ratios.append(("standard", "strong"))
    head = ("| backbone | task | n | " + " | ".join(f"{k} s (cpu / wall)" for k in names)
            + "".join(f" | {p} / {o} (cpu)" for p, o in ratios) + " |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    checks = []
    for s in settings:
        cells = [s.backbone, s.task, str(s.n)] + [f"{s.times[k].cpu:.1f} / {s.times[k].wall:.1f}" for k in names]
        cells += [f"{s.times[p].cpu / max(s.times[o].cpu, 1e-9):.2f}x" for p, o in ratios]
        lines.append("| " + " | ".join(cells) + " |")
        if ref in names and "strong" in names:
            r = s.times[ref].cpu / max(s.times["strong"].cpu, 1e-9)
            checks.append(Check(f"{ref} / strong CPU >= {ROW_RATIO:.0f}", f"{s.backbone}: {r:.2f}x", r >= ROW_RATIO))
        if "standard" in names and "strong" in names:
            st, sg = s.times["standard"].cpu, s.times["strong"].cpu
            checks.append(Check("standard CPU <= strong CPU", f"{s.backbone}: {st:.1f} s vs {sg:.1f} s", st <= sg))
    if ref in names and "strong" in names:
        total_ref = sum(s.times[ref].cpu for s in settings)
        total = sum(s.times["strong"].cpu for s in settings)
        r = total_ref / max(total, 1e-9)
        lines.append(f"\nSummed over the rows: {ref} {total_ref:.1f} s, strong {total:.1f} s CPU: **{r:.2f}x**.")
        checks.append(Check(f"{ref} / strong CPU summed >= {SUM_RATIO:.0f}", f"{r:.2f}x", r >= SUM_RATIO))
    return "\n".join(lines), checks


def table(settings: list[Setting], ref: str) -> tuple[str, bool]:
    """The markdown report (strength, time, targets) and whether every target is met."""
    strength, c1 = strength_table(settings, ref)
    times, c2 = time_table(settings, ref)
    checks = c1 + c2
    targets = "\n".join(["| target | measured | met |", "|---|---|---|"]
                        + [f"| {c.what} | {c.measured} | {'yes' if c.met else 'NO'} |" for c in checks])
    return f"{strength}\n\n{times}\n\n{targets}", all(c.met for c in checks)


def chosen_rows(a: argparse.Namespace) -> list[rows_mod.Row]:
    """The named rows, or every backbone x task given (with ``--n``, ``--chunks``); ``--n`` also overrides a row's n."""
    if a.backbones:
        return [rows_mod.Row(name=f"{b}/{t}", backbone=b, task=t, n=a.n or 200, chunks=a.chunks or 4)
                for b in a.backbones for t in a.tasks]
    unknown = [r for r in a.rows if r not in rows_mod.ROWS]
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; choose from {list(rows_mod.ROWS)}")
    return [replace(rows_mod.ROWS[r], **({"n": a.n} if a.n else {}), **({"chunks": a.chunks} if a.chunks else {}))
            for r in a.rows]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--rows", nargs="+", default=list(rows_mod.ROWS), help=f"rows of bench/rows.py: {list(rows_mod.ROWS)}")
    p.add_argument("--backbones", nargs="+", default=None, help="instead of --rows: these backbones x --tasks")
    p.add_argument("--tasks", nargs="+", default=["fmnist-novel"])
    p.add_argument("--n", type=int, default=None, help="test points per row (default: the row's)")
    p.add_argument("--eps", nargs="+", default=["2/255", "8/255"], help="values or k/255")
    p.add_argument("--contenders", nargs="+", default=["strong", "standard", "AA custom"], help=f"of {list(ALL)}")
    p.add_argument("--ref", default="AA custom", help="the contender 'only ... breaks' and the targets compare with")
    p.add_argument("--chunks", type=int, default=None, help="interleaved chunks per row (default: the row's)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    eps = [float(e.split("/")[0]) / float(e.split("/")[1]) if "/" in e else float(e) for e in a.eps]
    attacks = contenders(a.contenders)
    results = []
    for row in chosen_rows(a):
        log(f"[strength] {row.backbone} / {row.task}, n={row.n}, {row.chunks} chunk(s)")
        results.append(run_setting(row, eps, attacks, a.device))
    md, ok = table(results, a.ref)
    intro = (f"rtcore {', '.join(k for k in attacks if k in OURS)} against "
             f"{', '.join(k for k in attacks if k not in OURS)}; linf; per row n seeded test points, attacked in "
             f"interleaved chunks; torch {torch.__version__}, device {a.device}; pyautoattack "
             f"{peer_version('pyautoattack')}, adv-lib {peer_version('adv_lib')}. RA = robust accuracy recomputed from "
             f"the returned images; times: process CPU time (one torch thread) of one call covering all eps, summed "
             f"over the chunks; ratios > 1: rtcore faster.")
    text = f"{intro}\n\n{md}\n\nTargets: {'all met' if ok else 'NOT all met'}.\n"
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "strength.md").write_text(text)
    (out / "strength.json").write_text(json.dumps({"args": vars(a), "settings": [asdict(r) for r in results]},
                                                  indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
