"""The sections of bench/attacks.py: each takes the shared :class:`Context` (one model, one input set)
and returns its typed result. See the module docstring of bench/attacks.py and bench/README.md."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from harness import (
    ContenderResult,
    MatmulPeak,
    ModelFlops,
    Profile,
    batched,
    interleave,
    log,
    matmul_peak,
    mean_delta,
    median,
    model_flops,
    profile_call,
    robust_acc,
    sync,
)
from peers import (
    adv_lib_available,
    adv_lib_pgd,
    autoattack_apgd_ce,
    autoattack_available,
    foolbox_feature_attack,
    foolbox_linf_pgd,
    foolbox_model,
    make_torchattacks,
    torchattacks_available,
)
from torch import nn

import rows
import rtcore
from rtcore import AttackSettings, LinearProbe, ProbedModel
from rtcore.models.fused import FuseReport, fused_copy
from rtcore.pipeline import test_indices

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
UNFUSED = "rtcore, unfused: "  # rows with AttackSettings(fuse=False): the engine without its fused copy
AA = "AutoAttack APGD-CE"  # pyautoattack's APGD-CE with the same number of iterations
ADV_LIB = "adv-lib PGD"  # adv-lib's pgd_linf with the peers' constant step
PGD_PEERS = ("torchattacks.PGD", "foolbox LinfPGD", ADV_LIB)  # the PGD peers 'fast' is held against
FAST = "rtcore ('fast', same steps)"  # rtcore.attack(..., settings="fast", steps=steps): the fast strength, peer steps
GPU = " on GPU (cuda)"  # a contender run on CUDA while the main rows run on the CPU
DEFAULT = "rtcore default ('standard')"  # rtcore.attack(model, x, y, eps) with no settings


# ============================================================== context

@dataclass
class Context:
    """What every section shares: the attacked model, its backbone, the inputs and the settings."""

    model: ProbedModel  # backbone + LinearProbe, eval mode
    backbone: rtcore.Backbone
    probe: LinearProbe  # fitted on the backbone features of the task's train images
    x: torch.Tensor  # the test images, on device
    y: torch.Tensor
    device: torch.device
    eps: float
    steps: int
    reps: int  # timed repetitions per contender
    quick: bool
    task: rtcore.Task  # the probe's task; relabelled for the tasks section
    idx: torch.Tensor  # indices of x in task.x_test
    f_train: torch.Tensor  # backbone features of the first train_n train images (CPU)
    train_n: int
    k_max: int  # tasks section: K = 1..k_max
    clean_acc: float
    same: AttackSettings  # rtcore's "same work" settings: steps, 1 restart, CE only
    fuse_report: FuseReport  # what rtcore's fused copy of the model is (checked against the original)
    sweep_eps: tuple[float, ...] = SWEEP_EPS
    unfused: bool = True  # also time rtcore with fuse=False
    gpu_model: nn.Module | None = None  # a CUDA copy of the model when CUDA is present and device is the CPU


def same_work(steps: int) -> AttackSettings:
    return AttackSettings(steps=steps, restarts=1, feature_restarts=1, losses=("ce",), targets=0)


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
    return LinearProbe(C=1.0, space="standardised", num_classes=num_classes).fit(f_train, y_train)


def make_context(backbone: str, task_name: str, n: int, device: torch.device, *, eps: float, steps: int, reps: int,
                 quick: bool, train_n: int | None, tasks: int, unfused: bool = True) -> Context:
    """Load the backbone and task, fit the probe on the train features, pick the n test images."""
    torch.manual_seed(0)
    g = load_backbone(backbone, device)
    task = rtcore.create_task(task_name)
    ntr = min(train_n or task.x_train.shape[0], task.x_train.shape[0])
    idx = test_indices(task.x_test.shape[0], n, seed=0)
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
    log(f"  clean accuracy on the {n} test images: {100 * clean_acc:.1f}%")
    _, rep = fused_copy(model, x)
    log(f"  rtcore's fused copy: {rep.reason}, {rep.folded} batch norms folded, max |logit difference| "
        f"{rep.max_abs_diff:.2e}")
    ctx = Context(model=model, backbone=g, probe=probe, x=x, y=y, device=device, eps=eps, steps=steps, reps=reps,
                  quick=quick, task=task, idx=idx, f_train=f_train, train_n=ntr,
                  k_max=max(1, min(tasks, len(RELABELLINGS))), clean_acc=clean_acc, same=same_work(steps),
                  fuse_report=rep, unfused=unfused)
    if torch.cuda.is_available() and device.type == "cpu":
        ctx.gpu_model = copy.deepcopy(model).to("cuda").eval()
    return ctx


def on_gpu(model: nn.Module, fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
           x: torch.Tensor, y: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A contender that runs ``fn`` on CUDA copies (inputs moved once) and waits for the device."""
    xg, yg = x.to("cuda"), y.to("cuda")

    def run() -> torch.Tensor:
        out = fn(model, xg, yg)
        torch.cuda.synchronize()
        return out

    return run


