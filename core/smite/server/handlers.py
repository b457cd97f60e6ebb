"""`smite serve`'s methods: thin ``m_<method>`` handlers that validate params and queue engine calls.

The pieces, as in python-lsp-jsonrpc: `endpoint` reads, dispatches and writes (stdlib only),
`jobs` runs one engine call at a time on a worker thread, `loader` loads the engine and probes the
device off the reader thread. `Server` wires them together and holds the handlers.

``initialize`` imports nothing heavy: it answers from the standard library and `smite.config`, then
the engine is loaded and the device probed in the background (`loader`). A request or job that needs
a dependency which cannot be imported is answered with MISSING_MODEL naming it.
"""

from __future__ import annotations

import os
import platform
from typing import Any, BinaryIO, Dict, List, Optional

from .. import __version__
from ..errors import SmiteError
from ..hostapi.protocol import (
    INITIALIZE, INVALID_PARAMS, LEARN, MAX_LINE_BYTES, METHOD_NOT_FOUND, METHODS, NOTIFICATIONS,
    PROTOCOL_VERSION, SEGMENT, RpcError,
)
from .endpoint import Endpoint
from .jobs import Job, JobQueue
from .loader import EngineLoader, naming_missing_dependency

SHUTDOWN_WAIT_S = 120.0  # how long shutdown waits for the running job to stop at a frame boundary
PROBE_WAIT_S = 30.0  # how long closing waits for a background engine import to finish


def _need(name: str, value: Any, kind: type, what: str) -> Any:
    """``value`` when it is a ``kind`` (bool is not an int here), else INVALID_PARAMS naming ``name``."""
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if not ok:
        raise RpcError(INVALID_PARAMS, f"param '{name}' must be {what}, got {type(value).__name__}", {"param": name})
    return value


