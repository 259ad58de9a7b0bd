"""The "Transfer methods" page's logic: a background comparison job, its tables and its figures.

For one backbone and one task, :func:`rtcore.transfer.compare_methods` adapts the backbone by each
transfer method (lp, ft, lp-ft, ft-last-k), evaluates each adapted model across the eps grid and
reports how far fine-tuning moved the representation. It takes minutes on a CPU the first time
(the adapted models and every attack step are then cached on disk), so it runs in a background
thread (:class:`TransferJob`, one per request, shared by every session); the page only polls it
and draws what this module returns.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from rtcore import Backbone, ResultCache, list_tasks, load_task
from rtcore.config import eps_key, eps_mask
from rtcore.runs import MethodComparison, compare_methods, ordering_verdict
from rtcore.transfer import METHOD_DESCRIPTIONS, TRANSFER_METHODS, FineTuneRecipe, network_blocks

from .backbones import BackboneRef, load_backbone
from .figures import ACC_AXIS, DELTA_AXIS, colors_for, eps_axis
from .state import UPLOAD_CHOICE, eps_grid, eps_label

MAX_JOBS = 8  # finished comparisons kept in memory (the disk cache keeps everything)
POLL_S = 0.3  # how often the page refreshes a running job's progress bar
BASE_COLOR = "#7f7f7f"


# ---------------------------------------------------------------- the backbone of the sidebar

def sidebar_ref(session: Mapping[str, Any]) -> tuple[BackboneRef | None, str]:
    """The sidebar's backbone as a reference, or None and what the user should do."""
    name = session.get("backbone")
    if not name:
        return None, "Choose a backbone in the sidebar."
    if name != UPLOAD_CHOICE:
        return BackboneRef(str(name)), ""
    ref = session.get("upload_ref")
    if ref is None:
        return None, "Upload a .safetensors checkpoint and give its timm architecture in the sidebar."
    return ref, ""


_BACKBONES: OrderedDict[BackboneRef, Backbone] = OrderedDict()
_BACKBONES_LOCK = threading.Lock()


def backbone(ref: BackboneRef) -> Backbone:
    """The loaded backbone of ``ref`` (kept for the process, at most 4; never mutated). Raises the
    errors of :func:`app.backbones.load_backbone` (unavailable, bad checkpoint, unknown name)."""
    with _BACKBONES_LOCK:
        if ref in _BACKBONES:
            _BACKBONES.move_to_end(ref)
            return _BACKBONES[ref]
    g = load_backbone(ref)
    with _BACKBONES_LOCK:
        _BACKBONES[ref] = g
        while len(_BACKBONES) > 4:
            _BACKBONES.popitem(last=False)
    return g


@dataclass(frozen=True)
class TransferRequest:
    """What one comparison computes; equal requests share one job."""

    backbone_id: str  # the backbone's fingerprint: the same weights give the same job
    backbone_name: str
    task: str
    methods: tuple[str, ...]
    k: int
    eps: tuple[float, ...]
    norm: str
    n: int
    attack: str
    epochs: int


def eps_values(norm: str, current: float) -> tuple[float, ...]:
    """The dashboard's eps grid of ``norm`` plus the sidebar's current eps, sorted."""
    return tuple(sorted({*(eps_key(e) for e in eps_grid(norm)), eps_key(current)}))