# ============================================================== 1-3: contenders on one model

@dataclass
class _OneEpsResult:
    """A section timed at one eps: the steps, the settings of rtcore's same-work contender, the contenders."""

    eps: float
    steps: int
    rtcore_settings: dict[str, object]
    contenders: dict[str, ContenderResult]


@dataclass
class SingleResult(_OneEpsResult):
    peer_alpha: float  # the PGD peers' constant step, 2.5 eps / steps


@dataclass
class SweepResult:
    eps: list[float]
    steps: int
    peer_alpha: str
    contenders: dict[str, ContenderResult]


@dataclass
class FeatureResult(_OneEpsResult):
    peer_rel_stepsize: float  # the peers' step relative to eps, 2.5 / steps


def pgd_contenders(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                   device: torch.device) -> dict[str, Callable[[], torch.Tensor]]:
    """The 'fast' strength at the peers' number of steps, and the PGD peers (constant step 2.5 eps / steps,
    random start, 1 restart; adv-lib where installed) and AutoAttack's APGD-CE with as many iterations."""
    alpha = 2.5 * eps / steps
    ta = make_torchattacks(model, eps, steps, alpha)
    fmodel = foolbox_model(model, device)
    fpgd = foolbox_linf_pgd(steps, abs_stepsize=alpha)
    out: dict[str, Callable[[], torch.Tensor]] = {
        FAST: lambda: rtcore.attack(model, x, y, eps, settings="fast", steps=steps).x_adv,
        "torchattacks.PGD": lambda: ta(x, y),
        "foolbox LinfPGD": lambda: fpgd(fmodel, x, y, epsilons=eps)[1],
    }
    if adv_lib_available():
        pgd = adv_lib_pgd(model, eps, steps, alpha)
        out[ADV_LIB] = lambda: pgd(x, y)
    if autoattack_available():
        apgd = autoattack_apgd_ce(model, eps, steps, device)
        out[AA] = lambda: apgd(x, y)
    return out


def section_single(ctx: Context) -> SingleResult:
    model, x, y, eps, steps, same = ctx.model, ctx.x, ctx.y, ctx.eps, ctx.steps, ctx.same
    alpha = 2.5 * eps / steps
    contenders: dict[str, Callable[[], torch.Tensor]] = {
        "rtcore (same work)": lambda: rtcore.attack(model, x, y, eps, settings=same).x_adv,
        **pgd_contenders(model, x, y, eps, steps, ctx.device),
    }
    contenders[DEFAULT] = lambda: rtcore.attack(model, x, y, eps).x_adv  # what a call without settings gets
    contenders["rtcore ('fast' preset)"] = lambda: rtcore.attack(model, x, y, eps, settings="fast").x_adv
    if ctx.unfused:
        contenders[UNFUSED + "rtcore (same work)"] = \
            lambda: rtcore.attack(model, x, y, eps, settings=replace(same, fuse=False)).x_adv
    counts: dict[str, nn.Module] = {}
    if ctx.gpu_model is not None:
        name = "rtcore (same work)" + GPU
        contenders[name] = on_gpu(ctx.gpu_model, lambda m, xg, yg: rtcore.attack(m, xg, yg, eps, settings=same).x_adv,
                                  x, y)
        counts[name] = ctx.gpu_model.head
    # every forward, on the model or on rtcore's fused copy of it, goes through the shared linear head
    res = interleave(contenders, ctx.reps, ctx.device, count_on=model.head, count_on_for=counts,
                     after=lambda name, xa: robust_acc(model, x, y, xa, eps, name))
    return SingleResult(eps=eps, steps=steps, peer_alpha=alpha, rtcore_settings=same.key(), contenders=res)


