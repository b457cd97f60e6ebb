"""`smite serve`: the JSON-RPC server hosts drive (one GPU job at a time, cancellable, streamed progress).

Shape borrowed from python-lsp-jsonrpc: the stream framing lives in `smite.hostapi.protocol`, this
module holds a dispatcher of thin ``m_<method>`` handlers and a job queue. Handlers only
validate and enqueue; a single worker thread runs engine calls, so a second request queues
instead of fighting the first for GPU memory, and ``status``/``cancel`` stay answerable while
a frame is computing. Each engine progress callback becomes a ``progress`` notification and
each finished job a ``done`` notification.

Requests that read files (``segment``, ``learn``: manifests, plate folder listings) are planned on a
planner thread, never on the reader, so a huge inline shot or a slow file system cannot hold up
``status`` and ``cancel``. Replies may therefore come out of request order; clients match them by id.
What the server holds is bounded: `MAX_PLANS` requests waiting to be planned, `MAX_JOBS` queued
jobs, `HISTORY` finished ones (whose engine call is dropped once done); past a bound the request is
answered with SERVER_BUSY.

The engine is imported lazily (inside the worker) so importing this module stays cheap and a
broken torch install is reported as an error reply, not a crash at start-up.
"""

from __future__ import annotations

import collections
import importlib
import inspect
import logging
import math
import os
import platform
import queue
import sys
import threading
import traceback
from typing import Any, BinaryIO, Callable, Deque, Dict, List, Optional

from . import __version__
from .errors import CancelledError, SmiteError
from .hostapi.protocol import (
    DONE, INTERNAL_ERROR, INVALID_PARAMS, LEARN, LOG, MAX_LINE_BYTES, METHOD_NOT_FOUND, METHODS, MISSING_MODEL,
    NOTIFICATIONS, PROGRESS, PROTOCOL_VERSION, SEGMENT, SERVER_BUSY,
    LineReader, RpcError, check_request, decode, encode, error, notification, one_line, result,
)

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
MAX_PLANS = 32  # segment/learn requests waiting for the planner thread
HISTORY_LIST_MAX = 1000  # longer frame lists in a finished job's `status` result are kept as a range string
PLANNED = (SEGMENT, LEARN)  # methods that read files: planned off the reader thread
SHUTDOWN_WAIT_S = 120.0  # how long shutdown waits for the running job to stop at a frame boundary


class Job:
    """One queued engine call; ``cancel`` is the event the engine checks between frames."""

    def __init__(self, job_id: str, method: str, run: Callable[["Job"], Any], info: Dict[str, Any]) -> None:
        self.id = job_id
        self.method = method
        self.run = run
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


