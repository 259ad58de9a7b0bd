"""Strength and time: rtcore's strengths against AutoAttack and a minimum-norm attack on the same points.

For each backbone and task: the pipeline's logistic probe (fitted on the task's train features,
cached), the same seeded ``n`` test points, and every contender attacks all eps in one call.
The points are split into ``--chunks`` chunks and the contenders take turns on each chunk (the
order rotates), so that a busy machine slows every contender alike; times are the sums over
the chunks. Robust accuracy is recomputed here from each contender's returned images (checked
to lie in the ball and [0, 1]) on the original model. Contenders:

* ``standard``, ``strong``: ``rtcore.attack(..., settings=name)``;
* ``AA custom``: AutoAttack's gradient core, APGD-CE + APGD-T (pyautoattack, ``version='custom'``,
  up to 9 targets), and ``AA standard`` (with FAB-T and Square, 5000 queries): both through
  ``rtcore.attack(settings=...autoattack=...)``, so they search on the same fused copy, attack
  eps in increasing order and skip points broken at a smaller eps, exactly as rtcore does;
* ``FMN``: the fast minimum-norm attack of adv-lib (Pintor et al., NeurIPS 2021; ``fmn``, linf,
  100 steps): one run gives each point's smallest breaking perturbation, so every eps at once.

Per eps the report gives robust accuracy, the points only one side breaks (against ``--ref``,
AutoAttack's core by default), whether the union of both breaks at most 1 % of n more than
rtcore alone, and the time ratios ``contender / rtcore`` (wall and process CPU)::

    python bench/strength.py                                  # the bundled CNNs, n=200, all contenders
    python bench/strength.py --backbones autoattack-resnet18-cifar10 --n 64
    python bench/strength.py --contenders strong standard "AA custom" --n 500   # the docs table

Writes ``bench/out/strength.md`` and ``bench/out/strength.json`` (``--out``).
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

from harness import check_ball, log
from peers import adv_lib_available, fmn_linf, peer_version

import rtcore
from rtcore.attacks import PRESETS

TOLERANCE = 0.005  # robust accuracy at most 0.5 points above the reference
UNION = 0.01  # the union of both breaks at most 1 % of n more points than rtcore alone
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
    """One backbone and task: clean accuracy, per contender the robust flags (E, N) and the times."""

    backbone: str
    task: str
    n: int
    eps: list[float]
    clean: float
    robust: dict[str, list[list[bool]]] = field(default_factory=dict)
    times: dict[str, Timing] = field(default_factory=dict)


def load(backbone: str, task_name: str, n: int, device: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The pipeline's cached logistic probe on the backbone, and its seeded n test points."""
    from rtcore import steps
    from rtcore.pipeline import test_indices

    g = rtcore.create_backbone(backbone, device=device)
    task = rtcore.load_task(task_name)
    probe = steps.fit_probe(g, task, rtcore.ResultCache())
    model = rtcore.ProbedModel(g, probe.as_module().to(g.device)).eval()
    idx = test_indices(task.x_test.shape[0], n, 0)
    return model, task.x_test[idx].to(g.device), task.y_test[idx].to(g.device)


def run_setting(backbone: str, task: str, n: int, eps: list[float], attacks: dict[str, Attack], chunks: int,
                device: str) -> Setting:
    model, x, y = load(backbone, task, n, device)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    res = Setting(backbone=backbone, task=task, n=n, eps=eps, clean=float(clean.float().mean()))
    flags = {k: torch.zeros(len(eps), n, dtype=torch.bool) for k in attacks}
    times = {k: Timing() for k in attacks}
    bounds = torch.linspace(0, n, chunks + 1).round().long().tolist()
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
        log(f"    {backbone} {task} chunk {c + 1}/{chunks}: " + ", ".join(
            f"{k} {times[k].cpu:.1f} s" for k in names))
    res.robust = {k: v.tolist() for k, v in flags.items()}
    res.times = times
    return res


