"""Small marker files beside rtcore's cache: "every stage of this (backbone, probe, task) is on disk".

A new server process that finds a marker runs only the final, cached step of that task (guarded:
if anything turns out to be missing, the job falls back to the staged plan), so a restart on a
warm disk cache draws the finished curves in a second or two instead of replaying every stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import rtcore
from rtcore.cache import CODE_VERSIONS

from .plan import EvalRequest, Step

log = logging.getLogger(__name__)


def _path(request: EvalRequest, step: Step) -> Path:
    ident = {"rtcore": rtcore.__version__, "code": CODE_VERSIONS, "backbone": step.ref.name,
             "weights": step.ref.weights, "probe": step.probe, "task": step.task, "norm": request.norm,
             "n": request.n, "attack": request.attack, "seed": request.seed, "eps": list(step.eps)}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return Path(request.cache_dir) / "dashboard" / "final" / f"{digest}.done"


def complete(request: EvalRequest, step: Step) -> bool:
    """Whether the final step of ``step``'s task was completed before (its stages are on disk)."""
    try:
        return _path(request, step).is_file()
    except OSError:
        return False


def mark(request: EvalRequest, step: Step) -> None:
    """Record that the final step completed; failures only cost the fast path."""
    try:
        p = _path(request, step)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
    except OSError as e:
        log.info("could not write the dashboard marker: %s", e)
