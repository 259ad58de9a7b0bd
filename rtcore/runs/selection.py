"""A dashboard session's selection (backbone, norm, eps, tasks, n, strength, probe; the compared backbones and the
lesson step): its defaults, the values each key may take, the eps a user may add to the grid, and the selection as
URL query parameters. Pure data: no UI.

The defaults are the spec of ``assets/classroom.toml`` (the one a class warms the cache with, so a warm cache is the
landing page's), with ``RTCORE_DASHBOARD_*`` overrides for tests and demos. Every list comes from the library's
registries: norms, the eps grid, strengths, probe kinds, tasks and backbones.

A query such as ``backbone=fmnist-cnn-standard&norm=linf&eps=8/255&tasks=fmnist-novel,shapes&n=200&attack=fast``
is :func:`to_query` of that selection; :func:`from_query` reads it back, naming every value that is not valid here
(that value keeps its default, a list keeps its valid items).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..attacks import STRENGTHS
from ..config import ASSETS_DIR, NORMS, check_eps, default_eps, eps_grid, eps_key, eps_text, nearest_eps
from ..data import check_task_ref, list_tasks, task_display_name, task_test_size
from ..data.refs import is_user_ref
from ..models.ref import BackboneRef
from ..models.registry import list_backbones
from ..probes import list_probes
from .jobs import EvalRequest
from .spec import EvalSpec, load_spec, parse_eps_text, task_identity

log = logging.getLogger(__name__)

ENV_N, ENV_TASKS, ENV_ATTACK = "RTCORE_DASHBOARD_N", "RTCORE_DASHBOARD_TASKS", "RTCORE_DASHBOARD_ATTACK"
ENV_BACKBONE, ENV_NORM = "RTCORE_DASHBOARD_BACKBONE", "RTCORE_DASHBOARD_NORM"
CLASSROOM = ASSETS_DIR / "classroom.toml"
SAMPLE_SIZES: tuple[int, ...] = (20, 50, 100, 200, 500, 1000, 2000)
#: an added eps beyond this many grid steps (32/255 linf, 3.2 l2) asks for confirmation first
CONFIRM_STEPS = 32
#: list-valued query parameters and the selection keys they fill
LISTS = {"tasks": "tasks", "compare": "compare_backbones"}
#: on/off query parameters (``1``, ``true``, ``yes``, ``on``)
FLAGS = ("present", "frozen")
LESSON_STEPS = range(1, 100)


@functools.cache
def classroom() -> EvalSpec:
    """The default selection: the spec of ``assets/classroom.toml``."""
    return load_spec(CLASSROOM)


def _env(name: str, valid: Callable[[str], bool], default: Any) -> Any:
    """``$name`` when set and valid, else ``default`` (an invalid value is logged)."""
    raw = os.environ.get(name, "").strip()
    if raw and not valid(raw):
        log.warning("%s=%r is not valid here; using %r", name, raw, default)
    return raw if raw and valid(raw) else default


def default_n() -> int:
    """Test points per task: ``$RTCORE_DASHBOARD_N`` or the classroom spec's."""
    return int(_env(ENV_N, lambda r: r.isdigit() and int(r) >= 1, classroom().n))


def default_attack() -> str:
    return str(_env(ENV_ATTACK, lambda r: r in STRENGTHS, classroom().strength))


def default_norm() -> str:
    return str(_env(ENV_NORM, lambda r: r in NORMS, classroom().norm))


def default_tasks() -> list[str]:
    """``$RTCORE_DASHBOARD_TASKS`` (comma separated, unknown names dropped) or the classroom spec's."""
    known = list_tasks()
    chosen = [t.strip() for t in os.environ.get(ENV_TASKS, "").split(",") if t.strip() in known]
    return chosen or list(classroom().tasks)


