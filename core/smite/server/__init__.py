"""`smite serve`: the JSON-RPC server hosts drive (one GPU job at a time, cancellable, streamed progress).

Split like python-lsp-jsonrpc: `endpoint` (line framing and dispatch, standard library only),
`jobs` (the queue, the worker thread, cancel), `loader` (the engine, loaded off the reader thread,
and the device probe), `handlers` (the ``m_<method>`` methods, in `Server`). The stream framing
itself lives in `smite.hostapi.protocol`, shared with the host client.
"""

from .endpoint import MAX_PLANS, PLANNED, Endpoint, error_dict, jsonable, protect_stdout
from .handlers import SHUTDOWN_WAIT_S, Server
from .jobs import (
    CANCELLED, CANCELLING, FAILED, FINAL_STATES, FINISHED, HISTORY, HISTORY_LIST_MAX, MAX_JOBS, QUEUED, RUNNING,
    Job, JobQueue, LogForwarder,
)
from .loader import EngineLoader

__all__ = [
    "Server", "LogForwarder", "protect_stdout", "Endpoint", "JobQueue", "Job", "EngineLoader",
    "jsonable", "error_dict", "MAX_JOBS", "MAX_PLANS", "HISTORY", "HISTORY_LIST_MAX", "PLANNED", "SHUTDOWN_WAIT_S",
    "QUEUED", "RUNNING", "CANCELLING", "FINISHED", "FAILED", "CANCELLED", "FINAL_STATES",
]
