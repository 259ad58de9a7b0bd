"""The "Transfer methods" page's job and tables: linear probing vs fine-tuning on one backbone and task.

:func:`rtcore.runs.compare_methods` adapts the backbone by each method and evaluates it across the eps grid.
It runs as a dashboard job like any evaluation (:class:`app.jobs.BaseJob`: one step per method under the
device lock, so other sessions' steps interleave; in the process-wide registry, shared by every session),
and the time left is measured seconds per method. The page draws what this module returns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from rtcore import Backbone, ResultCache, list_tasks, load_task
from rtcore.config import default_cache_dir, eps_grid, eps_key
from rtcore.models.ref import BackboneRef
from rtcore.runs import MethodComparison, Verdict, compare_methods, ordering_verdict
from rtcore.transfer import METHOD_DESCRIPTIONS, TRANSFER_METHODS, FineTuneRecipe, method_label, network_blocks

from .figures import at_eps
from .jobs import BaseJob
from .state import MISSING, eps_label


@dataclass(frozen=True)
class TransferRequest:
    """What one comparison computes; equal requests share one job."""

    backbone: BackboneRef
    task: str
    methods: tuple[str, ...]
    k: int
    eps: tuple[float, ...]
    norm: str
    n: int
    attack: str
    epochs: int
    cache_dir: str


def make_request(g: Backbone, ref: BackboneRef, task: str, methods: Sequence[str], k: int, current_eps: float,
                 norm: str, n: int, attack: str, epochs: int) -> TransferRequest:
    """A request over the library's eps grid of ``norm`` plus the cursor's eps (ValueError naming a bad method,
    k or epochs)."""
    unknown = [m for m in methods if m not in TRANSFER_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods {list(methods)} must be a non-empty selection of {list(TRANSFER_METHODS)}")
    n_blocks = len(network_blocks(g.net))
    if "ft-last-k" in methods and not 1 <= k <= n_blocks:
        raise ValueError(f"k={k} is out of range: backbone {g.name!r} has {n_blocks} blocks; choose 1..{n_blocks}")
    FineTuneRecipe(epochs=epochs)  # checks the number of epochs
    eps = tuple(sorted({*eps_grid(norm), eps_key(current_eps)}))
    return TransferRequest(ref, task, tuple(m for m in TRANSFER_METHODS if m in methods),
                           int(k) if "ft-last-k" in methods else 1, eps, norm, int(n), attack, int(epochs),
                           str(default_cache_dir()))


class TransferJob(BaseJob):
    """The comparison of a :class:`TransferRequest`, one step per method; ``result`` once done."""

    def __init__(self, request: TransferRequest, g: Backbone, start_delay: float = 0.0) -> None:
        self.request, self._g = request, g
        self._parts: list[MethodComparison] = []
        self._seconds: list[float] = []
        self.result: MethodComparison | None = None
        super().__init__([(f"{request.task} · {method_label(m, request.k)}", 1.0) for m in request.methods],
                         start_delay)

    def run_step(self, i: int, report: Callable[[float, str], None]) -> bool:
        r = self.request
        t0 = time.perf_counter()
        cache = ResultCache(r.cache_dir)
        part = compare_methods(self._g, load_task(r.task, cache_dir=cache.root), r.eps, r.norm, r.n,
                               methods=[r.methods[i]], k=r.k, attack=r.attack, cache=cache,
                               recipe=FineTuneRecipe(epochs=r.epochs), progress=lambda stage, f: report(f, stage))
        computed = not all(info.from_cache for info in part.infos.values())
        if computed:
            self._seconds.append(time.perf_counter() - t0)
        self._parts.append(part)
        if len(self._parts) == len(self.steps):
            self.result = MethodComparison(pd.concat([p.summary for p in self._parts], ignore_index=True),
                                           pd.concat([p.samples for p in self._parts], ignore_index=True),
                                           {k: v for p in self._parts for k, v in p.infos.items()},
                                           [x for p in self._parts for x in p.recomputed])
        return computed

    def eta(self) -> float | None:
        if not self._seconds:
            return None
        per = sum(self._seconds) / len(self._seconds)
        return per * (len(self.steps) - self._pos - self._step_fraction)


# ---------------------------------------------------------------- tables and words

def nearest_eps(summary: pd.DataFrame, eps: float) -> float:
    """The eps of the summary closest to ``eps``."""
    return min(summary["eps"].unique(), key=lambda e: abs(float(e) - eps))


def _num(v: float, digits: int = 3) -> str:
    return MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def method_summary(comparison: MethodComparison, eps: float) -> pd.DataFrame:
    """One row per method at ``eps``: accuracies and bounds with 95 % intervals, mean Δ before and after, and
    how far the weights moved (text; a dash where a value does not apply)."""
    from .ui import with_interval

    rows = at_eps(comparison.summary, eps)
    return pd.DataFrame({
        "method": rows["method"].tolist(), "clean": with_interval(rows, "clean_acc"),
        "robust (attack)": with_interval(rows, "robust_acc"), "bound": with_interval(rows, "bound"),
        "bound with base Δ": [_num(v) for v in rows["bound_pre"]],
        "mean Δ": [_num(v) for v in rows["mean_delta"]], "mean Δ before (base)": [_num(v) for v in rows["mean_delta_base"]],
        "relative Δ": [_num(v) for v in rows["mean_relative_delta"]],
        "relative Δ before (base)": [_num(v) for v in rows["mean_relative_delta_base"]],
        "weight distance": [_num(v) for v in rows["weight_distance"]],
        "adaptation s": [_num(v, 1) for v in rows["adapt_seconds"]]})


def movement_table(comparison: MethodComparison) -> pd.DataFrame:
    """Per method: distance of the fine-tuned weights from the pretrained ones per block and in total, the head's
    distance from its start, and the parameters trained and frozen."""
    rows = []
    for label, info in comparison.infos.items():
        row: dict[str, object] = {"method": label, "total": round(info.weight_distance, 4)}
        row.update({f"block {b}": round(d, 4) for b, d in info.block_distance.items() if b != "total"})
        row.update({"head (from its start)": round(info.head_distance, 4), "head start": info.head_init or "probe",
                    "parameters trained": info.params_trained, "parameters frozen": info.params_frozen,
                    "epochs": info.epochs, "cached": "yes" if info.from_cache else "no"})
        rows.append(row)
    return pd.DataFrame(rows).fillna(MISSING)


def block_distances(comparison: MethodComparison) -> dict[str, dict[str, float]]:
    return {label: {b: d for b, d in info.block_distance.items() if b != "total"}
            for label, info in comparison.infos.items()}


def verdict_text(comparison: MethodComparison, eps: float, norm: str) -> str:
    """Which method keeps most robustness at ``eps`` and whether the base backbone's Δ predicted it (ε and Δ
    written as on every page)."""
    v: Verdict = ordering_verdict(comparison.summary, eps)
    tau = "undefined (ties)" if math.isnan(v.kendall_tau) else f"{v.kendall_tau:+.2f}"
    return (f"At ε = {eps_label(eps, norm)}: most robust **{' = '.join(v.best)}** (robust accuracy "
            f"{v.robust_acc:.3f}); the pre-fine-tuning Δ ranks {' = '.join(v.predicted_best)} first: "
            f"**{'predicted' if v.agrees else 'not predicted'}**; Kendall's τ of the two orderings {tau}.")


def method_help() -> str:
    return "\n".join(f"- **{m}**: {d}" for m, d in METHOD_DESCRIPTIONS.items())


def recipe_note() -> str:
    return (f"Fine-tuning recipe (defaults): {FineTuneRecipe()}; BatchNorm keeps its running statistics and frozen "
            "parts stay bit-identical. Adapted models are cached on disk with a JSON card, and a fine-tune that was "
            "stopped resumes from its last finished epoch.")


def block_names(g: Backbone) -> list[str]:
    """The blocks ``ft-last-k`` counts from the end."""
    return [b.name for b in network_blocks(g.net)]


def task_choices(sidebar_tasks: Sequence[str]) -> tuple[list[str], int]:
    """The offline tasks, and the index of the sidebar's first task among them (0 if none)."""
    tasks = list_tasks(offline_only=True)
    chosen = [t for t in sidebar_tasks if t in tasks]
    return tasks, tasks.index(chosen[0]) if chosen else 0
