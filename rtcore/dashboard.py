"""Session-independent logic behind the Streamlit dashboard (``app.py`` and ``pages/``).

The pages only draw; everything they need comes from here as plain data:

* defaults and choices for the shared sidebar (backbone, eps, norm, tasks, sample size,
  attack strength), with environment overrides ``RTCORE_DASHBOARD_*`` for tests and demos;
* the eps grid per norm (the grid plus the slider eps is what gets evaluated);
* loading a backbone with fast, clear failures (offline timm weights, bad checkpoints) and
  safe handling of an uploaded checkpoint (size-limited, safetensors only, never unpickled);
* :class:`EvaluationJob`: an evaluation running in a background thread with progress,
  partial results after each finished step, and cancellation, so a page can follow it,
  a user can navigate away without losing work, and a second visit attaches to it;
* the exact linear toy model of the theory page (``g(x) = A x`` in two dimensions).

No streamlit import here, no printing: the library returns data, pages draw it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import re
import shlex
import socket
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import (
    PRESETS,
    Backbone,
    BackboneUnavailableError,
    CheckpointError,
    Evaluation,
    ProgressEvent,
    TaskUnavailableError,
    backbone_specs,
    cli_command,
    create_backbone,
    list_tasks,
    load_task,
    run_evaluation,
    task_info,
)
from .backbones import BUNDLED_DIR, TIMM_PREFIX, check_safetensors_file, create_timm_backbone, default_device, read_card
from .cache import default_cache_dir

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- defaults and choices

ENV_N = "RTCORE_DASHBOARD_N"
ENV_TASKS = "RTCORE_DASHBOARD_TASKS"
ENV_ATTACK = "RTCORE_DASHBOARD_ATTACK"
ENV_BACKBONE = "RTCORE_DASHBOARD_BACKBONE"
ENV_NORM = "RTCORE_DASHBOARD_NORM"

NORMS: tuple[str, ...] = ("linf", "l2")
NORM_LABELS: dict[str, str] = {"linf": "L∞ (linf)", "l2": "L2 (l2)"}
EPS_GRIDS: dict[str, tuple[float, ...]] = {
    "linf": (0.0, 0.01, 0.02, 0.03, 0.05, 0.1),
    "l2": (0.0, 0.1, 0.25, 0.5, 0.75, 1.0),
}
DEFAULT_EPS: dict[str, float] = {"linf": 0.03, "l2": 0.5}
SAMPLE_SIZES: tuple[int, ...] = (20, 50, 100, 200, 500, 1000, 2000)
DEFAULT_N = 200
DEFAULT_ATTACK = "fast"
PREFERRED_BACKBONE = "fmnist-cnn-pgd-linf-0.1"
UPLOAD_CHOICE = "upload: my checkpoint (.safetensors + timm architecture)"
MAX_UPLOAD_MB = 200
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
SEED = 0
EPS_DECIMALS = 6
BOUND_NOTE = (
    "The bound uses Δ(x) found by an attack (a lower estimate of the true Δ), so it is a "
    "**prediction**, not a certificate: a certified guarantee would need an upper bound on Δ."
)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        log.warning("%s=%r is not an integer; using %d", name, raw, default)
        return default
    return value if value >= 1 else default


def default_n() -> int:
    """Test points per task: ``$RTCORE_DASHBOARD_N`` or 200 (a first plot in about a minute on 2 CPU cores)."""
    return _env_int(ENV_N, DEFAULT_N)


def sample_size_options(default: int | None = None) -> list[int]:
    """The sample-size choices, always including the default."""
    d = default_n() if default is None else default
    return sorted(set(SAMPLE_SIZES) | {d})


def default_attack() -> str:
    """``$RTCORE_DASHBOARD_ATTACK`` if it names a preset, else ``fast``."""
    raw = os.environ.get(ENV_ATTACK, "").strip()
    return raw if raw in PRESETS else DEFAULT_ATTACK


def default_norm() -> str:
    """``$RTCORE_DASHBOARD_NORM`` if valid, else ``linf``."""
    raw = os.environ.get(ENV_NORM, "").strip()
    return raw if raw in NORMS else "linf"


def default_tasks() -> list[str]:
    """``$RTCORE_DASHBOARD_TASKS`` (comma separated, unknown names dropped) or the offline tasks."""
    known = list_tasks()
    raw = os.environ.get(ENV_TASKS, "").strip()
    if raw:
        chosen = [t.strip() for t in raw.split(",") if t.strip() in known]
        if chosen:
            return chosen
        log.warning("%s=%r names no known task; known: %s", ENV_TASKS, raw, known)
    return list_tasks(offline_only=True)


def task_label(name: str) -> str:
    """A task name with a note when its data needs a download."""
    try:
        return name if task_info(name).offline else f"{name} (needs download)"
    except ValueError:
        return name


def backbone_choices() -> list[str]:
    """Every registry entry (bundled, user-registered, timm examples), then the upload option."""
    return [*backbone_specs(), UPLOAD_CHOICE]


def bundled_backbones() -> list[str]:
    """Names of the bundled backbones (model cards in ``assets/backbones``)."""
    return [n for n, s in backbone_specs().items() if s.kind == "bundled"]


def default_backbone(choices: Sequence[str] | None = None) -> str:
    """``$RTCORE_DASHBOARD_BACKBONE`` if valid, else ``fmnist-cnn-pgd-linf-0.1`` if present,
    else the first bundled backbone, else the first registry entry."""
    names = list(choices) if choices is not None else backbone_choices()
    env = os.environ.get(ENV_BACKBONE, "").strip()
    if env and env in names:
        return env
    if PREFERRED_BACKBONE in names:
        return PREFERRED_BACKBONE
    bundled = [n for n in bundled_backbones() if n in names]
    return bundled[0] if bundled else names[0]


def backbone_label(name: str) -> str:
    """Select-box label: the name and whether it works offline."""
    if name == UPLOAD_CHOICE:
        return "⬆ upload a checkpoint (.safetensors + timm architecture)"
    spec = backbone_specs().get(name)
    if spec is None or spec.kind == "bundled":
        return name
    return f"{name} ({spec.kind})" if spec.offline else f"{name} (needs download)"


def backbone_description(name: str) -> str:
    """The registry description of a backbone (empty for the upload option)."""
    spec = backbone_specs().get(name)
    return spec.description if spec is not None else ""


def backbone_card(name: str) -> dict[str, Any]:
    """The model card of a bundled backbone, or an empty dict for other kinds."""
    if not (BUNDLED_DIR / f"{name}.json").is_file():
        return {}
    try:
        return read_card(name)
    except BackboneUnavailableError:
        return {}


CARD_COLUMNS: dict[str, str] = {
    "method": "method", "train_norm": "train norm", "train_eps": "train ε",
    "upstream_clean_acc": "upstream clean acc", "upstream_robust_acc": "upstream robust acc",
    "upstream_eval_eps": "at ε", "upstream_eval_norm": "at norm", "feature_dim": "feature dim",
    "description": "description",
}


def card_table(names: Sequence[str]) -> pd.DataFrame:
    """One row per backbone from its model card: recipe, training eps, upstream accuracies."""
    rows = []
    for name in names:
        card = backbone_card(name)
        row: dict[str, Any] = {"backbone": name}
        row.update({label: card.get(key) for key, label in CARD_COLUMNS.items()})
        if not card:
            row["description"] = backbone_description(name)
        if row["train norm"] is None and card:
            row["train norm"] = "–"
        rows.append(row)
    return pd.DataFrame(rows, columns=["backbone", *CARD_COLUMNS.values()])


def default_compare_backbones(choices: Sequence[str] | None = None) -> list[str]:
    """Compare page default: every bundled backbone (standard, adversarial, self-supervised)."""
    names = list(choices) if choices is not None else backbone_choices()
    return [n for n in bundled_backbones() if n in names]


def default_eps(norm: str) -> float:
    """The slider's starting eps for a norm (linf 0.03 ≈ 8/255, l2 0.5)."""
    return DEFAULT_EPS[norm]