def table(settings: list[Setting], ref: str) -> tuple[str, bool]:
    """The markdown table and whether every target is met."""
    names = list(settings[0].robust)
    ours = [k for k in names if k in OURS]
    peers = [k for k in names if k not in OURS]
    head = ("| backbone | task | eps | clean | " + " | ".join(f"{k} RA" for k in names)
            + "".join(f" | {o} vs {ref}: only {o} / only {ref} breaks | union - {o}: pts of n (% of {o}'s breaks)"
                      for o in ours if ref in names)
            + " | " + " | ".join(f"{k} s (wall/cpu)" for k in names)
            + "".join(f" | {p} / {o} (cpu)" for o in ours for p in peers) + " |")
    ncols = head.count("|") - 1
    lines = [head, "|" + "---|" * ncols]
    ok = True
    for s in settings:
        for i, e in enumerate(s.eps):
            rob = {k: torch.tensor(v[i]) for k, v in s.robust.items()}
            ra = {k: float(v.float().mean()) for k, v in rob.items()}
            cells = [s.backbone, s.task, f"{e * 255:.0f}/255", f"{100 * s.clean:.1f}%"]
            cells += [f"{100 * ra[k]:.1f}%" for k in names]
            for o in ours:
                if ref not in names:
                    continue
                only_o = int((~rob[o] & rob[ref]).sum())
                only_r = int((rob[o] & ~rob[ref]).sum())
                union_extra = only_r / s.n  # the union breaks these points more than o alone
                broken_o = int((~rob[o]).sum())
                met = ra[o] <= ra[ref] + TOLERANCE and (o != "strong" or union_extra <= UNION)
                ok &= met
                cells += [f"{only_o} / {only_r}", f"+{100 * union_extra:.1f} ({100 * only_r / max(broken_o, 1):.1f}%)"
                          + ("" if met else " NO")]
            first = i == 0
            cells += [(f"{s.times[k].wall:.1f} / {s.times[k].cpu:.1f}" if first else '"') for k in names]
            for o in ours:
                for p in peers:
                    if first:
                        r = s.times[p].cpu / max(s.times[o].cpu, 1e-9)
                        ok &= not (o == "strong" and p == ref and r < 3.0)
                        cells.append(f"{r:.2f}x")
                    else:
                        cells.append('"')
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), ok


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--backbones", nargs="+", default=["fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-standard"])
    p.add_argument("--tasks", nargs="+", default=["fmnist-seen", "fmnist-novel"])
    p.add_argument("--eps", nargs="+", default=["2/255", "8/255"], help="values or k/255")
    p.add_argument("--contenders", nargs="+", default=list(ALL))
    p.add_argument("--ref", default="AA custom", help="the contender 'only ... breaks' and the targets compare with")
    p.add_argument("--chunks", type=int, default=4, help="the points are attacked in this many interleaved chunks")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    eps = [float(e.split("/")[0]) / float(e.split("/")[1]) if "/" in e else float(e) for e in a.eps]
    attacks = contenders(a.contenders)
    results = []
    for backbone in a.backbones:
        for task in a.tasks:
            log(f"[strength] {backbone} / {task}, n={a.n}")
            results.append(run_setting(backbone, task, a.n, eps, attacks, a.chunks, a.device))
    md, ok = table(results, a.ref)
    intro = (f"rtcore {', '.join(k for k in attacks if k in OURS)} against "
             f"{', '.join(k for k in attacks if k not in OURS)}; linf; n={a.n} seeded test points per task, "
             f"{a.chunks} interleaved chunks; torch {torch.__version__}, {torch.get_num_threads()} thread(s), device "
             f"{a.device}; pyautoattack {peer_version('pyautoattack')}, adv-lib {peer_version('adv_lib')}. "
             f"RA = robust accuracy recomputed from the returned images; times: one call covering all eps, "
             f"summed over the chunks; ratios > 1: rtcore faster.")
    targets = (f"Targets: strong's RA <= {a.ref} + 0.5 pt and the union adds <= 1 % of n, at <= 1/3 of {a.ref}'s "
               f"CPU time; standard's RA <= {a.ref} + 0.5 pt: {'met' if ok else 'NOT met'}.")
    text = f"{intro}\n\n{md}\n\n{targets}\n"
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "strength.md").write_text(text)
    (out / "strength.json").write_text(json.dumps({"args": vars(a), "settings": [asdict(r) for r in results]},
                                                  indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
