"""The evaluation in one call: :func:`run_evaluation` and :func:`evaluate` (kept for the keyword API).

Both build an :class:`~rtcore.runs.EvalSpec` (checked once) and run it with
:func:`rtcore.runs.execute`; new code can use the spec, the planner and the executor directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from .attacks import AttackSettings
from .data import Task
from .models import Backbone, as_backbone
from .models.ref import BackboneRef
from .probes import LinearProbe
from .runs import EvalSpec, Evaluation, ProgressCallback, ProgressEvent, execute, test_indices

__all__ = ["Evaluation", "ProgressEvent", "cli_command", "evaluate", "run_evaluation", "spec_from_arguments",
           "test_indices"]


def spec_from_arguments(backbone: str | nn.Module | BackboneRef, tasks: Sequence[str | Task] | str | Task,
                        eps: float | Sequence[float], norm: str = "linf", n: int = 500, *,
                        attack: str | AttackSettings = "standard", seed: int = 0, probe: str = "logistic",
                        probe_C: float | str = "auto", probe_eps: float | None = None, head_attack: bool = True,
                        loss_attack: bool = True, transfer: str = "lp", transfer_k: int | None = None,
                        download: bool = False, sanity: bool = False, sanity_subset: int = 128,
                        ) -> tuple[EvalSpec, Backbone | None, dict[str, Task]]:
    """The spec of :func:`run_evaluation`'s arguments, with the module backbone and Task objects it refers to."""
    g = None
    if isinstance(backbone, nn.Module):
        g = as_backbone(backbone)
        ref = BackboneRef.of_module(g)
    else:
        ref = backbone if isinstance(backbone, BackboneRef) else BackboneRef(backbone) \
            if isinstance(backbone, str) else backbone
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
    digests = tuple((name, t.digest) for name, t in given.items())
    spec = EvalSpec(ref, tuple(names), eps, norm, n, attack, probe, probe_C, probe_eps, transfer,  # type: ignore[arg-type]
                    transfer_k, seed, head_attack, loss_attack, sanity, sanity_subset, download, digests)
    return spec, g, given


def run_evaluation(
    backbone: str | nn.Module | BackboneRef,
    tasks: Sequence[str | Task] | str | Task,
    eps: float | Sequence[float],
    norm: str = "linf",
    n: int = 500,
    *,
    attack: str | AttackSettings = "standard",
    seed: int = 0,
    probe: str = "logistic",
    probe_C: float | str = "auto",
    probe_eps: float | None = None,
    head_attack: bool = True,
    loss_attack: bool = True,
    head: LinearProbe | None = None,
    transfer: str = "lp",
    transfer_k: int | None = None,
    cache_dir: str | None = None,
    use_cache: bool = True,
    device: str | torch.device | None = None,
    progress: ProgressCallback | None = None,
    download: bool = False,
    sanity: bool = False,
    sanity_subset: int = 128,
) -> Evaluation:
    """Train probes, run the feature attacks and the end-to-end attacks, compute the bounds.

    The arguments are the fields of :class:`rtcore.runs.EvalSpec` (see there for each rule); a loaded
    backbone, Task objects and a fitted ``head`` (used instead of fitting a probe; the ``probe``
    column then reads ``given``) may be given. ``n`` test points per task (a seeded subset); eps are
    evaluated in increasing order. Results are cached on disk and reused; a cache entry that fails
    verification is recomputed and listed in ``recomputed``. ``sanity=True`` also runs
    :func:`rtcore.sanity.sanity_checks` per task: ``Evaluation.sanity[task]`` holds the flags and the
    summary gets a ``sanity_flags`` column ("ok" or the failed checks' names).
    """
    spec, g, given = spec_from_arguments(backbone, tasks, eps, norm, n, attack=attack, seed=seed, probe=probe,
                                         probe_C=probe_C, probe_eps=probe_eps, head_attack=head_attack,
                                         loss_attack=loss_attack, transfer=transfer, transfer_k=transfer_k,
                                         download=download, sanity=sanity, sanity_subset=sanity_subset)
    if g is not None and device is not None:
        g = g.to(torch.device(device))
    return execute(spec, progress=progress, backbone=g, tasks=given, head=head, cache_dir=cache_dir,
                   use_cache=use_cache, device=device)


def evaluate(
    backbone: str | nn.Module,
    tasks: Sequence[str | Task] | str | Task,
    eps: float | Sequence[float],
    norm: str = "linf",
    n: int = 500,
    **kwargs: object,
) -> pd.DataFrame:
    """The summary table of :func:`run_evaluation`: one row per (backbone, task, probe, norm, eps) with
    ``clean_acc, robust_acc, bound, bound_head, bound_mean_delta, mean_delta, clean_loss, adv_loss,
    loss_bound_lse, loss_bound`` and more. ``bound <= bound_head <= robust_acc <= clean_acc`` on every row."""
    return run_evaluation(backbone, tasks, eps, norm, n, **kwargs).summary  # type: ignore[arg-type]


def cli_command(backbone: str, tasks: Sequence[str], eps: Sequence[float], norm: str, n: int,
                attack: str = "standard", seed: int = 0, out: str = "results.csv", weights: str | None = None,
                probe: str = "logistic", probe_eps: float | None = None, samples_out: str | None = None,
                transfer: str = "lp", transfer_k: int | None = None, python: str | None = None) -> str:
    """The exact command line that reproduces an evaluation (``weights``: a checkpoint file);
    :meth:`rtcore.runs.EvalSpec.command` of the same spec."""
    spec = EvalSpec(BackboneRef(backbone, weights), tuple(tasks), eps, norm, n, attack, probe,  # type: ignore[arg-type]
                    probe_eps=probe_eps, transfer=transfer,
                    transfer_k=transfer_k if transfer == "ft-last-k" else None, seed=seed)
    return spec.command(out=out, samples_out=samples_out, python=python)