def jsonable(value: Any) -> Any:
    """``value`` made safe for strict JSON: NaN/inf -> None, tuples -> lists, unknown objects -> str."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    return str(value)


def error_dict(exc: BaseException) -> Dict[str, Any]:
    """The ``{code, message, data}`` a failed call reports: SmiteError keeps its code and data."""
    if isinstance(exc, RpcError):
        return jsonable(exc.to_dict())
    if isinstance(exc, SmiteError):
        return {"code": exc.code, "message": one_line(exc), "data": jsonable({"type": type(exc).__name__, **exc.data})}
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {
        "code": INTERNAL_ERROR,
        "message": one_line(f"{type(exc).__name__}: {exc}"),
        "data": {"type": type(exc).__name__, "traceback": "".join(tb[-20:])},
    }


def _need(name: str, value: Any, kind: type, what: str) -> Any:
    """``value`` when it is a ``kind`` (bool is not an int here), else INVALID_PARAMS naming ``name``."""
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if not ok:
        raise RpcError(INVALID_PARAMS, f"param '{name}' must be {what}, got {type(value).__name__}", {"param": name})
    return value


class Server:
    """Dispatches requests read from ``serve(stream)`` and writes replies to ``out``.

    ``engine`` is any object with ``segment_shot`` and ``learn_parts`` (default: `smite.engine`,
    imported on first use); tests pass a fake one. Writes to ``out`` are serialised by a lock,
    so the reader loop, the worker and the log forwarder can all send.
    """

    def __init__(self, out: BinaryIO, engine: Any = None, *, max_line: int = MAX_LINE_BYTES,
                 shutdown_wait: float = SHUTDOWN_WAIT_S) -> None:
        self.out = out
        self.max_line = max_line
        self.shutdown_wait = shutdown_wait
        self._engine = engine
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: Deque[Job] = collections.deque()
        self._running: Optional[Job] = None
        self._jobs: Dict[str, Job] = {}
        self._history: Deque[str] = collections.deque()
        self._next_job = 1
        self._after_reply: List[Job] = []
        self._stopping = False
        self._out_broken = False
        self._local = threading.local()  # jobs created by the request this thread is answering
        self._plans: "queue.Queue[Any]" = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="smite-worker", daemon=True)
        self._worker.start()
        self._planner = threading.Thread(target=self._plan_loop, name="smite-planner", daemon=True)
        self._planner.start()

    # --- transport ---------------------------------------------------------------------------

    def send(self, msg: Dict[str, Any]) -> None:
        """Write one message; never raises. A vanished client is remembered (the job still finishes cleanly)."""
        try:
            data = encode(msg)
        except Exception:  # noqa: BLE001 - unknown objects, NaN, nesting too deep: the writer must not fail
            try:
                data = encode(jsonable(msg))
            except Exception as exc:  # noqa: BLE001
                msg_id = msg.get("id") if isinstance(msg, dict) and _valid_id(msg.get("id")) else None
                data = encode(error(msg_id, INTERNAL_ERROR, f"reply could not be encoded: {type(exc).__name__}"))
        with self._write_lock:
            if self._out_broken:
                return
            try:
                self.out.write(data)
                self.out.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._out_broken = True

    def notify(self, method: str, params: Dict[str, Any]) -> None:
        self.send(notification(method, params))

    def serve(self, stream: BinaryIO) -> int:
        """Answer requests until ``shutdown`` or end of input; returns the exit status (0)."""
        reader = LineReader(stream, self.max_line)
        while not self._stopping:
            try:
                line = reader.read()
            except RpcError as exc:  # line over the limit: already skipped
                self.send(error(None, exc.code, exc.message, exc.data))
                continue
            if line is None:
                break
            self.handle_line(line)
        self.close()
        return 0

    def handle_line(self, line: bytes) -> None:
        """Parse and answer one line (``segment``/``learn`` via the planner); never raises.

        Notifications get no reply (JSON-RPC 2.0).
        """
        msg_id: Any = None
        try:
            msg = decode(line)
            if isinstance(msg, dict) and _valid_id(msg.get("id")):
                msg_id = msg.get("id")
            _, method, params = check_request(msg)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply; the loop goes on
            self.send({"jsonrpc": "2.0", "id": msg_id, "error": error_dict(exc)})
            return
        is_notification = "id" not in msg
        if method in PLANNED:
            if self._plans.qsize() >= MAX_PLANS:
                if not is_notification:
                    self.send(error(msg_id, SERVER_BUSY, f"{MAX_PLANS} requests are already waiting to be planned; "
                                                         f"try again when some have been answered"))
                return
            self._plans.put((msg_id, is_notification, method, params))
            return
        self._answer(msg_id, is_notification, method, params)

    def _answer(self, msg_id: Any, is_notification: bool, method: str, params: Dict[str, Any]) -> None:
        """Dispatch one checked request, send its reply, then let the jobs it created run; never raises."""
        self._local.created = []
        try:
            reply = result(msg_id, jsonable(self.dispatch(method, params)))
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
            if not isinstance(exc, (RpcError, SmiteError)):
                log.exception("internal error while handling a request")
            reply = {"jsonrpc": "2.0", "id": msg_id, "error": error_dict(exc)}
        if not is_notification:
            self.send(reply)
        created, self._local.created = self._local.created, []
        self._release_jobs(created)

    def _plan_loop(self) -> None:
        """The planner thread: answers ``segment``/``learn`` in arrival order until `close`."""
        while True:
            item = self._plans.get()
            if item is None:
                return
            if isinstance(item, threading.Event):  # a marker from `_drain_plans`
                item.set()
                continue
            self._answer(*item)
            item = None  # the request's params (a frame list can be megabytes) are not kept

    def _drain_plans(self, timeout: float) -> None:
        """Wait (bounded) until the planner has answered every request queued before now."""
        if threading.current_thread() is self._planner or not self._planner.is_alive():
            return
        marker = threading.Event()
        self._plans.put(marker)
        marker.wait(timeout)

    def dispatch(self, method: str, params: Dict[str, Any]) -> Any:
        """Call ``m_<method>(**params)``; unknown method or bad param names -> RpcError."""
        if method not in METHODS:
            raise RpcError(METHOD_NOT_FOUND, f"unknown method '{method}' (methods: {', '.join(METHODS)})",
                           {"method": method})
        handler = getattr(self, "m_" + method)
        sig = inspect.signature(handler)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        for name, p in sig.parameters.items():
            if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD and name not in params:
                raise RpcError(INVALID_PARAMS, f"{method}: missing param '{name}'", {"param": name})
        if not takes_any:
            for name in params:
                if name not in sig.parameters:
                    raise RpcError(INVALID_PARAMS, f"{method}: unknown param '{name}'", {"param": name})
        return handler(**params)

    # --- handlers ----------------------------------------------------------------------------

    def m_initialize(self, **client_info: Any) -> Dict[str, Any]:
        """Versions, methods, backends, device: what a host needs to build its UI."""
        from .config import BACKENDS, Settings

        return {
            "protocol": PROTOCOL_VERSION,
            "server": {"name": "smite", "version": __version__, "pid": os.getpid(),
                       "python": platform.python_version()},
            "methods": list(METHODS),
            "notifications": list(NOTIFICATIONS),
            "backends": list(BACKENDS),
            "default_settings": Settings().to_dict(),
            "device": self._device_info(),
            "capabilities": {"cancel": True, "progress": True, "queue": True, "inline_shot": True,
                             "preview": True, "max_line": self.max_line},
        }

    def m_segment(self, shot: Any, out: Any, settings: Any = None, frames: Any = None,
                  preview: Any = False, force: Any = False, base_dir: Any = None) -> Dict[str, Any]:
        """Queue `engine.segment_shot`; replies at once with ``{job, queued}``."""
        from .io.sequence import MAX_FRAMES, check_output_pattern, parse_frame_range

        self._check_room()
        base = self._base_dir(base_dir)
        out_pattern = self._out_path(out, base)
        try:
            check_output_pattern(out_pattern)
        except SmiteError as exc:
            raise RpcError(exc.code, str(exc), {"param": "out"}) from None
        if isinstance(frames, list) and len(frames) > MAX_FRAMES:
            raise RpcError(INVALID_PARAMS, f"param 'frames' lists {len(frames)} frames; at most {MAX_FRAMES}",
                           {"param": "frames"})
        frame_list: Optional[List[int]] = None
        if frames is not None:
            if isinstance(frames, list) and all(isinstance(f, int) and not isinstance(f, bool) for f in frames):
                frame_list = sorted(set(frames))
            elif isinstance(frames, (str, int)) and not isinstance(frames, bool):
                try:
                    frame_list = parse_frame_range(str(frames))
                except SmiteError as exc:
                    raise RpcError(INVALID_PARAMS, f"param 'frames': {exc}", {"param": "frames"}) from None
            else:
                _need("frames", frames, str, 'a range string like "1001-1100" or a list of frames')
        spec = self._shot(shot, base)
        cfg = self._settings(settings)
        preview = _need("preview", preview, bool, "true or false")
        force = _need("force", force, bool, "true or false")
        self._preflight(spec, frame_list)

        def run(job: Job) -> Any:
            return self.engine().segment_shot(spec, out_pattern, cfg, frames=frame_list, preview=preview,
                                              force=force, progress=self._progress_cb(job), cancel=job.cancel)

        info = {"out": out_pattern, "frames": frames if frame_list is None else len(frame_list)}
        return self._submit(SEGMENT, run, info)

    def m_learn(self, shot: Any, out: Any, settings: Any = None, base_dir: Any = None) -> Dict[str, Any]:
        """Queue `engine.learn_parts`; replies at once with ``{job, queued}``."""
        self._check_room()
        base = self._base_dir(base_dir)
        spec = self._shot(shot, base)
        out_path = self._out_path(out, base)
        cfg = self._settings(settings)

        def run(job: Job) -> Any:
            learn_parts = getattr(self.engine(), "learn_parts", None)
            if learn_parts is None:
                raise RpcError(METHOD_NOT_FOUND, "this core's engine has no learn_parts (learn is not available)")
            return learn_parts(spec, out_path, cfg, progress=self._progress_cb(job), cancel=job.cancel)

        return self._submit(LEARN, run, {"out": out_path})

    def m_status(self, job: Any = None) -> Dict[str, Any]:
        """All known jobs (queued, running, recent finished), or one job with ``{job: id}``."""
        with self._cond:
            if job is not None:
                return {"job": self._job(job).to_dict()}
            return {
                "running": self._running.id if self._running else None,
                "queued": [j.id for j in self._queue],
                "jobs": [j.to_dict() for j in self._jobs.values()],
            }

    def m_cancel(self, job: Any) -> Dict[str, Any]:
        """Drop a queued job, or ask the running one to stop at its next frame boundary."""
        dropped = None
        with self._cond:
            target = self._job(job)
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

    def m_shutdown(self) -> Dict[str, Any]:
        """Cancel everything and stop reading; the process exits 0 once the running job has stopped.

        Requests sent before it are planned first (their jobs are then cancelled like any queued job).
        """
        self._drain_plans(self.shutdown_wait)
        self._stopping = True
        cancelled = self.cancel_all()
        return {"ok": True, "cancelled": cancelled}

    # --- jobs --------------------------------------------------------------------------------

    def engine(self) -> Any:
        """The engine module/object, imported on first use (a missing dependency -> MISSING_MODEL)."""
        if self._engine is None:
            try:
                self._engine = importlib.import_module("smite.engine")
            except ImportError as exc:
                raise RpcError(MISSING_MODEL, f"cannot import the SMITE engine: {exc}") from exc
        return self._engine

    def cancel_all(self) -> List[str]:
        """Cancel queued and running jobs; returns their ids."""
        with self._cond:
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

    def close(self, timeout: Optional[float] = None) -> None:
        """Answer the requests still being planned, cancel all jobs and wait (bounded) for the worker."""
        wait = self.shutdown_wait if timeout is None else timeout
        self._plans.put(None)
        if self._planner is not threading.current_thread():
            self._planner.join(wait)
        self._stopping = True
        self.cancel_all()
        with self._cond:
            self._cond.notify_all()
        self._worker.join(self.shutdown_wait if timeout is None else timeout)

    def _check_room(self) -> None:
        """SERVER_BUSY before any planning when the job queue is full (checked again at submit)."""
        with self._cond:
            if self._stopping:
                raise RpcError(SERVER_BUSY, "the server is shutting down")
            if len(self._queue) + len(self._after_reply) >= MAX_JOBS:
                raise RpcError(SERVER_BUSY, f"{MAX_JOBS} jobs are already queued; wait for some to finish "
                                            f"or cancel them")

    def _submit(self, method: str, run: Callable[[Job], Any], info: Dict[str, Any]) -> Dict[str, Any]:
        self._check_room()
        with self._cond:
            job = Job(f"job-{os.getpid()}-{self._next_job}", method, run, info)  # unique across restarts
            self._next_job += 1
            self._jobs[job.id] = job
            ahead = len(self._queue) + len(self._after_reply) + (1 if self._running else 0)
            # Enqueued only after the reply is written, so a client always sees {job} before its progress.
            self._after_reply.append(job)
        created = getattr(self._local, "created", None)
        if created is not None:
            created.append(job)
        return {"job": job.id, "queued": ahead}

    def _release_jobs(self, jobs: List[Job]) -> None:
        """Queue ``jobs`` (their reply has been sent); a job cancelled meanwhile is no longer waiting."""
        with self._cond:
            for job in jobs:
                if job in self._after_reply:
                    self._after_reply.remove(job)
                    self._queue.append(job)
            self._cond.notify_all()

    def _job(self, job_id: Any) -> Job:
        _need("job", job_id, str, "a job id string")
        try:
            return self._jobs[job_id]
        except KeyError:
            raise RpcError(INVALID_PARAMS, f"unknown job '{job_id}'", {"param": "job"}) from None

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
        self.notify(DONE, params)

    def _progress_cb(self, job: Job) -> Callable[[str, int, int, str], None]:
        def progress(stage: str, done: int, total: int, message: str = "") -> None:
            job.stage, job.done, job.total, job.message = str(stage), int(done), int(total), one_line(message)
            self.notify(PROGRESS, {"job": job.id, "stage": job.stage, "done": job.done, "total": job.total,
                                   "message": job.message})
        return progress

    def current_job_id(self) -> Optional[str]:
        """The running job's id when called from the worker thread (for log forwarding)."""
        if threading.current_thread() is self._worker and self._running is not None:
            return self._running.id
        return None

    # --- param parsing -----------------------------------------------------------------------

    @staticmethod
    def _base_dir(base_dir: Any) -> str:
        if base_dir is None:
            return os.getcwd()
        return os.path.abspath(_path_param("base_dir", _need("base_dir", base_dir, str, "a folder path")))

    @staticmethod
    def _shot(shot: Any, base: str) -> Any:
        from .config import ShotSpec, load_shot

        if isinstance(shot, str) and shot:
            return load_shot(os.path.join(base, os.path.expanduser(_path_param("shot", shot))))
        if isinstance(shot, dict):
            return ShotSpec.from_dict(shot, base, source="<inline shot>")
        raise RpcError(INVALID_PARAMS, f"param 'shot' must be a manifest path or a manifest object, "
                                       f"got {type(shot).__name__}", {"param": "shot"})

    @staticmethod
    def _out_path(out: Any, base: str) -> str:
        _need("out", out, str, "an output path")
        if not out:
            raise RpcError(INVALID_PARAMS, "param 'out' must be a non-empty path", {"param": "out"})
        _path_param("out", out)
        return os.path.normpath(os.path.join(base, os.path.expanduser(out)))

    @staticmethod
    def _settings(settings: Any) -> Any:
        from .config import Settings

        if settings is None:
            return Settings()
        _need("settings", settings, dict, "an object of settings")
        return Settings.from_dict(settings)

    @staticmethod
    def _preflight(spec: Any, frames: Optional[List[int]]) -> None:
        """Missing plate frames or reference files fail the request itself, before anything queues."""
        from .errors import BadInputError
        from .io.sequence import has_frame_token, require_frames

        if frames is not None:
            shot_frames = set(spec.frames)
            outside = next((f for f in frames if f not in shot_frames), None)
            if outside is not None:
                raise BadInputError(f"frame {outside} is outside the shot's frames {spec.to_dict()['frames']}",
                                    frame=outside)
        if has_frame_token(spec.plate):
            require_frames(spec.plate, list(spec.frames) if frames is None else frames)
        for ref in spec.references:
            for path in ([ref.labels] if ref.labels else []) + list(ref.masks.values()):
                if not os.path.isfile(path):
                    raise BadInputError(f"reference for frame {ref.frame} not found: {path}", frame=ref.frame)

    def _device_info(self) -> Dict[str, Any]:
        """The engine's own description when it has one, else what torch reports (imported here, lazily)."""
        describe = getattr(self._engine, "device_info", None) if self._engine is not None else None
        if describe is None and self._engine is None:
            try:
                describe = getattr(self.engine(), "device_info", None)
            except RpcError as exc:
                return {"type": "unknown", "error": exc.message}
        if describe is not None:
            return jsonable(describe())
        try:
            import torch
        except ImportError as exc:
            return {"type": "unknown", "error": one_line(exc)}
        if torch.cuda.is_available():
            return {"type": "cuda", "name": torch.cuda.get_device_name(0), "torch": torch.__version__}
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return {"type": "mps", "name": "Apple GPU", "torch": torch.__version__}
        return {"type": "cpu", "name": platform.processor() or platform.machine(), "torch": torch.__version__}