def default_backbone(choices: Sequence[str] | None = None) -> str:
    """``$RTCORE_DASHBOARD_BACKBONE``, the classroom spec's, or the first bundled backbone among ``choices``
    (default: every registered backbone)."""
    names = list(choices) if choices is not None else list_backbones()
    env = os.environ.get(ENV_BACKBONE, "").strip()
    candidates = (env, classroom().backbone.name, *list_backbones(kind="bundled"))
    return next((c for c in candidates if c and c in names), names[0])


def defaults() -> dict[str, Any]:
    """The starting selection: every key :func:`to_query` writes but the view's flags and the lesson step, and the
    eps each norm's grid gained (none)."""
    norm = default_norm()
    return {"backbone": default_backbone(), "norm": norm, "eps": default_eps(norm), "extra_eps": {n: [] for n in NORMS},
            "tasks": default_tasks(), "n": default_n(), "attack": default_attack(), "probe": classroom().probe,
            "compare_backbones": list_backbones(kind="bundled")}


def sample_size_options(cap: int | None = None) -> list[int]:
    """The choices of n, up to ``cap`` (the smallest test split of the tasks chosen, see :func:`n_cap`)."""
    options = sorted({*SAMPLE_SIZES, default_n()})
    return [o for o in options if cap is None or o <= cap] or options[:1]


def n_cap(tasks: Iterable[str]) -> int | None:
    """The smallest test split among your own tasks in ``tasks`` (n may not exceed it), None without one."""
    sizes = [task_test_size(t) for t in tasks if is_user_ref(t)]
    return min((k for k in sizes if k), default=None)


def choices() -> dict[str, list[Any]]:
    """The values each single-valued key of the selection may take here."""
    return {"backbone": list_backbones(), "norm": list(NORMS), "attack": list(STRENGTHS), "probe": list_probes(),
            "n": sample_size_options()}


def checked(values: Mapping[str, Any], tasks: Sequence[str], backbones: Sequence[str] = ()) -> dict[str, Any]:
    """The selection ``values`` as it takes effect here: a single-valued key whose value is not offered
    (:func:`choices`; for the backbone also ``backbones``, e.g. an upload) back at its default, the tasks not among
    ``tasks`` left out, and eps at the nearest position of its norm's cursor (the grid and the eps added to it)."""
    start = defaults()
    out = {k: values[k] if k in values and values[k] in [*options, *(backbones if k == "backbone" else ())]
           else start[k] for k, options in choices().items()}
    out["tasks"] = [t for t in values.get("tasks", start["tasks"]) if t in set(tasks)]
    added = values.get("extra_eps", {}).get(out["norm"], [])
    out["eps"] = nearest_eps(values.get("eps", start["eps"]), eps_options(out["norm"], added))
    return out


def with_task(values: Mapping[str, Any], ref: str) -> tuple[str, dict[str, Any]]:
    """Your own task ``ref`` (``folder:PATH`` / ``npz:PATH``, checked by :func:`rtcore.data.check_task_ref`) added
    to the selection ``values``: its canonical reference and the keys that change (``user_tasks`` and ``tasks``
    gain it; n comes down to the smallest test split when it exceeds it). ValueError when the same data is
    already one of ``user_tasks`` under another reference (added by path and by upload)."""
    task = check_task_ref(ref)
    mine, chosen = list(values.get("user_tasks", [])), list(values.get("tasks", []))
    same = [t for t in mine if t != task and task_identity(t) == task_identity(task)]
    if same:
        raise ValueError(f"this data is already a task here: {task_display_name(same[0])}")
    chosen += [task] if task not in chosen else []
    options = sample_size_options(n_cap(chosen))
    return task, {"user_tasks": mine + ([task] if task not in mine else []), "tasks": chosen,
                  "n": values["n"] if values.get("n") in options else options[-1]}