@dataclass
class RowResult:
    """The 'fast' strength against the PGD peers on one more row of bench/rows.py (single eps)."""

    row: str
    backbone: str
    task: str
    n: int
    eps: float
    steps: int
    clean_acc: float
    contenders: dict[str, ContenderResult]


def section_rows(names: list[str], device: torch.device, *, eps: float, steps: int, reps: int,
                 n: int | None = None) -> list[RowResult]:
    """Per row: 'fast' at the peers' steps against the PGD peers and APGD-CE, interleaved; each contender warmed
    up on two points only (a 224-pixel model makes a full warm-up call as long as a timed one)."""
    out = []
    for name in names:
        row = rows.ROWS[name]
        log(f"[row {name}] {row.backbone} / {row.task}")
        model, x, y = rows.load(row, str(device), n)
        with torch.no_grad():
            clean = float((batched(model, x).argmax(1) == y).float().mean())
        for warm in pgd_contenders(model, x[:2], y[:2], eps, steps, device).values():
            warm()
        res = interleave(pgd_contenders(model, x, y, eps, steps, device), reps, device, warm_up=False,
                         after=lambda nm, xa: robust_acc(model, x, y, xa, eps, nm))
        out.append(RowResult(row=name, backbone=row.backbone, task=row.task, n=x.shape[0], eps=eps, steps=steps,
                             clean_acc=clean, contenders=res))
    return out


def section_sweep(ctx: Context) -> SweepResult:
    model, x, y, steps, same = ctx.model, ctx.x, ctx.y, ctx.steps, ctx.same
    eps_list = list(ctx.sweep_eps)
    fmodel = foolbox_model(model, ctx.device)
    fpgd = foolbox_linf_pgd(steps, rel_stepsize=2.5 / steps)
    tas = [make_torchattacks(model, e, steps, 2.5 * e / steps) for e in eps_list]

    def sweep_on(m: nn.Module, xx: torch.Tensor, yy: torch.Tensor, cfg: AttackSettings = same) -> list[torch.Tensor]:
        xa = rtcore.attack(m, xx, yy, eps_list, settings=cfg).x_adv
        return [xa[i] for i in range(len(eps_list))]

    contenders: dict[str, Callable[[], list[torch.Tensor]]] = {
        "rtcore sweep (one call)": lambda: sweep_on(model, x, y),
        "torchattacks.PGD loop": lambda: [a(x, y) for a in tas],
        "foolbox LinfPGD epsilons=[...]": lambda: fpgd(fmodel, x, y, epsilons=eps_list)[1],
    }
    if autoattack_available():
        apgds = [autoattack_apgd_ce(model, e, steps, ctx.device) for e in eps_list]
        contenders[AA + " loop"] = lambda: [a(x, y) for a in apgds]
    if ctx.unfused:
        contenders[UNFUSED + "rtcore sweep (one call)"] = lambda: sweep_on(model, x, y, replace(same, fuse=False))
    counts: dict[str, nn.Module] = {}
    if ctx.gpu_model is not None:
        name = "rtcore sweep (one call)" + GPU
        contenders[name] = on_gpu(ctx.gpu_model, sweep_on, x, y)  # type: ignore[arg-type]
        counts[name] = ctx.gpu_model.head
    res = interleave(contenders, ctx.reps, ctx.device, count_on=model.head, count_on_for=counts,
                     after=lambda name, xs: [robust_acc(model, x, y, xa, e, name) for xa, e in zip(xs, eps_list)])
    return SweepResult(eps=eps_list, steps=steps, peer_alpha="2.5*eps/steps", contenders=res)


