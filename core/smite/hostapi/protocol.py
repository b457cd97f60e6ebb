"""JSON-RPC 2.0 over a byte stream: one JSON object per line (standard library only).

Hosts (Nuke 14+ on Python 3.9, Blender) import this module, so it must never pull numpy,
torch or OIIO, and must stay 3.9-compatible. The server and the client share it, so both
sides agree on framing, method names and error codes by construction.

Messages are plain dicts; the helpers below build the four shapes (request, notification,
result, error) so nobody hand-writes ``"jsonrpc": "2.0"``.
"""

from __future__ import annotations

import json
from typing import Any, BinaryIO, Iterator, Optional

from .errorcodes import (  # re-exported: hosts read codes from here
    BAD_INPUT,
    CANCELLED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_MODEL,
    OUT_OF_MEMORY,
    OUTPUT_ERROR,
    PARSE_ERROR,
    SERVER_BUSY,
    SMITE_ERROR,
)

__all__ = [
    "PROTOCOL_VERSION", "MAX_LINE_BYTES",
    "INITIALIZE", "LEARN", "SEGMENT", "STATUS", "CANCEL", "SHUTDOWN", "METHODS",
    "PROGRESS", "LOG", "DONE", "NOTIFICATIONS",
    "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS", "INTERNAL_ERROR",
    "SMITE_ERROR", "BAD_INPUT", "OUTPUT_ERROR", "MISSING_MODEL", "OUT_OF_MEMORY", "CANCELLED", "SERVER_BUSY",
    "RpcError", "LineTooLongError", "LineReader",
    "encode", "decode", "request", "notification", "result", "error", "one_line",
    "is_response", "check_request",
]

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 16 * 1024 * 1024  # a message carries paths and numbers, never pixels: 16 MiB is generous

# Requests (client -> server).
INITIALIZE = "initialize"
LEARN = "learn"
SEGMENT = "segment"
STATUS = "status"
CANCEL = "cancel"
SHUTDOWN = "shutdown"
METHODS = (INITIALIZE, LEARN, SEGMENT, STATUS, CANCEL, SHUTDOWN)

# Notifications (server -> client).
PROGRESS = "progress"  # {job, stage, done, total, message}
LOG = "log"  # {level, message[, job]}
DONE = "done"  # {job, result} or {job, error: {code, message, data}}
NOTIFICATIONS = (PROGRESS, LOG, DONE)


def one_line(text: object) -> str:
    """``text`` with all whitespace runs (newlines included) folded to single spaces."""
    return " ".join(str(text).split())


class RpcError(Exception):
    """A JSON-RPC error: raised by handlers on the server, re-raised by the client.

    ``message`` is one line naming the bad field, file or frame; ``data`` holds details.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = int(code)
        self.message = one_line(message)
        self.data = data
        super().__init__(self.message)

    def to_dict(self) -> dict:
        """The JSON-RPC ``error`` object."""
        out = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out

    @classmethod
    def from_dict(cls, obj: Any) -> "RpcError":
        """Rebuild from an ``error`` object; tolerate a malformed one rather than fail twice."""
        if not isinstance(obj, dict):
            return cls(INTERNAL_ERROR, f"malformed error object: {obj!r}")
        code = obj.get("code", INTERNAL_ERROR)
        if isinstance(code, bool) or not isinstance(code, int):
            code = INTERNAL_ERROR
        return cls(code, str(obj.get("message", "")), obj.get("data"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r})"


class LineTooLongError(RpcError):
    """A line exceeded the reader's limit; the rest of it has already been skipped."""

    def __init__(self, limit: int) -> None:
        super().__init__(INVALID_REQUEST, f"message line exceeds the limit of {limit} bytes", {"limit": limit})


# --- message builders -------------------------------------------------------------------------

def request(id: Any, method: str, params: Optional[dict] = None) -> dict:
    msg = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method: str, params: Optional[dict] = None) -> dict:
    msg = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def result(id: Any, value: Any) -> dict:
    return {"jsonrpc": "2.0", "id": id, "result": value}