def request(refs: Sequence[BackboneRef], tasks: Sequence[str], norm: str, n: int, attack: str, *,
            probes: Sequence[str] = ("logistic",), extras: Sequence[float] = (), cache_dir: str = "",
            sanity: bool = False) -> EvalRequest:
    """The request of a selection: the library's grid plus ``extras``, the norm's default eps first, the classroom
    spec's seed (ValueError naming a bad value)."""
    return EvalRequest.over_grid(refs, tasks, norm, n, attack, probes=probes, extras=extras,
                                 first=(default_eps(norm),), seed=classroom().seed, cache_dir=cache_dir,
                                 sanity=sanity)


def preferred(options: Sequence[str], chosen: Sequence[str]) -> str:
    """The first of ``chosen`` that is among ``options`` (a page of one task opens on the sidebar's first), else
    the first option."""
    return next((c for c in chosen if c in options), options[0])


def request_of(values: Mapping[str, Any], refs: Sequence[BackboneRef], tasks: Sequence[str],
               probes: Sequence[str] = ("logistic",), *, sanity: bool = False, cache_dir: str = "") -> EvalRequest:
    """:func:`request` of the selection ``values`` (its norm, n and strength, and the eps added to that norm's
    grid) for ``refs`` and ``tasks``; memoised, so a page's rerun checks no spec again."""
    norm = values["norm"]
    return _request(tuple(refs), tuple(tasks), norm, int(values["n"]), values["attack"], tuple(probes),
                    tuple(values.get("extra_eps", {}).get(norm, [])), cache_dir, sanity)


@functools.lru_cache(maxsize=256)
def _request(refs: tuple[BackboneRef, ...], tasks: tuple[str, ...], norm: str, n: int, attack: str,
             probes: tuple[str, ...], extras: tuple[float, ...], cache_dir: str, sanity: bool) -> EvalRequest:
    return request(refs, tasks, norm, n, attack, probes=probes, extras=extras, cache_dir=cache_dir, sanity=sanity)


# ---------------------------------------------------------------- eps: the grid and the values a user adds

def eps_options(norm: str, extras: Iterable[float] = ()) -> list[float]:
    """The cursor's positions: the library's grid plus the eps the user added, sorted."""
    return sorted({*eps_grid(norm), *(eps_key(e) for e in extras)})


def eps_from_input(value: float, norm: str) -> float:
    """The eps of a typed value: k/255 for linf, the value itself for l2."""
    return eps_key(float(value) / 255 if norm == "linf" else float(value))


@dataclass(frozen=True)
class NewEps:
    """What adding ``eps`` to the grid means: ``ok``; ``grid`` (already on it); ``confirm`` (beyond
    :data:`CONFIRM_STEPS` grid steps, from ``limit`` on); ``zero`` (the clean accuracy, always shown) or
    ``error`` (``reason``: the library's words)."""

    verdict: Literal["ok", "grid", "confirm", "zero", "error"]
    eps: float
    limit: float = 0.0
    reason: str = ""


def new_eps(eps: float, norm: str) -> NewEps:
    """The verdict on an eps a user adds to ``norm``'s grid (:class:`NewEps`)."""
    try:
        e = check_eps(float(eps), norm)[0][0]
    except ValueError as err:
        return NewEps("error", float(eps), reason=str(err))
    limit = eps_grid(norm, (CONFIRM_STEPS,))[0]
    verdict = "zero" if e <= 0 else "grid" if e in eps_grid(norm) else "confirm" if e > limit else "ok"
    return NewEps(verdict, e, limit)  # type: ignore[arg-type]


def with_eps(values: Mapping[str, Any], norm: str, added: Iterable[float]) -> dict[str, Any]:
    """The keys that change when the eps ``added`` join ``norm``'s grid in the selection ``values`` (each once,
    sorted); the cursor goes to the last one when ``norm`` is the selection's."""
    have = dict(values.get("extra_eps", {}))
    new = [eps_key(e) for e in added]
    have[norm] = sorted({*have.get(norm, []), *new})
    return {"extra_eps": have, **({"eps": new[-1]} if new and norm == values.get("norm") else {})}