def eps_grid(norm: str) -> tuple[float, ...]:
    """The fixed eps grid of a norm (curves are drawn over it)."""
    if norm not in EPS_GRIDS:
        raise ValueError(f"norm={norm!r} is not one of {list(EPS_GRIDS)}")
    return EPS_GRIDS[norm]


def round_eps(eps: float) -> float:
    """Eps rounded to 6 decimals, so that slider floats hit the same cache entries."""
    return round(float(eps), EPS_DECIMALS) + 0.0


def eps_to_evaluate(norm: str, current: float) -> tuple[float, ...]:
    """The grid of ``norm`` plus the current slider eps, sorted and without duplicates."""
    return tuple(sorted({round_eps(e) for e in (*eps_grid(norm), current)}))


def eps_label(eps: float) -> str:
    """``0.0314 (= 8/255)``: eps in [0,1] pixel units and in 1/255 steps."""
    k = eps * 255
    k_txt = f"{round(k):d}" if abs(k - round(k)) < 0.05 else f"{k:.1f}"
    return f"{eps:.4g} (= {k_txt}/255)"


def attack_summary(name: str) -> str:
    """What an attack preset runs, in words (steps, restarts, losses, targeted runs)."""
    s = PRESETS[name]
    runs = "+".join(s.losses) + (f" + {s.targets} targeted" if s.targets else "")
    return (f"{s.steps} PGD steps; end-to-end: {s.restarts} restart(s) × ({runs}); "
            f"feature attack: {s.feature_restarts} start(s)")