def section_feature(ctx: Context) -> FeatureResult:
    g, x, eps, steps, same = ctx.backbone, ctx.x, ctx.eps, ctx.steps, ctx.same
    f0 = batched(g, x)
    fattack, never = foolbox_feature_attack(steps, 2.5 / steps)
    fmodel = foolbox_model(g, ctx.device)
    crit = never(f0)
    contenders: dict[str, Callable[[], torch.Tensor]] = {
        "rtcore feature_attack (same work)": lambda: rtcore.feature_attack(g, x, eps, settings=same).x_adv,
        "foolbox LinfPGD + feature loss": lambda: fattack(fmodel, x, crit, epsilons=eps)[1],
        "rtcore feature_attack ('standard')": lambda: rtcore.feature_attack(g, x, eps, settings="standard").x_adv,
    }
    if steps > 5:  # rtcore's first start costs 5 power iterations: the same number of gradient passes as foolbox
        eq = same_work(steps - 5)
        contenders[f"rtcore feature_attack ({steps} passes: 5 power + {steps - 5} steps)"] = \
            lambda: rtcore.feature_attack(g, x, eps, settings=eq).x_adv
    if ctx.unfused:
        contenders[UNFUSED + "rtcore feature_attack (same work)"] = \
            lambda: rtcore.feature_attack(g, x, eps, settings=replace(same, fuse=False)).x_adv
    twin = fused_copy(g, x)[0]  # the cached copy rtcore's iterations run on: count its passes and g's
    counts = {k: [twin, g] for k in contenders if k.startswith("rtcore feature_attack")}
    res = interleave(contenders, ctx.reps, ctx.device, count_on=g, count_on_for=counts,  # type: ignore[arg-type]
                     after=lambda name, xa: mean_delta(g, x, f0, xa, eps, name))
    return FeatureResult(eps=eps, steps=steps, peer_rel_stepsize=2.5 / steps, rtcore_settings=same.key(),
                         contenders=res)


# ============================================================== 4: tasks sharing the inputs

@dataclass
class TaskRep:
    """One repetition: seconds of the feature attack, and per task of the fit, margins, attack."""

    feature_attack: float = 0.0
    fit: list[float] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    bound_ra: list[float] = field(default_factory=list)
    e2e_ra: list[float] = field(default_factory=list)


@dataclass
class TaskRow:
    K: int
    bound_s: float
    e2e_s: float
    ratio_e2e_over_bound: float


@dataclass
class TasksResult:
    eps: float
    settings: dict[str, object]
    tasks: list[str]
    train_n: int
    rows: list[TaskRow]
    reps: list[TaskRep]
    median_feature_attack_s: float
    median_probe_fit_s: float
    median_margins_s: float
    median_e2e_attack_s: float
    extra_task_bound_s: float
    extra_task_fraction_of_e2e_attack: float
    extra_task_fraction_excl_fit: float
    bound_ra: list[float]
    e2e_ra: list[float]
    extra_vs_task: list[float]


