"""Start a `smite serve` process and talk to it (standard library only, Python 3.9+).

Hosts (Nuke, Blender) import this in their own interpreter, which has no torch or numpy, so
the heavy core runs in its venv as a subprocess and we speak JSON-RPC over its pipes.

Threads: one reader thread demultiplexes replies (matched to waiting `call`s by id) and
notifications (routed to job records by ``job``); one thread drains stderr into a bounded
deque, so a crash can be reported with its last lines. Every public method may be called
from any thread (a host UI thread included); callbacks run on the reader thread, so a host
must hop to its UI thread itself (``nuke.executeInMainThread``, a Blender timer).

Typical use::

    client = SmiteClient(python="/path/to/core/.venv/bin/python").start()
    client.initialize()
    job = client.submit("segment", {"shot": "shot.json", "out": "mattes.####.exr"}, on_progress=print)
    result = client.wait(job)          # raises RpcError on failure, ServerDiedError on a crash
    client.shutdown()
"""

from __future__ import annotations

import collections
import itertools
import os
import subprocess
import sys
import threading
from typing import Any, Callable, Deque, Dict, List, Optional

from .locate import core_environment
from .protocol import (
    CANCEL, CANCELLED, DONE, INITIALIZE, INTERNAL_ERROR, INVALID_PARAMS, LOG, MAX_LINE_BYTES, PROGRESS,
    PROTOCOL_VERSION, SHUTDOWN, STATUS, LineReader, RpcError, decode, encode, is_response, request,
)

__all__ = ["SmiteClient", "ServerDiedError", "RpcError"]

Callback = Callable[[Dict[str, Any]], None]
STDERR_LINES = 200  # lines of server stderr kept for crash reports


class ServerDiedError(RpcError):
    """The server process ended while calls or jobs were outstanding (or before a call was sent).

    ``stderr_tail`` holds its last stderr lines (a Python traceback ends there); the message is
    one line: the exit status and the last non-empty stderr line.
    """

    def __init__(self, message: str, returncode: Optional[int] = None, stderr_tail: Optional[List[str]] = None) -> None:
        self.returncode = returncode
        self.stderr_tail = list(stderr_tail or [])
        super().__init__(INTERNAL_ERROR, message, {"returncode": returncode, "stderr": self.stderr_tail})


class _Pending:
    """A call waiting for its reply; ``hook`` runs on the reader thread before later messages are read."""

    __slots__ = ("event", "reply", "hook")

    def __init__(self, hook: Optional[Callable[[Any], None]] = None) -> None:
        self.event = threading.Event()
        self.reply: Any = None
        self.hook = hook


class _JobRecord:
    """What the client knows about one server job."""

    def __init__(self, job_id: str, conn: "_Connection", on_progress: Optional[Callback],
                 on_log: Optional[Callback], queued: Any) -> None:
        self.id = job_id
        self.conn = conn
        self.on_progress = on_progress
        self.on_log = on_log
        self.queued = queued
        self.state = "queued"
        self.progress: Optional[Dict[str, Any]] = None
        self.result: Any = None
        self.error: Optional[RpcError] = None
        self.finished = threading.Event()

    def snapshot(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"job": self.id, "state": self.state, "progress": self.progress}
        if self.finished.is_set():
            out["result"] = self.result
            out["error"] = self.error.to_dict() if self.error is not None else None
        return out


class _Connection:
    """One server process and its two reader threads; dead for good once its stdout closes."""

    def __init__(self, command: List[str], env: Dict[str, str], cwd: Optional[str], stderr_lines: int,
                 on_message: Callable[["_Connection", Dict[str, Any]], None],
                 on_exit: Callable[["_Connection"], None], echo_stderr: bool) -> None:
        flags = 0x08000000 if os.name == "nt" else 0  # CREATE_NO_WINDOW: no console flashing up on Windows
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=cwd, creationflags=flags)
        self.stderr: Deque[str] = collections.deque(maxlen=stderr_lines)
        self.pending: Dict[int, _Pending] = {}
        self.died: Optional[ServerDiedError] = None
        self.closing = False
        self.write_lock = threading.Lock()
        self._on_message = on_message
        self._on_exit = on_exit
        self._echo = echo_stderr
        self.stderr_thread = threading.Thread(target=self._drain_stderr, name="smite-client-stderr", daemon=True)
        self.reader_thread = threading.Thread(target=self._read, name="smite-client-reader", daemon=True)
        self.stderr_thread.start()
        self.reader_thread.start()

    def send(self, msg: Dict[str, Any]) -> None:
        data = encode(msg)
        with self.write_lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def _drain_stderr(self) -> None:
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stderr.append(line)
            if self._echo:
                sys.__stderr__.write(line + "\n")

    def _read(self) -> None:
        reader = LineReader(self.proc.stdout, MAX_LINE_BYTES)
        try:
            while True:
                try:
                    line = reader.read()
                except RpcError as exc:
                    self.stderr.append(f"[client] dropped a reply: {exc.message}")
                    continue
                if line is None:
                    break
                try:
                    msg = decode(line)
                except RpcError as exc:
                    self.stderr.append(f"[client] unreadable line from server: {exc.message}")
                    continue
                if isinstance(msg, dict):
                    self._on_message(self, msg)
        except (OSError, ValueError):
            pass
        finally:
            self._on_exit(self)