def session_defaults() -> dict[str, Any]:
    """Widget keys and their starting values (``app.py`` sets them once per session)."""
    choices = backbone_choices()
    norm = default_norm()
    return {
        "backbone": default_backbone(choices),
        "norm": norm,
        "eps": default_eps(norm),
        "tasks": default_tasks(),
        "n": default_n(),
        "attack": default_attack(),
        "upload_arch": "resnet18",
        "compare_backbones": default_compare_backbones(choices),
        "session_token": uuid.uuid4().hex,
    }


# ---------------------------------------------------------------- backbones and uploads

@dataclass(frozen=True)
class BackboneRef:
    """What identifies a backbone for loading: a registry/timm name and optional local weights."""

    name: str
    weights: str | None = None
    label: str | None = None

    @property
    def display(self) -> str:
        """The name shown in tables and plots."""
        return self.label or self.name


class UploadError(ValueError):
    """An uploaded checkpoint was refused (too large, wrong type, not safetensors)."""


def upload_dir() -> Path:
    """Where accepted uploads are stored (content-addressed, under the system temp folder)."""
    return Path(tempfile.gettempdir()) / "rtcore-uploads"


def save_upload(filename: str, data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES,
                dest: str | os.PathLike[str] | None = None) -> Path:
    """Check an uploaded checkpoint and write it to a temporary file; return its path.

    Refused with :class:`UploadError`: empty or larger than ``max_bytes``, a name not ending
    in ``.safetensors``, or content that is not a safetensors file (e.g. a pickled ``.pt``).
    The file is never unpickled; the stored name is its sha256, so a re-upload reuses it.
    """
    size = len(data)
    if size == 0:
        raise UploadError(f"the uploaded file {filename!r} is empty")
    if size > max_bytes:
        raise UploadError(f"the uploaded file {filename!r} is {size / 1e6:.1f} MB, above the "
                          f"{max_bytes / 1e6:.0f} MB limit")
    if not filename.lower().endswith(".safetensors"):
        raise UploadError(
            f"{filename!r} is not a .safetensors file; pickled checkpoints (.pt, .pth, .bin, .ckpt) are refused "
            "because loading them can run code. Convert it where you trust it: "
            "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')")
    folder = Path(dest) if dest is not None else upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:24]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(filename).stem)[:60] or "checkpoint"
    path = folder / f"{digest}-{stem}.safetensors"
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            try:
                check_safetensors_file(tmp)
            except CheckpointError as e:
                raise UploadError(
                    f"{filename!r} is not a safetensors file (its header is not a safetensors header); "
                    "pickled checkpoints renamed to .safetensors are refused as well") from e
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def timm_arch(name: str) -> str:
    """A timm architecture name given by a user (``timm:`` prefix optional), checked against timm."""
    import timm

    arch = name.strip()
    if arch.startswith(TIMM_PREFIX):
        arch = arch[len(TIMM_PREFIX):]
    if not arch:
        raise ValueError("give the timm architecture the checkpoint was saved from, e.g. 'resnet18'")
    if not (timm.is_model(arch) or timm.is_model(arch.split(".")[0])):
        close = timm.list_models(f"*{arch.split('.')[0][:12]}*")[:5]
        hint = f"; similar names: {', '.join(close)}" if close else ""
        raise ValueError(f"timm has no architecture {arch!r}{hint}")
    return arch


def upload_ref(arch: str, path: str | os.PathLike[str], filename: str) -> BackboneRef:
    """The reference of an uploaded checkpoint for a timm architecture."""
    a = timm_arch(arch)
    return BackboneRef(f"{TIMM_PREFIX}{a}", str(path), f"{TIMM_PREFIX}{a} + {Path(filename).name}")


_HUB_STATUS: dict[str, tuple[float, bool]] = {}
_HUB_LOCK = threading.Lock()


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host:443`` opens within ``timeout`` s (answer kept for 60 s).

    Used to fail fast when timm weights are neither cached nor downloadable, instead of
    waiting for the Hugging Face client's retries (about a minute offline).
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes"}:
        return False
    now = time.monotonic()
    with _HUB_LOCK:
        hit = _HUB_STATUS.get(host)
    if hit is not None and now - hit[0] < 60:
        return hit[1]
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    ok = bool(result and result[0])
    with _HUB_LOCK:
        _HUB_STATUS[host] = (now, ok)
    return ok