def _valid_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _path_param(name: str, value: str) -> str:
    """``value`` when the file system can spell it; a lone surrogate or NUL -> INVALID_PARAMS naming ``name``."""
    try:
        encoded = os.fsencode(value)
    except UnicodeEncodeError:
        raise RpcError(INVALID_PARAMS, f"param '{name}' is not a valid path (it holds a lone UTF-16 surrogate)",
                       {"param": name}) from None
    if b"\0" in encoded:
        raise RpcError(INVALID_PARAMS, f"param '{name}' is not a valid path (it holds a NUL character)",
                       {"param": name})
    return value


def _compact(value: Any) -> Any:
    """``value`` with integer lists longer than `HISTORY_LIST_MAX` spelled as frame-range strings."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if (isinstance(value, list) and len(value) > HISTORY_LIST_MAX
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        from .io.sequence import format_frame_range

        return format_frame_range(value)
    return value


class LogForwarder(logging.Handler):
    """Sends ``smite`` log records to the client as ``log`` notifications (tagged with the running job)."""

    def __init__(self, server: Server, level: int = logging.INFO) -> None:
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


def protect_stdout() -> BinaryIO:
    """Move the protocol to a private duplicate of fd 1 and send fd 1 (and ``sys.stdout``) to stderr.

    C libraries and stray ``print`` calls write to fd 1 / ``sys.stdout``; after this they land on
    stderr, which the client drains for diagnostics, and can never corrupt the message stream.
    """
    sys.stdout.flush()
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "wb")
