"""The JSON-RPC endpoint: reads lines, dispatches them to ``m_<method>`` handlers, writes replies.

Shaped like python-lsp-jsonrpc's ``Endpoint(dispatcher, consumer)``: it knows framing (from
`smite.hostapi.protocol`) and dispatch, nothing about jobs or the engine, and imports only the
standard library, so `smite serve` can answer ``initialize`` before anything heavy is loaded.

Requests that read files (``segment``, ``learn``: manifests, plate folder listings) are answered on
a planner thread, never on the reader, so a huge inline shot or a slow file system cannot hold up
``status`` and ``cancel``. Replies may therefore come out of request order; clients match them by id.
At most `MAX_PLANS` requests wait for the planner; past that the request is answered SERVER_BUSY.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import queue
import sys
import threading
import traceback
from typing import Any, BinaryIO, Callable, Dict, Optional

from ..errors import SmiteError
from ..hostapi.protocol import (
    INTERNAL_ERROR, INVALID_PARAMS, LEARN, MAX_LINE_BYTES, METHOD_NOT_FOUND, METHODS, SEGMENT, SERVER_BUSY,
    LineReader, RpcError, check_request, decode, encode, error, notification, one_line, result,
)

log = logging.getLogger(__name__)

MAX_PLANS = 32  # segment/learn requests waiting for the planner thread
PLANNED = (SEGMENT, LEARN)  # methods that read files: planned off the reader thread

AfterAnswer = Callable[[str], None]  # called with the method name once its reply is written


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


def valid_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


class Endpoint:
    """Answers request lines with ``dispatcher.m_<method>(**params)``; all writes go through `send`.

    ``after_answer(method)`` runs on the answering thread right after the reply is written (the
    handlers use it to start the jobs a request created, so a client sees ``{job}`` before the
    job's progress). Writes to ``out`` are serialised by a lock, so the reader, the planner, the
    job worker and the log forwarder can all send.
    """

    def __init__(self, dispatcher: Any, out: BinaryIO, *, max_line: int = MAX_LINE_BYTES,
                 after_answer: Optional[AfterAnswer] = None) -> None:
        self.dispatcher = dispatcher
        self.out = out
        self.max_line = max_line
        self.after_answer = after_answer
        self.stopping = False  # set by `shutdown`: the read loop ends after the current line
        self._write_lock = threading.Lock()
        self._out_broken = False
        self._plans: "queue.Queue[Any]" = queue.Queue()
        self._planner = threading.Thread(target=self._plan_loop, name="smite-planner", daemon=True)
        self._planner.start()

    # --- writing -----------------------------------------------------------------------------

    def send(self, msg: Dict[str, Any]) -> None:
        """Write one message; never raises. A vanished client is remembered (the job still finishes cleanly)."""
        try:
            data = encode(msg)
        except Exception:  # noqa: BLE001 - unknown objects, NaN, nesting too deep: the writer must not fail
            try:
                data = encode(jsonable(msg))
            except Exception as exc:  # noqa: BLE001
                msg_id = msg.get("id") if isinstance(msg, dict) and valid_id(msg.get("id")) else None
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

    # --- reading and dispatch ----------------------------------------------------------------

    def read_loop(self, stream: BinaryIO) -> None:
        """Answer request lines from ``stream`` until `stopping` is set or the input ends."""
        reader = LineReader(stream, self.max_line)
        while not self.stopping:
            try:
                line = reader.read()
            except RpcError as exc:  # line over the limit: already skipped
                self.send(error(None, exc.code, exc.message, exc.data))
                continue
            if line is None:
                break
            self.handle_line(line)

    def handle_line(self, line: bytes) -> None:
        """Parse and answer one line (``segment``/``learn`` via the planner); never raises.

        Notifications get no reply (JSON-RPC 2.0).
        """
        msg_id: Any = None
        try:
            msg = decode(line)
            if isinstance(msg, dict) and valid_id(msg.get("id")):
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

    def dispatch(self, method: str, params: Dict[str, Any]) -> Any:
        """Call ``dispatcher.m_<method>(**params)``; unknown method or bad param names -> RpcError."""
        if method not in METHODS:
            raise RpcError(METHOD_NOT_FOUND, f"unknown method '{method}' (methods: {', '.join(METHODS)})",
                           {"method": method})
        handler = getattr(self.dispatcher, "m_" + method)
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

    def _answer(self, msg_id: Any, is_notification: bool, method: str, params: Dict[str, Any]) -> None:
        """Dispatch one checked request, send its reply, then run `after_answer`; never raises."""
        try:
            reply = result(msg_id, jsonable(self.dispatch(method, params)))
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
            if not isinstance(exc, (RpcError, SmiteError)):
                log.exception("internal error while handling a request")
            reply = {"jsonrpc": "2.0", "id": msg_id, "error": error_dict(exc)}
        if not is_notification:
            self.send(reply)
        if self.after_answer is not None:
            try:
                self.after_answer(method)
            except Exception:  # noqa: BLE001 - the reader must survive a hook bug
                log.exception("after-answer hook failed for '%s'", method)

    # --- the planner thread ------------------------------------------------------------------

    def _plan_loop(self) -> None:
        """The planner thread: answers ``segment``/``learn`` in arrival order until `close_planner`."""
        while True:
            item = self._plans.get()
            if item is None:
                return
            if isinstance(item, threading.Event):  # a marker from `drain_plans`
                item.set()
                continue
            self._answer(*item)
            item = None  # the request's params (a frame list can be megabytes) are not kept

    def drain_plans(self, timeout: float) -> None:
        """Wait (bounded) until the planner has answered every request queued before now."""
        if threading.current_thread() is self._planner or not self._planner.is_alive():
            return
        marker = threading.Event()
        self._plans.put(marker)
        marker.wait(timeout)

    def close_planner(self, timeout: float) -> None:
        """Answer the requests still waiting for the planner, then stop it (bounded wait)."""
        self._plans.put(None)
        if self._planner is not threading.current_thread():
            self._planner.join(timeout)


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