def timm_weights_cached(model_name: str) -> bool:
    """Whether timm's pretrained weights for ``model_name`` are already on this machine."""
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(model_name)
    except Exception:  # noqa: BLE001 - unknown: let timm decide
        return False
    if cfg is None:
        return False
    if getattr(cfg, "file", None) and Path(cfg.file).is_file():
        return True
    hub = getattr(cfg, "hf_hub_id", None)
    if hub:
        for fname in ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin"):
            hit = try_to_load_from_cache(hub, fname)
            if isinstance(hit, str):
                return True
    url = getattr(cfg, "url", None)
    if url:
        return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()
    return False


def offline_problem(ref: BackboneRef) -> str | None:
    """A message when a timm backbone needs a download that cannot happen; None when it may load."""
    if not ref.name.startswith(TIMM_PREFIX) or ref.weights is not None:
        return None
    model = ref.name[len(TIMM_PREFIX):]
    if timm_weights_cached(model) or hub_reachable():
        return None
    return (
        f"The pretrained weights of {ref.name!r} are not on this machine and huggingface.co cannot be "
        f"reached, so this backbone is unavailable offline. Fix: run once with network to fill the Hugging "
        f"Face cache, or pick 'upload a checkpoint' and give a local .safetensors file with the architecture "
        f"{model.split('.')[0]!r}, or choose a bundled backbone.")


def load_backbone(ref: BackboneRef, device: str | torch.device | None = None) -> Backbone:
    """Create the backbone of ``ref`` (CUDA when present).

    Raises :class:`BackboneUnavailableError` at once for timm weights that cannot be had
    offline, :class:`CheckpointError` for a checkpoint that is not safetensors or does not
    fit the architecture, ``ValueError`` for an unknown name.
    """
    problem = offline_problem(ref)
    if problem:
        raise BackboneUnavailableError(problem)
    if ref.weights is not None and ref.name.startswith(TIMM_PREFIX):
        # create_timm_backbone directly: create_backbone's first parameter is also called ``name``,
        # so it cannot pass the display name through to timm.
        g = create_timm_backbone(ref.name[len(TIMM_PREFIX):], weights=ref.weights, name=ref.display)
        return g.to(torch.device(device) if device is not None else default_device())
    return create_backbone(ref.name, device, weights=ref.weights)


def describe_device(g: Backbone) -> str:
    """``cuda (NVIDIA H100)`` or ``cpu (2 threads)``."""
    d = g.device
    if d.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(d)})"
    return f"{d.type} ({torch.get_num_threads()} threads)"


# ---------------------------------------------------------------- evaluation requests and jobs

DEVICE_LOCK = threading.Lock()  # one evaluation at a time on the (shared) backbone device


@dataclass(frozen=True)
class EvalRequest:
    """Everything that defines a dashboard evaluation (the grid plus the current eps)."""

    backbones: tuple[BackboneRef, ...]
    tasks: tuple[str, ...]
    eps: float
    norm: str
    n: int
    attack: str
    seed: int = SEED
    cache_dir: str = ""

    @property
    def eps_values(self) -> tuple[float, ...]:
        return eps_to_evaluate(self.norm, self.eps)

    def steps(self) -> list[tuple[BackboneRef, str, tuple[float, ...]]]:
        """Work in the order that draws something soonest: the current eps for every
        (backbone, task) first, then the rest of the grid."""
        first = [(b, t, (self.eps,)) for b in self.backbones for t in self.tasks]
        rest = tuple(e for e in self.eps_values if e != self.eps)
        return first + ([(b, t, rest) for b in self.backbones for t in self.tasks] if rest else [])


def make_request(backbones: Sequence[BackboneRef], tasks: Sequence[str], eps: float, norm: str, n: int,
                 attack: str, *, seed: int = SEED, cache_dir: str | os.PathLike[str] | None = None) -> EvalRequest:
    """A validated request; ``cache_dir`` defaults to ``$RTCORE_CACHE_DIR`` or ``~/.cache/rtcore``."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} must be one of {list(NORMS)}")
    if attack not in PRESETS:
        raise ValueError(f"attack={attack!r} must be one of {list(PRESETS)}")
    if not backbones:
        raise ValueError("choose at least one backbone")
    if not tasks:
        raise ValueError("choose at least one task in the sidebar")
    e = round_eps(eps)
    if not 0.0 <= e <= 1.0:
        raise ValueError(f"eps={eps} must be in [0, 1] pixel units")
    if int(n) < 1:
        raise ValueError(f"n={n} must be a positive number of test points")
    cdir = str(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    return EvalRequest(tuple(dict.fromkeys(backbones)), tuple(dict.fromkeys(tasks)), e, norm, int(n), attack,
                       int(seed), cdir)


@dataclass
class Snapshot:
    """What a page draws: the results so far and the job's state."""

    summary: pd.DataFrame
    samples: pd.DataFrame
    gallery: dict[tuple[str, str, float], dict[str, torch.Tensor]]
    class_names: dict[str, tuple[str, ...]]
    done: bool
    fraction: float
    status: str
    errors: list[str]
    warnings: list[str]
    version: int
    elapsed: float
    eta: float | None
    cancelled: bool = False

    @property
    def empty(self) -> bool:
        return self.summary.empty

    def at_eps(self, eps: float) -> pd.DataFrame:
        """Summary rows at one eps."""
        return self.summary[np.isclose(self.summary["eps"], eps)] if not self.empty else self.summary


