"""Run one server job from a host's background thread, with progress and cancel hooks.

Nuke must never block its UI thread on the server, and must never touch its node graph
from another thread. `JobRunner.run` is the background half: submit, poll ``wait`` in short
slices so a host cancel flag (``nuke.ProgressTask.isCancelled``) is noticed within
``poll_s``, and report the end once through ``on_finish`` with a `JobOutcome`. Callbacks run
on the runner or client reader thread; the host hops to its UI thread itself.

The client is the core's ``smite.hostapi.client`` (`hostconfig.hostapi`).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional, Union

from . import hostconfig

_client = hostconfig.hostapi("client")
ServerDiedError, SmiteClient, RpcError = _client.ServerDiedError, _client.SmiteClient, _client.RpcError
CANCELLED = hostconfig.hostapi("protocol").CANCELLED

DONE, FAILED, CANCELLED_STATE = "done", "failed", "cancelled"


class JobOutcome:
    """How a job ended: ``state`` is done/failed/cancelled; ``message`` is one line for a status knob."""

    def __init__(self, state: str, result: Any = None, message: str = "", code: Optional[int] = None) -> None:
        self.state = state
        self.result = result
        self.message = message
        self.code = code

    @property
    def ok(self) -> bool:
        return self.state == DONE

    def __repr__(self) -> str:
        return f"JobOutcome({self.state!r}, message={self.message!r})"


class JobRunner:
    """Submits ``method(params)`` on ``client`` and follows it to the end (use `start` or call `run`).

    ``client`` may be a zero-argument callable returning one (e.g. ``lambda: cache.get(python)``),
    so the seconds a server takes to start are spent on the runner thread, not the host's UI.
    """

    def __init__(self, client: Union[SmiteClient, Callable[[], SmiteClient]], method: str,
                 params: Dict[str, Any], *,
                 on_progress: Optional[Callable[[Dict[str, Any]], None]] = None,
                 on_finish: Optional[Callable[[JobOutcome], None]] = None,
                 should_cancel: Optional[Callable[[], bool]] = None,
                 poll_s: float = 0.2) -> None:
        self._client_source = client  # a callable is resolved on the runner thread (starting is slow)
        self.client: Optional[SmiteClient] = None
        self.method = method
        self.params = params
        self.on_progress = on_progress
        self.on_finish = on_finish
        self.should_cancel = should_cancel
        self.poll_s = poll_s
        self.job_id: Optional[str] = None
        self.outcome: Optional[JobOutcome] = None
        self.thread: Optional[threading.Thread] = None
        self._cancel = threading.Event()

    def start(self) -> "JobRunner":
        """Run in a daemon thread (a hung server never keeps the host from quitting)."""
        self.thread = threading.Thread(target=self.run, name=f"smite-{self.method}", daemon=True)
        self.thread.start()
        return self

    def cancel(self) -> None:
        """Ask for a cancel from any thread; noticed within ``poll_s``."""
        self._cancel.set()

    def join(self, timeout: Optional[float] = None) -> Optional[JobOutcome]:
        if self.thread is not None:
            self.thread.join(timeout)
        return self.outcome

    def run(self) -> JobOutcome:
        """Submit, wait, cancel on request; always ends with exactly one ``on_finish`` call."""
        try:
            outcome = self._follow()
        except Exception as exc:  # never let a host thread die silently
            outcome = JobOutcome(FAILED, message=f"{type(exc).__name__}: {exc}")
        self.outcome = outcome
        if self.on_finish is not None:
            self.on_finish(outcome)
        return outcome

    def _wants_cancel(self) -> bool:
        if self._cancel.is_set():
            return True
        return bool(self.should_cancel and self.should_cancel())

    def _follow(self) -> JobOutcome:
        source = self._client_source
        self.client = source() if callable(source) else source
        try:
            self.job_id = self.client.submit(self.method, self.params, on_progress=self.on_progress)
        except RpcError as exc:
            return _from_error(exc)
        cancel_sent = False
        while True:
            try:
                result = self.client.wait(self.job_id, timeout=self.poll_s)
            except TimeoutError:
                if not cancel_sent and self._wants_cancel():
                    cancel_sent = True
                    try:
                        self.client.cancel(self.job_id)
                    except RpcError:
                        pass  # already finished, or the server died: wait() says which
                continue
            except RpcError as exc:
                return _from_error(exc)
            return JobOutcome(DONE, result=result, message=_done_message(self.method, result))


def _from_error(exc: RpcError) -> JobOutcome:
    if exc.code == CANCELLED:
        return JobOutcome(CANCELLED_STATE, message="cancelled", code=exc.code)
    if isinstance(exc, ServerDiedError):
        return JobOutcome(FAILED, message=f"server died: {exc.message}", code=exc.code)
    return JobOutcome(FAILED, message=exc.message, code=exc.code)


def _done_message(method: str, result: Any) -> str:
    if isinstance(result, dict):
        written = result.get("written", result.get("frames_written"))
        skipped = result.get("skipped", result.get("frames_skipped"))
        if isinstance(written, (int, list)) and not isinstance(written, bool):
            n = len(written) if isinstance(written, list) else written
            tail = ""
            if isinstance(skipped, (int, list)) and not isinstance(skipped, bool):
                tail = f", {len(skipped) if isinstance(skipped, list) else skipped} already done"
            return f"{method} done: {n} frame(s) written{tail}"
    return f"{method} done"


class ClientCache:
    """One `SmiteClient` per core interpreter for the whole host session.

    Starting the server (importing torch) takes seconds, so it stays up between button
    presses; a dead one is replaced on the next `get`.
    """

    def __init__(self, factory: Callable[[str], SmiteClient] = lambda python: SmiteClient(python=python)) -> None:
        self._factory = factory
        self._clients: Dict[str, SmiteClient] = {}
        self._lock = threading.Lock()

    def get(self, python: str) -> SmiteClient:
        """A running, initialised client for ``python`` (starts or restarts the server)."""
        with self._lock:
            client = self._clients.get(python)
            if client is not None and client.alive:
                return client
            if client is not None:
                client.shutdown(timeout=5)
            client = self._factory(python).start()
            self._clients[python] = client
        client.initialize(client="nuke_smite")
        return client

    def shutdown_all(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            try:
                client.shutdown(timeout=10)
            except Exception:
                pass
