"""What jobs share across sessions: the device lock (one evaluation step at a time) and the
liveness of Streamlit sessions (so that the jobs of a closed browser tab are not kept alive)."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

DEVICE_POLL_S = 0.25  # how often a job waiting for the device refreshes its status and checks for cancel


class DeviceLock:
    """The (shared) backbone device, held by one job for one step at a time.

    Waiting jobs are served first come, first served, so the steps of concurrent jobs
    interleave instead of one job running to its end while the others queue. The lock
    knows which job holds it, so a waiting job can say whose progress it waits for.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._holder: object | None = None

    @property
    def holder(self) -> object | None:
        """The job that holds the device now, or None."""
        with self._cond:
            return self._holder

    def acquire(self, job: object, timeout: float | None = None) -> bool:
        """Queue ``job`` (once) and wait up to ``timeout`` for its turn; True once it holds the device.

        A job that timed out keeps its place in the queue; :meth:`withdraw` gives it up.
        """
        with self._cond:
            if not any(j is job for j in self._queue):
                self._queue.append(job)
            turn = self._cond.wait_for(lambda: self._holder is None and self._queue[0] is job, timeout)
            if turn:
                self._queue.popleft()
                self._holder = job
            return turn

    def release(self, job: object) -> None:
        with self._cond:
            if self._holder is not job:
                raise RuntimeError("the device is not held by this job")
            self._holder = None
            self._cond.notify_all()

    def withdraw(self, job: object) -> None:
        """Leave the queue without taking the device (a cancelled job)."""
        with self._cond:
            self._queue = deque(j for j in self._queue if j is not job)
            self._cond.notify_all()


DEVICE_LOCK = DeviceLock()  # one evaluation step at a time on the (shared) backbone device


class StreamlitSessions:
    """Which Streamlit session each dashboard session token belongs to: the owners' liveness check.

    Called with an owner key ``"{session_token}:{slot}"``, it is False only when the token's
    registered Streamlit session is known to have ended. An unregistered token, or no
    Streamlit runtime (AppTest, plain Python), counts as alive. Ended tokens are remembered
    (a bounded number) so that every slot of an ended session is recognised.
    """

    def __init__(self, remember_ended: int = 1024) -> None:
        self._ids: dict[str, str] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._remember_ended = remember_ended
        self._lock = threading.Lock()

    def register(self, token: str, session_id: str | None) -> None:
        """Remember that ``token`` belongs to the Streamlit session ``session_id`` (None: unknown)."""
        if not session_id:
            return
        with self._lock:
            self._ids[token] = session_id
            self._ended.pop(token, None)

    def __call__(self, owner: str) -> bool:
        token = owner.split(":", 1)[0]
        with self._lock:
            if token in self._ended:
                return False
            session_id = self._ids.get(token)
        if session_id is None or _session_active(session_id) is not False:
            return True
        with self._lock:
            if self._ids.get(token) == session_id:
                del self._ids[token]
                self._ended[token] = None
                while len(self._ended) > self._remember_ended:
                    self._ended.popitem(last=False)
        return False


def _session_active(session_id: str) -> bool | None:
    """Whether Streamlit's runtime has ``session_id`` as an active session; None when it cannot tell."""
    try:
        from streamlit import runtime

        if not runtime.exists():
            return None
        active = runtime.get_instance().is_active_session(session_id)
    except Exception:  # noqa: BLE001 - no runtime, or one that cannot answer: assume the session lives
        return None
    return active if isinstance(active, bool) else None


def always_alive(owner: str) -> bool:
    return True