class _Cancelled(Exception):
    """Raised from the progress callback to stop a superseded job."""


def _sort_key(request: EvalRequest) -> dict[str, dict[str, int]]:
    return {"backbone": {b.display: i for i, b in enumerate(request.backbones)},
            "task": {t: i for i, t in enumerate(request.tasks)}}


class EvaluationJob:
    """One :class:`EvalRequest` computed step by step in a background thread.

    Every finished (backbone, task, eps-list) step is stored on disk by rtcore and added to
    the snapshot at once; a page draws the snapshot and waits for the next version. The
    thread holds :data:`DEVICE_LOCK` while it computes, so jobs never share the device.
    """

    def __init__(self, request: EvalRequest, backbones: Mapping[BackboneRef, torch.nn.Module]) -> None:
        missing = [b.display for b in request.backbones if b not in backbones]
        if missing:
            raise ValueError(f"no loaded backbone given for {missing}")
        self.request = request
        self._backbones = dict(backbones)
        self._cond = threading.Condition()
        self._pieces: list[tuple[BackboneRef, Evaluation]] = []
        self._class_names: dict[str, tuple[str, ...]] = {}
        self._errors: list[str] = []
        self._warnings: list[str] = []
        self._skip_tasks: set[str] = set()
        self._version = 0
        self._fraction = 0.0
        self._status = "waiting for the device"
        self._done = False
        self._cancel = threading.Event()
        self._t0 = time.monotonic()
        self._t_end: float | None = None
        self._cached: tuple[int, Snapshot] | None = None
        self._thread = threading.Thread(target=self._run, name="rtcore-dashboard-job", daemon=True)

    # -- control
    def start(self) -> EvaluationJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop at the next progress report; finished steps stay in the disk cache."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        with self._cond:
            return self._done

    @property
    def failed(self) -> bool:
        with self._cond:
            return self._done and bool(self._errors)

    def wait_for_change(self, version: int, timeout: float) -> bool:
        """Block until the snapshot version passes ``version`` or the job ends; True if it did."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != version or self._done, timeout=timeout)
            return self._version != version or self._done

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- state
    def progress(self) -> tuple[float, str]:
        """Overall fraction in [0, 1] and a status line with the stage and a time estimate."""
        with self._cond:
            f, status, done = self._fraction, self._status, self._done
        elapsed = self._elapsed()
        eta = _eta(f, elapsed, done)
        tail = f" · {elapsed:.0f} s elapsed" + (f", about {eta:.0f} s left" if eta is not None else "")
        return f, status + tail

    def _elapsed(self) -> float:
        return (self._t_end or time.monotonic()) - self._t0

    def snapshot(self) -> Snapshot:
        """The results so far (re-assembled only when a step has finished since the last call)."""
        with self._cond:
            version, done = self._version, self._done
            cached = self._cached
            if cached is not None and cached[0] == version:
                snap = cached[1]
                snap.fraction, snap.status, snap.done = self._fraction, self._status, done
                snap.elapsed = self._elapsed()
                snap.eta = _eta(snap.fraction, snap.elapsed, done)
                return snap
            pieces = list(self._pieces)
            errors, warnings = list(self._errors), list(self._warnings)
            fraction, status = self._fraction, self._status
            class_names = dict(self._class_names)
        summary, samples, gallery = _merge(pieces, self.request)
        elapsed = self._elapsed()
        snap = Snapshot(summary, samples, gallery, class_names, done, fraction, status, errors, warnings, version,
                        elapsed, _eta(fraction, elapsed, done), self.cancelled)
        with self._cond:
            self._cached = (version, snap)
        return snap

    # -- worker
    def _update(self, fraction: float | None = None, status: str | None = None) -> None:
        with self._cond:
            if fraction is not None:
                self._fraction = min(1.0, max(self._fraction, fraction))
            if status is not None:
                self._status = status
            self._cond.notify_all()

    def _run(self) -> None:
        req = self.request
        steps = req.steps()
        weights = _step_weights(steps)
        total = float(sum(weights)) or 1.0
        try:
            with DEVICE_LOCK:
                done_w = 0.0
                for i, ((ref, task, eps_list), w) in enumerate(zip(steps, weights, strict=False)):
                    if self._cancel.is_set():
                        raise _Cancelled
                    if task in self._skip_tasks:
                        done_w += w
                        continue
                    self._run_step(i, len(steps), ref, task, eps_list, done_w / total, w / total)
                    done_w += w
                    self._update(done_w / total)
            self._update(1.0, "done")
        except _Cancelled:
            self._update(status="stopped (superseded by a newer selection); finished steps are cached")
        except Exception as e:  # noqa: BLE001 - reported to the page as a message, never a traceback
            log.exception("dashboard evaluation failed")
            with self._cond:
                self._errors.append(_error_message(e))
        finally:
            with self._cond:
                self._done = True
                self._t_end = time.monotonic()
                self._version += 1
                self._cond.notify_all()

    def _run_step(self, i: int, n_steps: int, ref: BackboneRef, task: str, eps_list: tuple[float, ...],
                  base: float, width: float) -> None:
        req = self.request
        where = f"{ref.display} · " if len(req.backbones) > 1 else ""
        eps_txt = ", ".join(f"{e:g}" for e in eps_list)
        label = f"step {i + 1}/{n_steps} · {where}{task} · ε {eps_txt}"
        self._update(status=f"{label} · loading the task")
        try:
            t = load_task(task)
        except TaskUnavailableError as e:
            with self._cond:
                self._warnings.append(f"Task {task!r} skipped: {e}")
                self._skip_tasks.add(task)
            return
        with self._cond:
            self._class_names[task] = t.classes

        def report(ev: ProgressEvent) -> None:
            if self._cancel.is_set():
                raise _Cancelled
            stage = {"linear probe": "fitting the linear probe", "feature attack": "feature attack (Δ)",
                     "end-to-end attack": "end-to-end attack", "backbone": "preparing the backbone",
                     "done": "storing results"}.get(ev.stage, ev.stage)
            self._update(base + width * min(max(ev.fraction, 0.0), 1.0), f"{label} · {stage}")

        g = self._backbones[ref]
        ev = run_evaluation(g, [t], list(eps_list), req.norm, req.n, attack=req.attack, seed=req.seed,
                            cache_dir=req.cache_dir, device=getattr(g, "device", None), progress=report)
        with self._cond:
            self._pieces.append((ref, ev))
            self._version += 1
            self._cond.notify_all()


def _step_weights(steps: Sequence[tuple[BackboneRef, str, tuple[float, ...]]]) -> list[float]:
    """Rough cost of each step: one unit per eps, plus two for the probe on a task's first step."""
    seen: set[tuple[BackboneRef, str]] = set()
    out = []
    for ref, task, eps_list in steps:
        first = (ref, task) not in seen
        seen.add((ref, task))
        out.append(len(eps_list) + (2.0 if first else 0.0))
    return out