def without_added(values: Mapping[str, Any], norm: str) -> dict[str, Any]:
    """The keys that change when the eps added to ``norm``'s grid leave it: the cursor goes to the nearest grid
    value."""
    return {"extra_eps": {**values.get("extra_eps", {}), norm: []}, "eps": nearest_eps(values["eps"], eps_grid(norm))}


# ---------------------------------------------------------------- the selection as URL query parameters

def from_query(params: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The selection of a URL's query parameters, and one problem per value that is not valid here (that value
    keeps its default; a list keeps its valid items). A list of compared backbones sets ``compare_active``."""
    out: dict[str, Any] = {}
    problems: list[str] = []
    singles = {**choices(), "lesson": list(LESSON_STEPS)}
    for key, options in singles.items():
        value = params.get(key, "").strip()
        match = next((o for o in options if str(o) == value), None)
        if match is not None:
            out[key] = match
        elif key in params:
            shown = "a step number" if key == "lesson" else "one of " + ", ".join(map(str, options))
            problems.append(f"{key}={value!r} is not {shown}; the default is used")
    known = {"tasks": list_tasks(), "compare": singles["backbone"]}
    for key, session_key in LISTS.items():
        items = [t.strip() for t in params.get(key, "").split(",") if t.strip()]
        bad = [t for t in items if t not in known[key]]
        if bad:
            problems.append(f"{key}: {', '.join(map(repr, bad))} not known here, left out (known: "
                            f"{', '.join(known[key])})")
        if len(bad) < len(items):
            out[session_key] = [t for t in items if t not in bad]
            out.update({"compare_active": True} if key == "compare" else {})
    out.update({k: params[k].strip().lower() in ("1", "true", "yes", "on") for k in FLAGS if k in params})
    if "eps" in params:
        norm = out.get("norm") or default_norm()
        eps, extra, problem = _eps_param(params["eps"].strip(), norm)
        if problem:
            problems.append(f"{problem}; the default is used")
        else:
            out.update(eps=eps, extra_eps={norm: [extra]} if extra is not None else {})
    return out, problems


def _eps_param(text: str, norm: str) -> tuple[float, float | None, str | None]:
    """(eps, eps to add to the grid or None, problem): a grid value, or one a user could add without confirming."""
    try:
        e = eps_key(float(parse_eps_text(text)))  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        return 0.0, None, f"eps={text!r}: {err}"
    if e in eps_options(norm):
        return e, None, None
    check = new_eps(e, norm)
    if check.verdict == "ok":
        return e, e, None
    why = {"error": check.reason, "zero": "eps = 0 is the clean accuracy"}.get(check.verdict,
                                                                              "beyond the range a link may add")
    return 0.0, None, f"eps={text!r}: {why}"


def to_query(selection: Mapping[str, Any]) -> dict[str, str]:
    """The query parameters of a selection: registered tasks and backbones only (a user's own data and an uploaded
    checkpoint live on the server, so a link cannot carry them); the compared backbones only once the comparison
    runs (``compare_active``; a link with ``compare=`` starts it)."""
    s = selection
    out: dict[str, str] = {}
    backbones = set(list_backbones())
    if s.get("backbone") in backbones:
        out["backbone"] = str(s["backbone"])
    if "norm" in s:
        out["norm"] = s["norm"]
        if "eps" in s:
            out["eps"] = str(eps_text(s["eps"], s["norm"]))
    known = {"tasks": set(list_tasks()), "compare": backbones}
    for key, session_key in LISTS.items():
        items = [t for t in s.get(session_key, []) if t in known[key]]
        if items and (key != "compare" or s.get("compare_active")):
            out[key] = ",".join(items)
    out.update({k: str(s[k]) for k in ("n", "attack", "probe", "lesson") if s.get(k) is not None})
    out.update({k: "1" for k in FLAGS if s.get(k)})
    return out