def make_request(g: Backbone, task: str, methods: Sequence[str], k: int, eps: Sequence[float], norm: str, n: int,
                 attack: str, epochs: int) -> TransferRequest:
    """A request for ``g`` (ValueError naming a bad method, k or epochs)."""
    unknown = [m for m in methods if m not in TRANSFER_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods {list(methods)} must be a non-empty selection of {list(TRANSFER_METHODS)}")
    n_blocks = len(network_blocks(g.net))
    if "ft-last-k" in methods and not 1 <= k <= n_blocks:
        raise ValueError(f"k={k} is out of range: backbone {g.name!r} has {n_blocks} blocks; choose 1..{n_blocks}")
    FineTuneRecipe(epochs=epochs)  # validates
    order = tuple(m for m in TRANSFER_METHODS if m in methods)
    return TransferRequest(g.fingerprint(), g.name, task, order, int(k) if "ft-last-k" in methods else 1,
                           tuple(sorted({eps_key(e) for e in eps})), norm, int(n), attack, int(epochs))


class TransferJob:
    """One comparison in a daemon thread: ``progress()`` while it runs, then ``result`` or ``error``."""

    def __init__(self, request: TransferRequest, g: Backbone, cache_dir: str | None = None) -> None:
        self.request, self._g, self._cache_dir = request, g, cache_dir
        self._lock = threading.Lock()
        self._stage, self._fraction = "starting", 0.0
        self.result: MethodComparison | None = None
        self.error: str | None = None
        self.started = time.perf_counter()
        self.elapsed = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"transfer-{request.task}", daemon=True)
        self._thread.start()

    def _report(self, stage: str, fraction: float) -> None:
        with self._lock:
            self._stage, self._fraction = stage, max(self._fraction, min(1.0, fraction))

    def _run(self) -> None:
        r = self.request
        try:
            cache = ResultCache(self._cache_dir)
            task = load_task(r.task, cache_dir=cache.root)
            self.result = compare_methods(self._g, task, r.eps, r.norm, r.n, methods=r.methods, k=r.k,
                                          attack=r.attack, cache=cache, recipe=FineTuneRecipe(epochs=r.epochs),
                                          progress=self._report)
        except Exception as e:  # noqa: BLE001 - the page shows the message, never a traceback
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.elapsed = time.perf_counter() - self.started
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True once finished."""
        return self._done.wait(timeout)

    def progress(self) -> tuple[float, str]:
        """Fraction done and a line of text for the progress bar."""
        with self._lock:
            f, stage = self._fraction, self._stage
        return f, f"{stage} · {f:.0%} · {time.perf_counter() - self.started:.0f} s"


_JOBS: OrderedDict[TransferRequest, TransferJob] = OrderedDict()
_JOBS_LOCK = threading.Lock()


def submit(request: TransferRequest, g: Backbone, cache_dir: str | None = None) -> TransferJob:
    """The job of ``request``: the running or finished one, or a new one (a failed job is retried)."""
    with _JOBS_LOCK:
        job = _JOBS.get(request)
        if job is None or (job.done and job.error is not None):
            job = TransferJob(request, g, cache_dir)
            _JOBS[request] = job
        _JOBS.move_to_end(request)
        while len(_JOBS) > MAX_JOBS:
            oldest = next(iter(_JOBS))
            if not _JOBS[oldest].done:
                break
            _JOBS.pop(oldest)
        return job


def find(request: TransferRequest) -> TransferJob | None:
    """The existing job of ``request``, if any (never starts one)."""
    with _JOBS_LOCK:
        return _JOBS.get(request)


# ---------------------------------------------------------------- tables

def _at(summary: pd.DataFrame, eps: float) -> pd.DataFrame:
    return summary[eps_mask(summary["eps"], eps)]


def nearest_eps(summary: pd.DataFrame, eps: float) -> float:
    """The eps of the summary closest to ``eps``."""
    values = np.array(sorted(summary["eps"].unique()), dtype=float)
    return float(values[np.abs(values - eps).argmin()])


def method_summary(comparison: MethodComparison, eps: float) -> pd.DataFrame:
    """One row per method at ``eps``: accuracies, bounds, mean Delta before and after, and how far the
    weights moved."""
    rows = _at(comparison.summary, eps)
    return pd.DataFrame({
        "method": rows["method"],
        "clean": rows["clean_acc"],
        "robust (attack)": rows["robust_acc"],
        "bound": rows["bound"],
        "bound with base Δ": rows["bound_pre"],
        "mean Δ": rows["mean_delta"],
        "mean Δ before (base)": rows["mean_delta_base"],
        "relative Δ": rows["mean_relative_delta"],
        "relative Δ before (base)": rows["mean_relative_delta_base"],
        "weight distance": rows["weight_distance"],
        "adaptation s": rows["adapt_seconds"],
    }).reset_index(drop=True)


def movement_table(comparison: MethodComparison) -> pd.DataFrame:
    """Per method: L2 distance of the fine-tuned weights from the pretrained ones, per block and in
    total, the head's distance from its start, and the parameters trained and frozen."""
    rows = []
    for label, info in comparison.infos.items():
        row: dict[str, object] = {"method": label, "total": info.weight_distance}
        row.update({f"block {b}": d for b, d in info.block_distance.items() if b != "total"})
        row.update({"head (from its start)": info.head_distance, "head start": info.head_init or "probe (fitted)",
                    "parameters trained": info.params_trained, "parameters frozen": info.params_frozen,
                    "epochs": info.epochs, "cached": info.from_cache})
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_text(comparison: MethodComparison, eps: float) -> str:
    """The method that keeps most robustness at ``eps`` and whether the base backbone's Delta predicted it."""
    return ordering_verdict(comparison.summary, eps).sentence(eps_text(eps))


def eps_text(eps: float) -> str:
    """The dashboard's label of an eps."""
    return eps_label(eps)


def method_help() -> str:
    """A markdown list of the methods."""
    return "\n".join(f"- **{m}**: {d}" for m, d in METHOD_DESCRIPTIONS.items())