def _eta(fraction: float, elapsed: float, done: bool) -> float | None:
    if done or fraction < 0.03 or elapsed < 2:
        return None
    return elapsed * (1 - fraction) / fraction


def _error_message(e: Exception) -> str:
    known = (ValueError, TaskUnavailableError, BackboneUnavailableError, CheckpointError)
    if isinstance(e, known):
        return str(e)
    return f"Unexpected error ({type(e).__name__}): {e}. The details are in the server log."


def _merge(pieces: Sequence[tuple[BackboneRef, Evaluation]], request: EvalRequest
           ) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, str, float], dict[str, torch.Tensor]]]:
    """Concatenate the finished steps; rows ordered by backbone, task (request order) and eps."""
    if not pieces:
        return _empty_summary(), _empty_samples(), {}
    summaries, samples, gallery = [], [], {}
    for ref, ev in pieces:
        s, p = ev.summary.copy(), ev.samples.copy()
        s["backbone"], p["backbone"] = ref.display, ref.display
        summaries.append(s)
        samples.append(p)
        for (task, e), item in ev.gallery.items():
            gallery[(ref.display, task, e)] = item
    order = _sort_key(request)
    summary = pd.concat(summaries, ignore_index=True)
    summary = summary.drop_duplicates(["backbone", "task", "norm", "eps"], keep="last")
    summary = summary.sort_values(
        ["backbone", "task", "eps"],
        key=lambda col: col.map(order[col.name]) if col.name in order else col,
    ).reset_index(drop=True)
    sample_df = pd.concat(samples, ignore_index=True)
    sample_df = sample_df.drop_duplicates(["backbone", "task", "norm", "eps", "sample"], keep="last")
    return summary, sample_df.reset_index(drop=True), gallery