class Server:
    """The handlers, dispatched from ``serve(stream)``; replies and notifications go to ``out``.

    ``engine`` is any object with ``segment_shot`` and ``learn_parts`` (default: `smite.engine`,
    loaded in the background after ``initialize`` or by the first job); tests pass a fake one.
    """

    def __init__(self, out: BinaryIO, engine: Any = None, *, max_line: int = MAX_LINE_BYTES,
                 shutdown_wait: float = SHUTDOWN_WAIT_S) -> None:
        self.shutdown_wait = shutdown_wait
        self.loader = EngineLoader(engine)
        self.endpoint = Endpoint(self, out, max_line=max_line, after_answer=self._after_answer)
        self.jobs = JobQueue(self.endpoint.notify)
        self.max_line = max_line
        self.send = self.endpoint.send
        self.notify = self.endpoint.notify
        self.handle_line = self.endpoint.handle_line
        self.dispatch = self.endpoint.dispatch
        self.current_job_id = self.jobs.current_job_id
        self.cancel_all = self.jobs.cancel_all

    def serve(self, stream: BinaryIO) -> int:
        """Answer requests until ``shutdown`` or end of input, then `close`; returns the exit status (0)."""
        self.endpoint.read_loop(stream)
        self.close()
        return 0

    def close(self, timeout: Optional[float] = None) -> None:
        """Answer the requests still being planned, cancel all jobs and wait (bounded) for the worker."""
        wait = self.shutdown_wait if timeout is None else timeout
        self.endpoint.close_planner(wait)
        self.endpoint.stopping = True
        self.jobs.close(wait)
        self.loader.join(min(wait, PROBE_WAIT_S))

    def engine(self) -> Any:
        """The engine, loaded on first use (a dependency that cannot be imported -> MISSING_MODEL)."""
        return self.loader.get("the engine")

    def _after_answer(self, method: str) -> None:
        """After a reply is written: start the jobs it created; after ``initialize``, load the engine."""
        self.jobs.release_mine()
        if method == INITIALIZE:
            self.loader.start_probe()

    # --- handlers ----------------------------------------------------------------------------

    def m_initialize(self, **client_info: Any) -> Dict[str, Any]:
        """Versions, methods, backends, device: what a host needs to build its UI (nothing heavy imported).

        ``device`` is the engine's description once it is loaded; before that ``{"type": "pending"}``,
        and the engine is loaded and the device probed after this reply; ``status`` then carries it.
        """
        from ..backends import BACKEND_NAMES
        from ..config import Settings

        return {
            "protocol": PROTOCOL_VERSION,
            "server": {"name": "smite", "version": __version__, "pid": os.getpid(),
                       "python": platform.python_version()},
            "methods": list(METHODS),
            "notifications": list(NOTIFICATIONS),
            "backends": list(BACKEND_NAMES),
            "default_settings": Settings().to_dict(),
            "device": self.loader.device(),
            "capabilities": {"cancel": True, "progress": True, "queue": True, "inline_shot": True,
                             "preview": True, "max_line": self.max_line, "backends": list(BACKEND_NAMES)},
        }

    def m_segment(self, shot: Any, out: Any, settings: Any = None, frames: Any = None,
                  preview: Any = False, force: Any = False, base_dir: Any = None) -> Dict[str, Any]:
        """Queue `engine.segment_shot`; replies at once with ``{job, queued}``."""
        from ..io.sequence import MAX_FRAMES, check_output_pattern, parse_frame_range

        self.jobs.check_room()
        self.loader.failed(SEGMENT)
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
            engine = self.loader.get(SEGMENT)
            with naming_missing_dependency(SEGMENT):  # a backend importing its own dependencies late
                return engine.segment_shot(spec, out_pattern, cfg, frames=frame_list, preview=preview,
                                           force=force, progress=self.jobs.progress_cb(job), cancel=job.cancel)

        info = {"out": out_pattern, "frames": frames if frame_list is None else len(frame_list)}
        return self.jobs.submit(SEGMENT, run, info)

    def m_learn(self, shot: Any, out: Any, settings: Any = None, base_dir: Any = None) -> Dict[str, Any]:
        """Queue `engine.learn_parts`; replies at once with ``{job, queued}``."""
        self.jobs.check_room()
        self.loader.failed(LEARN)
        base = self._base_dir(base_dir)
        spec = self._shot(shot, base)
        out_path = self._out_path(out, base)
        cfg = self._settings(settings)

        def run(job: Job) -> Any:
            learn_parts = getattr(self.loader.get(LEARN), "learn_parts", None)
            if learn_parts is None:
                raise RpcError(METHOD_NOT_FOUND, "this core's engine has no learn_parts (learn is not available)")
            with naming_missing_dependency(LEARN):
                return learn_parts(spec, out_path, cfg, progress=self.jobs.progress_cb(job), cancel=job.cancel)

        return self.jobs.submit(LEARN, run, {"out": out_path})

    def m_status(self, job: Any = None) -> Dict[str, Any]:
        """All known jobs (queued, running, recent finished) and the device, or one job with ``{job: id}``."""
        if job is not None:
            return self.jobs.status(_need("job", job, str, "a job id string"))
        return {**self.jobs.status(), "device": self.loader.known_device()}

    def m_cancel(self, job: Any) -> Dict[str, Any]:
        """Drop a queued job, or ask the running one to stop at its next frame boundary."""
        return self.jobs.cancel(_need("job", job, str, "a job id string"))

    def m_shutdown(self) -> Dict[str, Any]:
        """Cancel everything and stop reading; the process exits 0 once the running job has stopped.

        Requests sent before it are planned first (their jobs are then cancelled like any queued job).
        """
        self.endpoint.drain_plans(self.shutdown_wait)
        self.endpoint.stopping = True
        return {"ok": True, "cancelled": self.jobs.cancel_all(stop=True)}

    # --- param parsing -----------------------------------------------------------------------

    @staticmethod
    def _base_dir(base_dir: Any) -> str:
        if base_dir is None:
            return os.getcwd()
        return os.path.abspath(_path_param("base_dir", _need("base_dir", base_dir, str, "a folder path")))

    @staticmethod
    def _shot(shot: Any, base: str) -> Any:
        from ..config import ShotSpec, load_shot

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
        from ..config import Settings

        if settings is None:
            return Settings()
        _need("settings", settings, dict, "an object of settings")
        return Settings.from_dict(settings)

    @staticmethod
    def _preflight(spec: Any, frames: Optional[List[int]]) -> None:
        """Missing plate frames or reference files fail the request itself, before anything queues."""
        from ..errors import BadInputError
        from ..io.sequence import has_frame_token, require_frames

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