def section_tasks(ctx: Context) -> TasksResult:
    """Bound for K tasks on shared inputs (one feature attack + per task: probe fit, margins)
    vs per task: probe fit + one end-to-end attack. Timed per component in every rep."""
    g, x, dev, eps, same, f_train = ctx.backbone, ctx.x, ctx.device, ctx.eps, ctx.same, ctx.f_train
    tasks = [rtcore.relabel_task(ctx.task, m, names, name=nm) for nm, m, names in RELABELLINGS[: ctx.k_max]]
    ntr = ctx.train_n
    ys = [t.y_test[ctx.idx].to(dev) for t in tasks]

    def one_rep() -> TaskRep:
        rec = TaskRep()
        t0 = time.perf_counter()
        fa = rtcore.feature_attack(g, x, eps, settings=same)
        sync(dev)
        rec.feature_attack = time.perf_counter() - t0
        f0, delta = fa.clean_features.to(dev), fa.delta.to(dev)
        for t, y in zip(tasks, ys):
            t0 = time.perf_counter()
            probe = fit_probe(f_train, t.y_train[:ntr], t.num_classes)
            rec.fit.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ok = rtcore.bound_criterion(f0, y, probe.weight_.to(dev), probe.bias_.to(dev), delta)
            ra_bound = float(ok.double().mean())
            sync(dev)
            rec.margins.append(time.perf_counter() - t0)
            model = ProbedModel(g, probe.as_module().to(dev)).eval()
            t0 = time.perf_counter()
            res = rtcore.attack(model, x, y, eps, settings=same)
            sync(dev)
            rec.e2e.append(time.perf_counter() - t0)
            rec.bound_ra.append(ra_bound)
            rec.e2e_ra.append(robust_acc(model, x, y, res.x_adv, eps, f"rtcore e2e {t.name}"))
        return rec

    one_rep()  # warm-up
    recs: list[TaskRep] = []
    for r in range(ctx.reps):
        recs.append(one_rep())
        log(f"    rep {r + 1}/{ctx.reps} feature attack {recs[-1].feature_attack:.3f} s, "
            f"fit {sum(recs[-1].fit):.3f} s, margins {sum(recs[-1].margins):.4f} s, "
            f"e2e {sum(recs[-1].e2e):.3f} s")
    rows = []
    for k in range(1, len(tasks) + 1):
        bound = [r.feature_attack + sum(r.fit[:k]) + sum(r.margins[:k]) for r in recs]
        e2e = [sum(r.fit[:k]) + sum(r.e2e[:k]) for r in recs]
        rows.append(TaskRow(K=k, bound_s=median(bound), e2e_s=median(e2e),
                            ratio_e2e_over_bound=median(e2e) / median(bound)))
    fit_m = median([s for r in recs for s in r.fit])
    mar_m = median([s for r in recs for s in r.margins])
    e2e_m = median([s for r in recs for s in r.e2e])
    return TasksResult(
        eps=eps, settings=same.key(), tasks=[t.name for t in tasks], train_n=ntr, rows=rows, reps=recs,
        median_feature_attack_s=median([r.feature_attack for r in recs]), median_probe_fit_s=fit_m,
        median_margins_s=mar_m, median_e2e_attack_s=e2e_m,
        extra_task_bound_s=fit_m + mar_m,
        extra_task_fraction_of_e2e_attack=(fit_m + mar_m) / e2e_m,
        extra_task_fraction_excl_fit=mar_m / e2e_m,
        bound_ra=recs[-1].bound_ra, e2e_ra=recs[-1].e2e_ra,
        extra_vs_task=[median([(r.fit[i] + r.margins[i]) / (r.fit[i] + r.e2e[i]) for r in recs])
                       for i in range(len(tasks))],
    )


# ============================================================== 5: FLOPs, and the profiles

FLOPS_NOTE = ("FlopCounterMode counts matmul/conv FLOPs (not elementwise, batch norm, pooling); "
              "passes are the rows each contender pushed through the model, counted in its warm-up call")


@dataclass
class FlopsResult:
    matmul_peak: MatmulPeak
    model: ModelFlops  # per image, of the attacked model
    backbone: ModelFlops  # per image, of the backbone (the feature attack's model)
    note: str = FLOPS_NOTE


def section_flops(ctx: Context) -> FlopsResult:
    return FlopsResult(matmul_peak=matmul_peak(ctx.device, 1024 if ctx.quick else 4096, 3 if ctx.quick else 5),
                       model=model_flops(ctx.model, ctx.x), backbone=model_flops(ctx.backbone, ctx.x))


def section_profile(ctx: Context) -> dict[str, Profile]:
    """One call each of rtcore's attack, sweep and feature attack (and torchattacks.PGD) under the profilers."""
    model, g, x, y, eps, same = ctx.model, ctx.backbone, ctx.x, ctx.y, ctx.eps, ctx.same
    prof = {
        "rtcore attack (same work)": profile_call(lambda: rtcore.attack(model, x, y, eps, settings=same)),
        "rtcore sweep (one call)": profile_call(lambda: rtcore.attack(model, x, y, list(ctx.sweep_eps), settings=same)),
        "rtcore feature_attack (same work)": profile_call(lambda: rtcore.feature_attack(g, x, eps, settings=same)),
    }
    if torchattacks_available():
        ta = make_torchattacks(model, eps, ctx.steps, 2.5 * eps / ctx.steps)
        prof["torchattacks.PGD"] = profile_call(lambda: ta(x, y))
    return prof