SUMMARY_COLUMNS = ["backbone", "task", "norm", "eps", "n", "clean_acc", "robust_acc", "bound",
                   "bound_feature_only", "mean_delta", "median_delta", "mean_delta_feature",
                   "mean_relative_delta", "clean_loss", "adv_loss", "loss_bound", "bound_kind", "attack",
                   "seed", "seconds"]
SAMPLE_COLUMNS = ["backbone", "task", "norm", "eps", "sample", "label", "pred", "correct", "rho",
                  "delta_feature", "delta_e2e", "delta", "certified", "certified_feature_only", "robust",
                  "clean_loss", "adv_loss", "loss_bound", "feature_norm"]


def _empty_summary() -> pd.DataFrame:
    return pd.DataFrame(columns=SUMMARY_COLUMNS)


def _empty_samples() -> pd.DataFrame:
    return pd.DataFrame(columns=SAMPLE_COLUMNS)


class JobRegistry:
    """Process-wide jobs by request: a second visit or another page attaches to the same job.

    ``owner`` (e.g. a session token and a page slot) lets a newer request of the same owner
    stop the owner's older, unfinished job, so a slider dragged through many values does not
    queue many evaluations. Finished jobs are kept (least recently used first out).
    """

    def __init__(self, keep: int = 32) -> None:
        self._jobs: OrderedDict[EvalRequest, EvaluationJob] = OrderedDict()
        self._owners: dict[str, EvalRequest] = {}
        self._lock = threading.Lock()
        self.keep = keep

    def submit(self, request: EvalRequest, backbones: Mapping[BackboneRef, torch.nn.Module],
               owner: str | None = None) -> EvaluationJob:
        """The job of ``request``: the running or finished one, or a new one started now."""
        with self._lock:
            job = self._jobs.get(request)
            if job is None or job.cancelled:
                job = EvaluationJob(request, backbones).start()
                self._jobs[request] = job
            self._jobs.move_to_end(request)
            if owner is not None:
                previous = self._owners.get(owner)
                self._owners[owner] = request
                if previous is not None and previous != request and not self._shared(previous, owner):
                    old = self._jobs.get(previous)
                    if old is not None and not old.done:
                        old.cancel()
            self._evict()
            return job

    def get(self, request: EvalRequest) -> EvaluationJob | None:
        with self._lock:
            return self._jobs.get(request)

    def discard(self, request: EvalRequest) -> None:
        """Forget a (failed) job so that the next submit starts it again."""
        with self._lock:
            job = self._jobs.pop(request, None)
        if job is not None:
            job.cancel()

    def _shared(self, request: EvalRequest, owner: str) -> bool:
        return any(r == request for o, r in self._owners.items() if o != owner)

    def _evict(self) -> None:
        finished = [r for r, j in self._jobs.items() if j.done]
        for r in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[r]


JOBS = JobRegistry()


def submit(request: EvalRequest, backbones: Mapping[BackboneRef, torch.nn.Module],
           owner: str | None = None) -> EvaluationJob:
    """Start or attach to the job of ``request`` in the process-wide registry."""
    return JOBS.submit(request, backbones, owner)


# ---------------------------------------------------------------- downloads and reproduction

def cli_for(request: EvalRequest, ref: BackboneRef, out: str = "results.csv") -> str:
    """The exact command line that reproduces ``request`` for one backbone."""
    cmd = cli_command(ref.name, list(request.tasks), list(request.eps_values), request.norm, request.n,
                      request.attack, request.seed, out)
    if ref.weights is not None:
        cmd += " --weights " + shlex.quote(ref.weights)
    return cmd


def cli_text(request: EvalRequest) -> str:
    """One reproducing command per backbone of the request."""
    return "\n".join(cli_for(request, ref, out=f"results-{_slug(ref.display)}.csv" if len(request.backbones) > 1
                             else "results.csv") for ref in request.backbones)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "backbone"


def csv_bytes(df: pd.DataFrame, request: EvalRequest | None = None) -> bytes:
    """CSV of a result table; with a request, the reproducing command comes first as ``#`` lines."""
    head = ""
    if request is not None:
        head = "".join(f"# reproduce: {line}\n" for line in cli_text(request).splitlines())
        head += "# the bound is an attack estimate (a prediction), not a certificate\n"
    return (head + df.to_csv(index=False)).encode()


def download_name(request: EvalRequest, kind: str) -> str:
    """A descriptive file name, e.g. ``rtcore-summary-fmnist-cnn-standard-linf-n200-fast.csv``."""
    who = _slug(request.backbones[0].display) if len(request.backbones) == 1 else f"{len(request.backbones)}-backbones"
    return f"rtcore-{kind}-{who}-{request.norm}-n{request.n}-{request.attack}.csv"


