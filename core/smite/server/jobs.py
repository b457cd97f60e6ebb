"""The server's job queue: one worker thread runs engine calls, one at a time, each cancellable.

A second request queues instead of fighting the first for GPU memory, and ``status``/``cancel``
stay answerable while a frame is computing. Each job's progress callback becomes a ``progress``
notification and its end a ``done`` notification. What the queue holds is bounded: `MAX_JOBS`
queued jobs and `HISTORY` finished ones (whose engine call is dropped once done).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import traceback
from typing import Any, Callable, Deque, Dict, List, Optional

from ..errors import CancelledError, SmiteError
from ..hostapi.protocol import DONE, INVALID_PARAMS, LOG, PROGRESS, SERVER_BUSY, RpcError, one_line
from .endpoint import error_dict, jsonable

log = logging.getLogger(__name__)

# Job states, in the order a job goes through them.
QUEUED = "queued"
RUNNING = "running"
CANCELLING = "cancelling"
FINISHED = "done"
FAILED = "failed"
CANCELLED = "cancelled"
FINAL_STATES = (FINISHED, FAILED, CANCELLED)

HISTORY = 100  # finished jobs kept for `status`; older ones are forgotten
MAX_JOBS = 16  # jobs waiting to run; a host queues a few shots, never hundreds
HISTORY_LIST_MAX = 1000  # longer frame lists in a finished job's `status` result are kept as a range string

Notify = Callable[[str, Dict[str, Any]], None]
ProgressFn = Callable[[str, int, int, str], None]


class Job:
    """One queued engine call; ``cancel`` is the event the engine checks between frames."""

    def __init__(self, job_id: str, method: str, run: Callable[["Job"], Any], info: Dict[str, Any]) -> None:
        self.id = job_id
        self.method = method
        self.run: Optional[Callable[["Job"], Any]] = run
        self.info = info  # what the job writes (out, frames): shown by `status`
        self.state = QUEUED
        self.cancel = threading.Event()
        self.stage = ""
        self.done = 0
        self.total = 0
        self.message = ""
        self.result: Any = None
        self.error: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "job": self.id, "method": self.method, "state": self.state,
            "stage": self.stage, "done": self.done, "total": self.total, "message": self.message,
        }
        out.update(self.info)
        if self.state == FINISHED:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


class JobQueue:
    """Jobs from submission to ``done``; ``notify(method, params)`` sends the notifications.

    A submitted job waits in a per-thread list until `release_mine` is called by the thread that
    answered the request, after its reply is written, so a client always sees ``{job}`` first.
    """

    def __init__(self, notify: Notify) -> None:
        self._notify = notify
        self._cond = threading.Condition()
        self._queue: Deque[Job] = collections.deque()
        self._running: Optional[Job] = None
        self._jobs: Dict[str, Job] = {}
        self._history: Deque[str] = collections.deque()
        self._next_job = 1
        self._after_reply: List[Job] = []
        self._stopping = False
        self._local = threading.local()  # jobs created by the request this thread is answering
        self._worker = threading.Thread(target=self._work, name="smite-worker", daemon=True)
        self._worker.start()

    # --- submitting --------------------------------------------------------------------------

    def check_room(self) -> None:
        """SERVER_BUSY when shutting down or when the queue is full (checked again at `submit`)."""
        with self._cond:
            if self._stopping:
                raise RpcError(SERVER_BUSY, "the server is shutting down")
            if len(self._queue) + len(self._after_reply) >= MAX_JOBS:
                raise RpcError(SERVER_BUSY, f"{MAX_JOBS} jobs are already queued; wait for some to finish "
                                            f"or cancel them")

    def submit(self, method: str, run: Callable[[Job], Any], info: Dict[str, Any]) -> Dict[str, Any]:
        """Create a job that runs ``run(job)`` on the worker; ``{job, queued}`` (how many are ahead)."""
        self.check_room()
        with self._cond:
            job = Job(f"job-{os.getpid()}-{self._next_job}", method, run, info)  # unique across restarts
            self._next_job += 1
            self._jobs[job.id] = job
            ahead = len(self._queue) + len(self._after_reply) + (1 if self._running else 0)
            self._after_reply.append(job)
        created = getattr(self._local, "created", None)
        if created is None:
            created = self._local.created = []
        created.append(job)
        return {"job": job.id, "queued": ahead}

    def release_mine(self) -> None:
        """Queue the jobs this thread's request created (its reply is written); a cancelled one is not waiting."""
        created = getattr(self._local, "created", None)
        if not created:
            return
        self._local.created = []
        with self._cond:
            for job in created:
                if job in self._after_reply:
                    self._after_reply.remove(job)
                    self._queue.append(job)
            self._cond.notify_all()

    # --- looking and cancelling ---------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise RpcError(INVALID_PARAMS, f"unknown job '{job_id}'", {"param": "job"}) from None

    def status(self, job_id: Optional[str] = None) -> Dict[str, Any]:
        """One job ``{job: {...}}``, or all known ones with the running and queued ids."""
        with self._cond:
            if job_id is not None:
                return {"job": self.get(job_id).to_dict()}
            return {
                "running": self._running.id if self._running else None,
                "queued": [j.id for j in self._queue],
                "jobs": [j.to_dict() for j in self._jobs.values()],
            }

    def cancel(self, job_id: str) -> Dict[str, Any]:
        """Drop a queued job, or ask the running one to stop at its next frame boundary."""
        dropped = None
        with self._cond:
            target = self.get(job_id)
            if target.state == QUEUED:
                if target in self._queue:
                    self._queue.remove(target)
                if target in self._after_reply:
                    self._after_reply.remove(target)
                target.cancel.set()
                dropped = target
            elif target.state in (RUNNING, CANCELLING):
                target.cancel.set()
                target.state = CANCELLING
            state = target.state
        if dropped is not None:
            self._finish(dropped, CancelledError(f"job {dropped.id} cancelled before it started"))
            state = dropped.state
        return {"job": target.id, "state": state}

    def cancel_all(self, *, stop: bool = False) -> List[str]:
        """Cancel queued and running jobs (``stop``: and accept no more); returns their ids."""
        with self._cond:
            if stop:
                self._stopping = True
            queued = list(self._queue) + list(self._after_reply)
            self._queue.clear()
            self._after_reply.clear()
            running = self._running
            if running is not None:
                running.cancel.set()
                running.state = CANCELLING
        for job in queued:
            job.cancel.set()
            self._finish(job, CancelledError(f"job {job.id} cancelled before it started"))
        return [j.id for j in queued] + ([running.id] if running is not None else [])

    def close(self, timeout: float) -> None:
        """Cancel everything, accept nothing more, and wait (bounded) for the running job to stop."""
        self.cancel_all(stop=True)
        with self._cond:
            self._cond.notify_all()
        self._worker.join(timeout)

    def current_job_id(self) -> Optional[str]:
        """The running job's id when called from the worker thread (for log forwarding)."""
        if threading.current_thread() is self._worker and self._running is not None:
            return self._running.id
        return None

    def progress_cb(self, job: Job) -> ProgressFn:
        """The engine's progress callback for ``job``: records it and sends a ``progress`` notification."""
        def progress(stage: str, done: int, total: int, message: str = "") -> None:
            job.stage, job.done, job.total, job.message = str(stage), int(done), int(total), one_line(message)
            self._notify(PROGRESS, {"job": job.id, "stage": job.stage, "done": job.done, "total": job.total,
                                    "message": job.message})
        return progress

    # --- the worker thread -------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                job.state = RUNNING
                self._running = job
            try:
                if job.cancel.is_set():
                    raise CancelledError(f"job {job.id} cancelled before it started")
                value: Any = job.run(job)
            except BaseException as exc:  # noqa: BLE001 - a job failure must never kill the worker
                if not isinstance(exc, (SmiteError, RpcError)):
                    log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                outcome: Any = exc
            else:
                outcome = value
            with self._cond:
                self._running = None
            self._finish(job, outcome)
            job = value = outcome = None  # nothing of a finished job stays alive in this frame

    def _finish(self, job: Job, outcome: Any) -> None:
        """Record the job's end and send ``done``: ``outcome`` is the result or the exception.

        The engine call (which holds the shot and its frame list) is dropped, and the result kept for
        `status` has long frame lists folded to range strings, so history stays small.
        """
        job.run = None
        if isinstance(outcome, BaseException):
            job.error = error_dict(outcome)
            job.state = CANCELLED if isinstance(outcome, CancelledError) else FAILED
            params: Dict[str, Any] = {"job": job.id, "error": job.error}
        else:
            full = jsonable(outcome)
            job.result = _compact(full)
            job.state = FINISHED
            params = {"job": job.id, "result": full}
        with self._cond:
            self._history.append(job.id)
            while len(self._history) > HISTORY:
                self._jobs.pop(self._history.popleft(), None)
        self._notify(DONE, params)


def _compact(value: Any) -> Any:
    """``value`` with integer lists longer than `HISTORY_LIST_MAX` spelled as frame-range strings."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if (isinstance(value, list) and len(value) > HISTORY_LIST_MAX
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        from ..io.sequence import format_frame_range

        return format_frame_range(value)
    return value


class LogForwarder(logging.Handler):
    """Sends ``smite`` log records to the client as ``log`` notifications (tagged with the running job).

    ``server`` is anything with ``notify(method, params)`` and ``current_job_id()``.
    """

    def __init__(self, server: Any, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.server = server

    def emit(self, record: logging.LogRecord) -> None:
        try:
            params: Dict[str, Any] = {"level": record.levelname.lower(), "message": one_line(record.getMessage()),
                                      "logger": record.name}
            job = self.server.current_job_id()
            if job is not None:
                params["job"] = job
            self.server.notify(LOG, params)
        except Exception:  # logging must never break a job
            self.handleError(record)
