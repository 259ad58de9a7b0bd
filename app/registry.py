"""The process-wide job registry: a second visit or another page attaches to the same job, and a
newer request of the same owner replaces (and, if nobody else follows it, stops) the older one."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping

import torch

from .backbones import BackboneRef
from .devices import StreamlitSessions, _always_alive
from .jobs import START_DELAY_S, EvaluationJob
from .plan import EvalRequest

log = logging.getLogger(__name__)


class JobRegistry:
    """Process-wide jobs by request: a second visit or another page attaches to the same job.

    ``owner`` (e.g. a session token and a page slot) lets a newer request of the same owner
    stop the owner's older, unfinished job, so a slider dragged through many values does not
    queue many evaluations; a job that another owner also follows is kept running. Owners
    for which ``is_alive`` is False (their session ended) and owners of jobs no longer in the
    registry are forgotten at each submit. Finished jobs are kept (least recently used first out).

    Rapid changes coalesce: a job that replaces an owner's earlier request waits ``start_delay``
    seconds before it takes the device, and a still newer request in that time stops it before it
    has computed anything, so a burst of changes runs one job (the last).
    """

    def __init__(self, keep: int = 32, is_alive: Callable[[str], bool] | None = None,
                 start_delay: float = START_DELAY_S) -> None:
        self._jobs: OrderedDict[EvalRequest, EvaluationJob] = OrderedDict()
        self.start_delay = start_delay
        self.created = 0
        self._owners: dict[str, EvalRequest] = {}
        self._lock = threading.Lock()
        self._is_alive = is_alive or _always_alive
        self.keep = keep

    def owners(self) -> dict[str, EvalRequest]:
        """A copy of the owners and the request each follows."""
        with self._lock:
            return dict(self._owners)

    def prune_owners(self) -> int:
        """Forget owners whose session has ended or whose job is gone; return how many."""
        with self._lock:
            owners = dict(self._owners)
        ended = {o for o in owners if not self._alive(o)}  # outside the lock: the check may be slow
        with self._lock:
            gone = [o for o, r in self._owners.items()
                    if r not in self._jobs or (o in ended and owners.get(o) == r)]
            for o in gone:
                del self._owners[o]
        return len(gone)

    def _alive(self, owner: str) -> bool:
        try:
            return bool(self._is_alive(owner))
        except Exception:
            log.exception("owner liveness check failed for %r", owner)
            return True

    def submit(self, request: EvalRequest, backbones: Mapping[BackboneRef, torch.nn.Module],
               owner: str | None = None) -> EvaluationJob:
        """The job of ``request``: the running or finished one, or a new one started now."""
        self.prune_owners()
        with self._lock:
            job = self._jobs.get(request)
            if job is None or job.cancelled:
                previous = self._owners.get(owner) if owner is not None else None
                delay = self.start_delay if previous is not None and previous != request else 0.0
                job = EvaluationJob(request, backbones, start_delay=delay).start()
                self.created += 1
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
            self._drop_orphan_owners()
        if job is not None:
            job.cancel()

    def _shared(self, request: EvalRequest, owner: str) -> bool:
        return any(r == request for o, r in self._owners.items() if o != owner)

    def _evict(self) -> None:
        finished = [r for r, j in self._jobs.items() if j.done]
        for r in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[r]
        self._drop_orphan_owners()

    def _drop_orphan_owners(self) -> None:
        """Forget owners of requests no longer in the registry (call with the lock held)."""
        for o in [o for o, r in self._owners.items() if r not in self._jobs]:
            del self._owners[o]

SESSIONS = StreamlitSessions()
JOBS = JobRegistry(is_alive=SESSIONS)


def register_session(token: str, session_id: str | None) -> None:
    """Tie a dashboard session token to its Streamlit session, so its owners are pruned once it ends."""
    SESSIONS.register(token, session_id)


def submit(request: EvalRequest, backbones: Mapping[BackboneRef, torch.nn.Module],
           owner: str | None = None) -> EvaluationJob:
    """Start or attach to the job of ``request`` in the process-wide registry."""
    return JOBS.submit(request, backbones, owner)