class SmiteClient:
    """Owns a `smite serve` subprocess; thread-safe; `start()` again after a crash starts a fresh one.

    ``python`` is the core venv's interpreter (default: this one); ``args`` replace the default
    ``["-m", "smite", "serve"]``; ``env`` entries are added to the inherited environment, from which
    PYTHONHOME/PYTHONPATH are removed (a host's embedded-Python settings would break the venv);
    ``core`` (the core's source folder) goes on its ``PYTHONPATH`` (`locate.core_environment`).
    """

    def __init__(self, python: Optional[str] = None, args: Optional[List[str]] = None,
                 env: Optional[Dict[str, str]] = None, *, core: str = "", cwd: Optional[str] = None,
                 stderr_lines: int = STDERR_LINES, echo_stderr: bool = False,
                 on_log: Optional[Callback] = None) -> None:
        self.command = [python or sys.executable] + list(args if args is not None else ["-m", "smite", "serve"])
        self.env = dict(env or {})
        self.core = core
        self.cwd = cwd
        self.stderr_lines = stderr_lines
        self.echo_stderr = echo_stderr
        self.on_log = on_log  # log notifications that belong to no submitted job
        self.server_info: Optional[Dict[str, Any]] = None
        self._lock = threading.RLock()
        self._conn: Optional[_Connection] = None
        self._ids = itertools.count(1)
        self._jobs: Dict[str, _JobRecord] = {}

    # --- process -----------------------------------------------------------------------------

    def start(self) -> "SmiteClient":
        """Start the server unless one is running; returns self."""
        with self._lock:
            if self.alive:
                return self
            env = core_environment(self.core, extra=self.env)
            env.setdefault("PYTHONUNBUFFERED", "1")
            self._conn = _Connection(self.command, env, self.cwd, self.stderr_lines,
                                     self._on_message, self._on_exit, self.echo_stderr)
            self.server_info = None
            return self

    @property
    def alive(self) -> bool:
        conn = self._conn
        return conn is not None and conn.died is None and not conn.closing and conn.proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self._conn.proc.pid if self._conn is not None else None

    def stderr_tail(self, lines: Optional[int] = None) -> List[str]:
        """The last ``lines`` lines the server wrote to stderr (all that are kept by default)."""
        conn = self._conn
        tail = list(conn.stderr) if conn is not None else []
        return tail if lines is None else tail[-lines:]

    def shutdown(self, timeout: float = 30.0) -> Optional[int]:
        """Ask the server to cancel and exit, then wait (terminate/kill if it will not); returns its exit status."""
        with self._lock:  # never hold the lock while waiting: the reader thread needs it to deliver the reply
            conn = self._conn
            if conn is None:
                return None
            was_alive = self.alive
        if was_alive:
            try:
                self._call(conn, SHUTDOWN, {}, timeout)
            except (RpcError, TimeoutError, OSError):
                pass
        conn.closing = True
        try:
            conn.proc.stdin.close()
        except OSError:
            pass
        try:
            conn.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            conn.proc.terminate()
            try:
                conn.proc.wait(5)
            except subprocess.TimeoutExpired:
                conn.proc.kill()
                conn.proc.wait()
        conn.reader_thread.join(5)
        conn.stderr_thread.join(5)
        return conn.proc.returncode

    def __enter__(self) -> "SmiteClient":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # --- requests ----------------------------------------------------------------------------

    def initialize(self, **client_info: Any) -> Dict[str, Any]:
        """Handshake: the server's versions, backends, device and capabilities (kept in ``server_info``)."""
        info = {"protocol": PROTOCOL_VERSION, "client": "smite.client", "python": sys.version.split()[0]}
        info.update(client_info)
        self.server_info = self.call(INITIALIZE, info)
        return self.server_info

    def call(self, method: str, params: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Send a request and wait for its result; RpcError carries the server's code and message.

        Raises TimeoutError when no reply comes within ``timeout`` seconds, ServerDiedError when the
        server is gone. Starts the server if it was never started.
        """
        return self._call(self._connection(), method, params or {}, timeout)

    def submit(self, method: str, params: Dict[str, Any], on_progress: Optional[Callback] = None,
               on_log: Optional[Callback] = None) -> str:
        """Queue a job (``segment``/``learn``); returns its id at once.

        ``on_progress({job, stage, done, total, message})`` and ``on_log({level, message, job})`` run
        on the reader thread; they are registered before any of the job's notifications are read.
        """
        conn = self._connection()

        def register(value: Any) -> None:
            if isinstance(value, dict) and isinstance(value.get("job"), str):
                with self._lock:
                    self._jobs[value["job"]] = _JobRecord(value["job"], conn, on_progress, on_log, value.get("queued"))

        value = self._call(conn, method, params, None, hook=register)
        if not isinstance(value, dict) or not isinstance(value.get("job"), str):
            raise RpcError(INTERNAL_ERROR, f"'{method}' did not return a job id: {value!r}")
        return value["job"]

    def wait(self, job_id: str, timeout: Optional[float] = None) -> Any:
        """Block until the job ends; its result, or RpcError (code CANCELLED when cancelled)."""
        record = self._record(job_id)
        if not record.finished.wait(timeout):
            raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
        if record.error is not None:
            raise record.error
        return record.result

    def poll(self, job_id: str) -> Dict[str, Any]:
        """Non-blocking view for UI timers: ``{job, state, progress[, result, error]}``."""
        return self._record(job_id).snapshot()

    def cancel(self, job_id: str, timeout: Optional[float] = 30.0) -> Dict[str, Any]:
        """Cancel a queued or running job; ``wait`` then raises RpcError with code CANCELLED."""
        return self.call(CANCEL, {"job": job_id}, timeout)

    def status(self, timeout: Optional[float] = 30.0) -> Dict[str, Any]:
        return self.call(STATUS, {}, timeout)

    # --- internals ---------------------------------------------------------------------------

    def _connection(self) -> _Connection:
        with self._lock:
            if self._conn is None:
                self.start()
            conn = self._conn
            assert conn is not None
            if conn.died is not None:
                raise conn.died
            if conn.closing:
                raise ServerDiedError("the smite server was shut down; call start() for a new one")
            return conn

    def _call(self, conn: _Connection, method: str, params: Dict[str, Any], timeout: Optional[float],
              hook: Optional[Callable[[Any], None]] = None) -> Any:
        pending = _Pending(hook)
        with self._lock:
            if conn.died is not None:
                raise conn.died
            msg_id = next(self._ids)
            conn.pending[msg_id] = pending
        try:
            conn.send(request(msg_id, method, params))
        except (OSError, ValueError):  # broken pipe: the reader thread will see EOF and say why
            conn.reader_thread.join(10)
            with self._lock:
                conn.pending.pop(msg_id, None)
            raise conn.died or ServerDiedError(f"cannot send '{method}': the smite server is gone") from None
        if not pending.event.wait(timeout):
            with self._lock:
                conn.pending.pop(msg_id, None)
            raise TimeoutError(f"no reply to '{method}' within {timeout} s")
        reply = pending.reply
        if isinstance(reply, RpcError):
            raise reply
        if "error" in reply:
            raise RpcError.from_dict(reply["error"])
        return reply.get("result")

    def _record(self, job_id: str) -> _JobRecord:
        with self._lock:
            record = self._jobs.get(job_id)
        if record is None:
            raise RpcError(INVALID_PARAMS, f"unknown job '{job_id}'", {"param": "job"})
        return record

    def _on_message(self, conn: _Connection, msg: Dict[str, Any]) -> None:
        """Reader thread: route one message. Callback errors are noted on stderr's tail, never raised."""
        if is_response(msg):
            with self._lock:
                pending = conn.pending.pop(msg.get("id"), None)
            if pending is None:
                return
            if pending.hook is not None and "result" in msg:
                pending.hook(msg["result"])
            pending.reply = msg
            pending.event.set()
            return
        method, params = msg.get("method"), msg.get("params")
        if not isinstance(params, dict):
            return
        with self._lock:
            record = self._jobs.get(params.get("job")) if isinstance(params.get("job"), str) else None
        callback: Optional[Callback] = None
        if method == PROGRESS and record is not None:
            record.progress = params
            if record.state == "queued":
                record.state = "running"
            callback = record.on_progress
        elif method == LOG:
            callback = (record.on_log if record is not None else None) or self.on_log
        elif method == DONE and record is not None:
            if "error" in params:
                record.error = RpcError.from_dict(params["error"])
                record.state = "cancelled" if record.error.code == CANCELLED else "failed"
            else:
                record.result = params.get("result")
                record.state = "done"
            record.finished.set()
        if callback is not None:
            try:
                callback(params)
            except Exception as exc:  # a host bug must not kill the reader thread
                conn.stderr.append(f"[client] {method} callback raised {type(exc).__name__}: {exc}")

    def _on_exit(self, conn: _Connection) -> None:
        """Reader thread, stdout closed: fail whatever still waits, with the server's last words."""
        try:
            returncode = conn.proc.wait(10)
        except subprocess.TimeoutExpired:
            returncode = None
        conn.stderr_thread.join(5)
        tail = list(conn.stderr)
        last = next((line.strip() for line in reversed(tail) if line.strip()), "")
        if conn.closing:
            message = f"the smite server was shut down (exit status {returncode})"
        else:
            message = f"the smite server exited with status {returncode}" + (f": {last}" if last else "")
        died = ServerDiedError(message, returncode, tail[-20:])
        with self._lock:
            conn.died = died
            pending = list(conn.pending.values())
            conn.pending.clear()
            records = [r for r in self._jobs.values() if r.conn is conn and not r.finished.is_set()]
        for p in pending:
            p.reply = died
            p.event.set()
        for r in records:
            r.error = died
            r.state = "failed"
            r.finished.set()