def recipe_note() -> str:
    """How the fine-tuning methods train (the default recipe) and where the results go."""
    return (f"Fine-tuning recipe (defaults): {FineTuneRecipe()}; BatchNorm keeps its running statistics and "
            "frozen parts stay bit-identical. Adapted models are cached on disk with a JSON card, and a "
            "fine-tune that was stopped resumes from its last finished epoch.")


def block_names(g: Backbone) -> list[str]:
    """The blocks ``ft-last-k`` counts from the end (see :mod:`rtcore.transfer.blocks`)."""
    return [b.name for b in network_blocks(g.net)]


def task_choices(sidebar_tasks: Sequence[str]) -> tuple[list[str], int]:
    """The offline tasks, and the index of the sidebar's first task among them (0 if none)."""
    tasks = list_tasks(offline_only=True)
    chosen = [t for t in sidebar_tasks if t in tasks]
    return tasks, tasks.index(chosen[0]) if chosen else 0


# ---------------------------------------------------------------- figures

def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}}, xaxis_title=x,
                      yaxis_title=y, height=380, margin={"l": 10, "r": 10, "t": 70, "b": 10},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "xanchor": "left"},
                      hovermode="closest")
    return fig


def accuracy_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Robust accuracy (solid) and bound (dashed) against eps, one colour per method."""
    fig = go.Figure()
    colors = colors_for(summary["method"].tolist())
    for method, rows in summary.groupby("method", sort=False):
        rows = rows.sort_values("eps")
        c = colors[str(method)]
        fig.add_scatter(x=rows["eps"], y=rows["robust_acc"], mode="lines+markers", name=f"{method}: robust acc",
                        line={"color": c, "width": 2.5}, legendgroup=str(method),
                        hovertemplate=f"{method}<br>ε %{{x:g}}<br>robust accuracy %{{y:.3f}}<extra></extra>")
        fig.add_scatter(x=rows["eps"], y=rows["bound"], mode="lines+markers", name=f"{method}: bound",
                        line={"color": c, "dash": "dash", "width": 2}, marker={"symbol": "diamond-open"},
                        legendgroup=str(method),
                        hovertemplate=f"{method}<br>ε %{{x:g}}<br>bound %{{y:.3f}}<extra></extra>")
    norm = str(summary["norm"].iloc[0]) if len(summary) else None
    _layout(fig, "Robust accuracy (solid) and bound (dashed) per method", eps_axis(norm), ACC_AXIS)
    fig.update_yaxes(range=[-0.02, 1.05])
    if current_eps is not None:
        fig.add_vline(x=current_eps, line_dash="dot", line_color=BASE_COLOR, line_width=1.5)
    return fig


def delta_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """Mean Delta against eps per method, and the base backbone's (grey, dotted): did fine-tuning make
    the representation more or less vulnerable?"""
    fig = go.Figure()
    colors = colors_for(summary["method"].tolist())
    first = None
    for method, rows in summary.groupby("method", sort=False):
        rows = rows.sort_values("eps")
        first = rows if first is None else first
        fig.add_scatter(x=rows["eps"], y=rows["mean_delta"], mode="lines+markers", name=str(method),
                        line={"color": colors[str(method)], "width": 2.5},
                        hovertemplate=f"{method}<br>ε %{{x:g}}<br>mean Δ %{{y:.3f}}<extra></extra>")
    if first is not None:
        fig.add_scatter(x=first["eps"], y=first["mean_delta_base"], mode="lines", name="base backbone (before)",
                        line={"color": BASE_COLOR, "dash": "dot", "width": 2},
                        hovertemplate="base backbone<br>ε %{x:g}<br>mean Δ %{y:.3f}<extra></extra>")
    norm = str(summary["norm"].iloc[0]) if len(summary) else None
    _layout(fig, "Mean Δ per method, and of the base backbone", eps_axis(norm), f"mean {DELTA_AXIS}")
    if current_eps is not None:
        fig.add_vline(x=current_eps, line_dash="dot", line_color=BASE_COLOR, line_width=1.5)
    return fig


def block_distance_bars(comparison: MethodComparison) -> go.Figure:
    """Per-block L2 distance of the fine-tuned weights from the pretrained ones, grouped by method."""
    fig = go.Figure()
    colors = colors_for(list(comparison.infos))
    for label, info in comparison.infos.items():
        blocks = [b for b in info.block_distance if b != "total"]
        fig.add_bar(x=blocks, y=[info.block_distance[b] for b in blocks], name=label, marker_color=colors[label],
                    hovertemplate=f"{label}<br>block %{{x}}<br>distance %{{y:.3f}}<extra></extra>")
    _layout(fig, "How far fine-tuning moved each block", "block (forward order)",
            "‖θ − θ₀‖₂ (L2 weight distance)")
    fig.update_layout(barmode="group")
    return fig