TABLE_NAMES = {"clean_acc": "clean", "robust_acc": "robust (attack)", "bound": "bound", "mean_delta": "mean Δ"}


def display_table(summary: pd.DataFrame, eps: float, by: str = "task") -> pd.DataFrame:
    """The per-task numbers at one eps, as the landing page shows them."""
    rows = summary[np.isclose(summary["eps"].astype(float), eps)]
    cols = [c for c in [by, "clean_acc", "robust_acc", "bound", "mean_delta", "n"] if c in rows.columns]
    if by != "task" and "task" in rows.columns:
        cols.insert(1, "task")
    out = rows[cols].rename(columns=TABLE_NAMES)
    return out.reset_index(drop=True)


def gallery_item(snapshot: Snapshot, backbone: str, task: str, eps: float) -> dict[str, torch.Tensor] | None:
    """The gallery images of (backbone, task, eps), or None if not computed yet."""
    for (b, t, e), item in snapshot.gallery.items():
        if b == backbone and t == task and math.isclose(e, eps, abs_tol=1e-9):
            return item
    return None


# ---------------------------------------------------------------- the linear toy (theory page)

@dataclass(frozen=True)
class LinearToy:
    """A 2-D linear representation ``g(x) = A x`` with a two-class linear head ``w·z + b``.

    ``delta``: exact ``sup ||A x' - A x||`` over the eps-ball (l2: eps·σ_max(A); linf:
    eps·max over sign vectors s of ||A s||); ``rho``: signed distance of g(x) to the head's
    boundary; ``certified``: rho > delta (the criterion); ``robust``: the exact end-to-end answer
    w·A x + b > eps·||Aᵀw||_q (q = 1 for linf, 2 for l2). Clipping to [0,1] is ignored.
    """

    A: np.ndarray
    x: np.ndarray
    eps: float
    norm: str
    w: np.ndarray
    b: float
    gx: np.ndarray
    delta: float
    delta_direction: np.ndarray
    rho: float
    required: float
    certified: bool
    robust: bool
    ball: np.ndarray = field(repr=False)
    image: np.ndarray = field(repr=False)

    @property
    def correct(self) -> bool:
        return self.rho > 0


def exact_delta(A: np.ndarray, eps: float, norm: str) -> tuple[float, np.ndarray]:
    """Exact Δ = sup_{||u||_p <= eps} ||A u||_2 and a maximiser u (linear g, no clipping)."""
    A = np.asarray(A, dtype=float)
    if norm == "l2":
        _, s, vt = np.linalg.svd(A)
        return float(eps * s[0]), eps * vt[0]
    if norm == "linf":
        signs = np.array(list(itertools.product([-1.0, 1.0], repeat=A.shape[1])))
        vals = np.linalg.norm(signs @ A.T, axis=1)
        k = int(np.argmax(vals))
        return float(eps * vals[k]), eps * signs[k]
    raise ValueError(f"norm={norm!r} must be 'linf' or 'l2'")


def ball_outline(eps: float, norm: str, points: int = 120) -> np.ndarray:
    """Closed outline (P, 2) of the 2-D eps-ball around the origin: a square (linf) or a disc (l2)."""
    if norm == "linf":
        return eps * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=float)
    t = np.linspace(0, 2 * np.pi, points)
    return eps * np.stack([np.cos(t), np.sin(t)], axis=1)


def linear_toy(a11: float, a12: float, a21: float, a22: float, x1: float, x2: float, eps: float, norm: str,
               angle_deg: float, offset: float) -> LinearToy:
    """Everything the theory page draws for ``A = [[a11, a12], [a21, a22]]``, point ``x``, and the
    head ``w = (cos θ, sin θ)``, ``b = offset`` (class y is the side ``w·z + b > 0``)."""
    A = np.array([[a11, a12], [a21, a22]], dtype=float)
    x = np.array([x1, x2], dtype=float)
    th = math.radians(angle_deg)
    w = np.array([math.cos(th), math.sin(th)])
    gx = A @ x
    delta, u = exact_delta(A, eps, norm)
    rho = float((w @ gx + offset) / np.linalg.norm(w))
    q = 1 if norm == "linf" else 2
    required = float(eps * np.linalg.norm(A.T @ w, ord=q))
    ball = x + ball_outline(eps, norm)
    image = ball @ A.T
    return LinearToy(A, x, float(eps), norm, w, float(offset), gx, delta, A @ u, rho, required,
                     bool(rho > delta), bool(w @ gx + offset > required), ball, image)
