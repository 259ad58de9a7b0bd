"""The process-wide job registry: every session asking for the same request attaches to the same job (a
cold server serves its first visitors from one job), and a newer request of the same owner replaces
(and, if nobody else follows it, stops) the older one."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping

from rtcore import Backbone
from rtcore.models.ref import BackboneRef

from .devices import StreamlitSessions, always_alive
from .jobs import BaseJob, Job, Request

log = logging.getLogger(__name__)

START_DELAY_S = 0.6  # a job that replaces an owner's earlier request waits this long: rapid changes coalesce


class JobRegistry:
    """Jobs (evaluations, comparisons of transfer methods) by request. ``owner`` (a session token and a page slot) lets a newer request of the same owner
    stop the owner's older, unfinished job, unless another owner follows it. Owners whose session ended
    (``is_alive`` False) or whose job is gone are forgotten at each submit; finished jobs are kept
    (``keep``, least recently used out). A job that replaces an owner's request waits ``start_delay``
    seconds first, so a burst of changes runs one job (the last); when the two requests differ only in
    their eps, the new job shows the old one's rows until it has its own."""

    def __init__(self, keep: int = 32, is_alive: Callable[[str], bool] | None = None,
                 start_delay: float = START_DELAY_S) -> None:
        self._jobs: OrderedDict[Hashable, BaseJob] = OrderedDict()
        self._owners: dict[str, Hashable] = {}
        self._lock = threading.Lock()
        self._is_alive = is_alive or always_alive
        self.start_delay, self.keep, self.created = start_delay, keep, 0

    def owners(self) -> dict[str, Hashable]:
        with self._lock:
            return dict(self._owners)

    def prune_owners(self) -> int:
        """Forget owners whose session has ended or whose job is gone; return how many."""
        with self._lock:
            owners = dict(self._owners)
        ended = {o for o in owners if not self._alive(o)}  # outside the lock: the check may be slow
        with self._lock:
            gone = [o for o, r in self._owners.items() if r not in self._jobs or (o in ended and owners.get(o) == r)]
            for o in gone:
                del self._owners[o]
        return len(gone)

    def _alive(self, owner: str) -> bool:
        try:
            return bool(self._is_alive(owner))
        except Exception:  # noqa: BLE001 - a liveness check that cannot answer keeps the owner
            log.exception("owner liveness check failed for %r", owner)
            return True

    def submit(self, request: Hashable, factory: Callable[[BaseJob | None, float], BaseJob],
               owner: str | None = None) -> BaseJob:
        """The job of ``request``: the running or finished one, or ``factory(previous, start_delay)`` started
        now (``previous``: the owner's job it replaces, or None)."""
        self.prune_owners()
        with self._lock:
            previous = self._owners.get(owner) if owner is not None else None
            old = self._jobs.get(previous) if previous is not None and previous != request else None
            job = self._jobs.get(request)
            if job is None or job.cancelled:
                job = factory(old, self.start_delay if old is not None else 0.0).start()
                self.created += 1
                self._jobs[request] = job
            self._jobs.move_to_end(request)
            if owner is not None:
                self._owners[owner] = request
                if old is not None and not old.done and not self._shared(previous, owner):
                    old.cancel()
            self._evict()
            return job

    def jobs(self) -> list[BaseJob]:
        """The jobs held, least recently used first."""
        with self._lock:
            return list(self._jobs.values())

    def get(self, request: Hashable) -> BaseJob | None:
        with self._lock:
            return self._jobs.get(request)

    def discard(self, request: Hashable) -> None:
        """Forget a (failed) job so that the next submit starts it again."""
        with self._lock:
            job = self._jobs.pop(request, None)
            self._drop_orphan_owners()
        if job is not None:
            job.cancel()

    def _shared(self, request: Hashable, owner: str) -> bool:
        return any(r == request for o, r in self._owners.items() if o != owner)

    def _evict(self) -> None:
        finished = [r for r, j in self._jobs.items() if j.done]
        for r in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[r]
        self._drop_orphan_owners()

    def _drop_orphan_owners(self) -> None:
        for o in [o for o, r in self._owners.items() if r not in self._jobs]:
            del self._owners[o]


SESSIONS = StreamlitSessions()
JOBS = JobRegistry(is_alive=SESSIONS)


def register_session(token: str, session_id: str | None) -> None:
    """Tie a dashboard session token to its Streamlit session, so its owners are pruned once it ends."""
    SESSIONS.register(token, session_id)


def submit(request: Request, backbones: Mapping[BackboneRef, Backbone], owner: str | None = None) -> Job:
    """Start or attach to the evaluation job of ``request`` in the process-wide registry; when it replaces the
    owner's job over other eps of the same selection, it shows that job's rows until it has its own."""

    def make(old: BaseJob | None, delay: float) -> Job:
        fallback = old if isinstance(old, Job) and old.request.same_but_eps(request) else None
        return Job(request, backbones, start_delay=delay, fallback=fallback)

    return JOBS.submit(request, make, owner)  # type: ignore[return-value]
