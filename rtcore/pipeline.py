"""The evaluation in one call: :func:`run_evaluation` and :func:`evaluate` (kept for the keyword API).

Both build an :class:`~rtcore.runs.EvalSpec` (checked once) and run it with
:func:`rtcore.runs.evaluate.execute`; new code can use the spec, the planner and the executor directly.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from .data import Task
from .models import Backbone, as_backbone
from .models.ref import BackboneRef
from .probes import LinearProbe
from .runs import EvalSpec, Evaluation, ProgressCallback, ProgressEvent, execute, test_indices
from .runs.fields import keyword_signature
from .runs.spec import keywords

__all__ = ["Evaluation", "ProgressEvent", "cli_command", "evaluate", "run_evaluation", "spec_from_arguments",
           "test_indices"]


def spec_from_arguments(backbone: str | nn.Module | BackboneRef, tasks: Sequence[str | Task] | str | Task,
                        eps: float | Sequence[float], **fields: Any) -> tuple[EvalSpec, Backbone | None, dict[str, Task]]:
    """The spec of :func:`run_evaluation`'s arguments (``fields``: the keys of a spec file, e.g. ``n``,
    ``attack``, ``probe``, ``weights``, ``finetune``), with the module backbone and Task objects it refers to."""
    g = None
    if isinstance(backbone, nn.Module):
        g = as_backbone(backbone)
        backbone = BackboneRef.of_module(g)
    items = [tasks] if isinstance(tasks, (str, Task)) else list(tasks)  # type: ignore[arg-type]
    given: dict[str, Task] = {}
    for t in items:
        if isinstance(t, Task):
            if t.name in given and given[t.name] is not t:
                raise ValueError(f"two different tasks are named {t.name!r}; give each task its own name "
                                 f"(rtcore.relabel_task / dataclasses.replace(task, name=...))")
            given[t.name] = t
        elif not isinstance(t, str):
            raise ValueError(f"task {t!r} ({type(t).__name__}) is neither a task name nor a Task")
    names = [t.name if isinstance(t, Task) else t for t in items]
    data = {"backbone": backbone, "tasks": tuple(names), "eps": eps, **fields}
    kw = keywords(data)
    kw["given_tasks"] = tuple((name, t.digest, int(t.x_test.shape[0])) for name, t in given.items())
    return EvalSpec(**kw), g, given


def run_evaluation(backbone: str | nn.Module | BackboneRef, tasks: Sequence[str | Task] | str | Task,
                   eps: float | Sequence[float], norm: str = "linf", n: int | str = 500, *,
                   head: LinearProbe | None = None, cache_dir: str | None = None, use_cache: bool = True,
                   progress: ProgressCallback | None = None, **fields: Any) -> Evaluation:
    """Train probes, run the feature attacks and the end-to-end attacks, compute the bounds.

    ``fields`` are the other keys of :class:`rtcore.runs.EvalSpec` (``attack``, ``seed``, ``probe``,
    ``probe_C``, ``probe_eps``, ``transfer``, ``transfer_k``, ``finetune``, ``precision``,
    ``head_attack``, ``loss_attack``, ``sanity``, ``sanity_subset``, ``device``, ``batch_size``,
    ``download``, and the backbone's ``weights``, ``pretrained``, ``label``; see each field's help);
    a loaded backbone, Task objects and a fitted ``head`` (used instead of fitting a probe; the
    ``probe`` column then reads ``given``) may be given. ``n`` test points per task (a seeded subset)
    or ``"all"``; eps are evaluated in increasing order. Results are cached on disk and reused; a
    cache entry that fails verification is recomputed and listed in ``recomputed``. ``sanity=True``
    also runs :func:`rtcore.sanity.sanity_checks` per task: ``Evaluation.sanity[task]`` holds the
    flags and the summary gets a ``sanity_flags`` column ("ok" or the failed checks' names).
    """
    spec, g, given = spec_from_arguments(backbone, tasks, eps, norm=norm, n=n, **fields)
    if g is not None and spec.device != "auto":
        g = g.to(torch.device(spec.device))
    return execute(spec, progress=progress, backbone=g, tasks=given, head=head, cache_dir=cache_dir,
                   use_cache=use_cache)


def evaluate(backbone: str | nn.Module, tasks: Sequence[str | Task] | str | Task, eps: float | Sequence[float],
             norm: str = "linf", n: int | str = 500, **kwargs: Any) -> pd.DataFrame:
    """The summary table of :func:`run_evaluation`: one row per (backbone, task, probe, norm, eps) with
    ``clean_acc, robust_acc, bound, bound_head, bound_mean_delta, mean_delta, clean_loss, adv_loss,
    loss_bound_lse, loss_bound`` and more. ``bound <= bound_head <= robust_acc <= clean_acc`` on every row."""
    return run_evaluation(backbone, tasks, eps, norm, n, **kwargs).summary


def cli_command(backbone: str, tasks: Sequence[str], eps: Sequence[float], norm: str = "linf", n: int | str = 500, *,
                out: str | None = "results.csv", samples_out: str | None = None, python: str | None = None,
                **fields: Any) -> str:
    """The exact command line that reproduces an evaluation (``fields``: the other spec keys, e.g.
    ``attack``, ``probe``, ``weights``); :meth:`rtcore.runs.EvalSpec.command` of the same spec."""
    spec = EvalSpec(**keywords({"backbone": backbone, "tasks": tuple(tasks), "eps": eps, "norm": norm, "n": n,
                                **fields}))
    return spec.command(out=out, samples_out=samples_out, python=python)


for _fn, _lead in ((run_evaluation, ("backbone", "tasks", "eps", "norm", "n")),
                   (evaluate, ("backbone", "tasks", "eps", "norm", "n"))):
    _fn.__signature__ = keyword_signature(  # type: ignore[attr-defined]
        EvalSpec, _lead, [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                          for name, default in (("head", None), ("cache_dir", None), ("use_cache", True),
                                                ("progress", None))][: 4 if _fn is run_evaluation else 0])