def error(id: Any, code: int, message: str, data: Any = None) -> dict:
    return {"jsonrpc": "2.0", "id": id, "error": RpcError(code, message, data).to_dict()}


# --- framing ----------------------------------------------------------------------------------

def encode(msg: dict) -> bytes:
    """One line of strict JSON (no NaN/Infinity, which other parsers reject), newline-terminated.

    ``json`` escapes control characters inside strings, so the only newline is the terminator.
    A lone UTF-16 surrogate (``"\\ud800"``, which ``json`` happily decodes) has no UTF-8 form, so
    such a message is sent with ASCII escapes instead: the writer never fails on text it was given.
    """
    text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = json.dumps(msg, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
    return data + b"\n"


def decode(line: bytes) -> Any:
    """Parse one line; raise RpcError(PARSE_ERROR) with a one-line reason when it is not JSON."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RpcError(PARSE_ERROR, f"message is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError
        raise RpcError(PARSE_ERROR, f"invalid JSON: {exc}") from None
    except RecursionError:  # e.g. 100,000 nested '[': the parser's stack, not ours, is the limit
        raise RpcError(PARSE_ERROR, "invalid JSON: nested too deeply") from None


class LineReader:
    """Reads newline-framed messages from a binary stream with a bound on line length.

    A line over ``max_line`` bytes raises LineTooLongError *after* the rest of it has been
    read and dropped, so the caller can reply with an error and keep reading the next line.
    Blank lines are skipped. ``read()`` returns None at end of stream.
    """

    _CHUNK = 1 << 16

    def __init__(self, stream: BinaryIO, max_line: int = MAX_LINE_BYTES) -> None:
        self.stream = stream
        self.max_line = int(max_line)

    def read(self) -> Optional[bytes]:
        while True:
            line = self.stream.readline(self.max_line + 1)
            if not line:
                return None
            if len(line) > self.max_line and not line.endswith(b"\n"):
                self._skip_rest(line)
                raise LineTooLongError(self.max_line)
            line = line.strip()
            if line:
                return line

    def _skip_rest(self, head: bytes) -> None:
        chunk = head
        while chunk and not chunk.endswith(b"\n"):
            chunk = self.stream.readline(self._CHUNK)

    def __iter__(self) -> Iterator[bytes]:
        """Lines until end of stream (LineTooLongError propagates; iterate again to go on)."""
        while True:
            line = self.read()
            if line is None:
                return
            yield line


# --- validation -------------------------------------------------------------------------------

def is_response(msg: Any) -> bool:
    """True for a result/error reply (has an id and no method)."""
    return isinstance(msg, dict) and "method" not in msg and ("result" in msg or "error" in msg)


def check_request(msg: Any) -> "tuple[Any, str, dict]":
    """``(id, method, params)`` of a request or notification (id None for a notification).

    Raises RpcError(INVALID_REQUEST) naming what is wrong. Params must be an object (by-name),
    because every SMITE method takes named fields; a missing ``params`` reads as ``{}``.
    """
    if isinstance(msg, list):
        raise RpcError(INVALID_REQUEST, "batch requests are not supported: send one object per line")
    if not isinstance(msg, dict):
        raise RpcError(INVALID_REQUEST, f"a message must be a JSON object, got {type(msg).__name__}")
    if msg.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "field 'jsonrpc' must be \"2.0\"")
    msg_id = msg.get("id")
    if "id" in msg and not (msg_id is None or isinstance(msg_id, str)
                            or (isinstance(msg_id, int) and not isinstance(msg_id, bool))):
        raise RpcError(INVALID_REQUEST, "field 'id' must be a string, an integer or null")
    method = msg.get("method")
    if not isinstance(method, str) or not method:
        raise RpcError(INVALID_REQUEST, "field 'method' must be a non-empty string")
    params = msg.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_REQUEST, "field 'params' must be an object of named parameters")
    return msg_id, method, params
