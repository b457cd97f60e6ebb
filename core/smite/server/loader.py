"""Loads the engine once, off the reader thread, and says which dependency is missing when it cannot.

`smite serve` must answer ``initialize`` before torch, OpenCV or OIIO are imported (issue 10), so
the engine (`smite.engine`, which imports them) is loaded on a background thread started after that
reply, or by the first job, whichever comes first. The device description (GPU name, memory) needs
torch, so it is probed on the same thread; until then ``initialize`` reports ``{"type": "pending"}``.
A dependency that cannot be imported (missing, or broken: a shared library that will not load) is
reported as a `MissingModelError` naming it, never a crash of the server.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import platform
import threading
from typing import Any, Dict, Iterator, Optional

from ..errors import MissingModelError
from ..hostapi.protocol import one_line
from .endpoint import jsonable

log = logging.getLogger(__name__)

ENGINE_MODULE = "smite.engine"
PENDING = {"type": "pending"}  # the device before the background probe has finished
OWN_PACKAGES = ("smite", "importlib", "__main__")  # never "the dependency" when naming what failed to import


def dependency_of(exc: BaseException) -> str:
    """The top-level package whose import raised ``exc`` (``torch`` for a broken torch), else ``?``.

    An ImportError names its module; any other exception (OSError from a shared library, say) is
    traced to the outermost frame that belongs to a package other than smite's own code.
    """
    name = getattr(exc, "name", None)
    if isinstance(exc, ImportError) and name:
        return str(name).split(".")[0]
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        top = module.split(".")[0]
        if top and top not in OWN_PACKAGES and not top.startswith("_frozen_importlib"):
            return top
        tb = tb.tb_next
    return "?"


def missing_dependency(exc: BaseException, needed_by: str) -> MissingModelError:
    """The error a request or job reports when ``needed_by`` (a method name) cannot import a dependency."""
    if isinstance(exc, MissingModelError):  # the core already named what is missing
        return exc
    dep = dependency_of(exc)
    return MissingModelError(f"{needed_by} needs {dep}, which cannot be imported ({type(exc).__name__}: "
                             f"{one_line(exc)}); install it into the core venv (see: smite doctor)",
                             dependency=dep)


@contextlib.contextmanager
def naming_missing_dependency(needed_by: str) -> Iterator[None]:
    """Turn an ImportError raised inside into a `MissingModelError` naming the dependency."""
    try:
        yield
    except ImportError as exc:
        raise missing_dependency(exc, needed_by) from exc


def probe_device() -> Dict[str, Any]:
    """What torch reports about the accelerator jobs will use: type, name, memory in bytes, torch version."""
    import torch

    out: Dict[str, Any]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out = {"type": "cuda", "name": torch.cuda.get_device_name(0), "memory": int(props.total_memory),
               "count": torch.cuda.device_count()}
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out = {"type": "mps", "name": "Apple GPU"}
        recommended = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
        if recommended is not None:
            out["memory"] = int(recommended())
    else:
        out = {"type": "cpu", "name": platform.processor() or platform.machine()}
        try:
            out["memory"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, OSError, ValueError):
            pass
    out["torch"] = torch.__version__
    return out


class EngineLoader:
    """The engine (``engine`` given, or `smite.engine` imported on first use) and the device it runs on.

    Thread-safe: the background probe and the first job may both ask; the import runs once, and a
    failed import is remembered (re-importing a half-initialised C extension is not safe), so every
    later request gets the same error at once.
    """

    def __init__(self, engine: Any = None) -> None:
        self._engine = engine
        self._failure: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._device: Optional[Dict[str, Any]] = None
        self._probe: Optional[threading.Thread] = None

    def get(self, needed_by: str) -> Any:
        """The engine; `MissingModelError` naming the dependency when it cannot be imported."""
        with self._lock:
            if self._engine is None and self._failure is None:
                try:
                    self._engine = importlib.import_module(ENGINE_MODULE)
                except Exception as exc:  # noqa: BLE001 - a broken library may raise anything, not only ImportError
                    self._failure = exc
                    log.warning("the SMITE engine cannot be loaded: %s: %s", type(exc).__name__, one_line(exc))
            engine, failure = self._engine, self._failure
        if failure is not None:
            raise missing_dependency(failure, needed_by) from None
        return engine

    def failed(self, needed_by: str) -> None:
        """Raise the import error now when the engine is already known not to load (no waiting)."""
        with self._lock:
            failure = self._failure
        if failure is not None:
            raise missing_dependency(failure, needed_by) from None

    def device(self) -> Dict[str, Any]:
        """The device for ``initialize``: known, or described now by an already loaded engine's ``device_info()``.

        Never imports anything: with the engine not loaded yet it is ``{"type": "pending"}``.
        """
        if self._device is None:
            describe = getattr(self._engine, "device_info", None) if self._engine is not None else None
            if describe is not None:
                self._device = jsonable(describe())
        return self.known_device()

    def known_device(self) -> Dict[str, Any]:
        """The device as far as it is known, without asking anyone (``{"type": "pending"}`` until probed)."""
        device, failure = self._device, self._failure
        if device is None and failure is not None:  # the engine did not load: no probe will come
            return _unknown(missing_dependency(failure, "the device probe"))
        return dict(device) if device is not None else dict(PENDING)

    def start_probe(self) -> None:
        """Load the engine and probe the device on a background thread (once; later calls do nothing)."""
        with self._lock:
            if self._probe is not None:
                return
            self._probe = threading.Thread(target=self._run_probe, name="smite-probe", daemon=True)
            self._probe.start()  # under the lock, so `join` never meets a thread not yet started

    def join(self, timeout: float) -> None:
        """Wait (bounded) for the probe: exiting while a thread is inside an import of torch can hang."""
        probe = self._probe
        if probe is not None and probe is not threading.current_thread():
            probe.join(timeout)

    def _run_probe(self) -> None:
        try:
            engine = self.get("the device probe")
            if self._device is not None:  # `initialize` already had the engine describe itself
                return
            describe = getattr(engine, "device_info", None)
            with naming_missing_dependency("the device probe"):
                device = jsonable(describe() if describe is not None else probe_device())
        except Exception as exc:  # noqa: BLE001 - the probe's failure is reported, never raised
            device = _unknown(exc)
        self._device = device
        log.info("device: %s", ", ".join(f"{k}={v}" for k, v in device.items()))


def _unknown(exc: BaseException) -> Dict[str, Any]:
    """The device when it cannot be probed: why, and the dependency at fault when one is named."""
    device: Dict[str, Any] = {"type": "unknown", "error": one_line(exc)}
    if isinstance(exc, MissingModelError) and exc.data.get("dependency"):
        device["dependency"] = exc.data["dependency"]
    return device
