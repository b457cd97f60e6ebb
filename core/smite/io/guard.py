"""What protects an output folder shared by farm tasks: a claim per writer, and a careful temp sweep.

Every run writing an output pattern holds a small claim file beside the mattes,
``.smite-<key>.<host>.<pid>.lock`` (``key`` names the pattern), refreshed every `HEARTBEAT_S`.
Claims let a run tell three cases apart:

* the same job is already writing there (a retried farm task, another chunk): fine, both go on;
* a *different* job writes the same pattern right now: refused, because the two would silently
  replace each other's frames;
* a claim whose writer is gone (same host and its pid is dead, or not refreshed for `STALE_S`):
  removed, with the temp files that writer left.

Temp files (see `io.image`: ``.<name>.<pid>.tmp<ext>``) are only removed when no live claim of
this pattern has their pid, so one task never deletes another's frame in progress.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from typing import Iterable

from ..errors import OutputError
from ..hostapi.atomic import write_text
from .image import _temp_path

HEARTBEAT_S = 30.0  # how often a live claim is touched
STALE_S = 600.0  # a claim from another host not touched for this long belongs to a dead writer
_LOCK = re.compile(r"^\.smite-([0-9a-f]{12})\.([A-Za-z0-9_-]{1,64})\.(\d+)\.lock$")


def host_name() -> str:
    """This machine's name as it appears in claim file names (safe characters only)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname() or "host")[:64] or "host"


def pattern_key(out_pattern: str) -> str:
    return hashlib.sha1(os.path.abspath(out_pattern).encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class Claim:
    """A live writer's claim on one output pattern (see module doc); a context manager."""

    def __init__(self, out_pattern: str, job: str) -> None:
        self.pattern = os.path.abspath(out_pattern)
        self.folder = os.path.dirname(self.pattern)
        self.job = job
        self.key = pattern_key(out_pattern)
        self.host = host_name()
        self.pid = os.getpid()
        self.path = os.path.join(self.folder, f".smite-{self.key}.{self.host}.{self.pid}.lock")
        self.others: list[dict] = []  # live claims of other writers of this pattern (same job)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _claims(self) -> list[dict]:
        """Claims of this pattern by other processes; stale ones are removed on the way."""
        found = []
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        for name in names:
            match = _LOCK.match(name)
            if not match or match.group(1) != self.key:
                continue
            host, pid = match.group(2), int(match.group(3))
            path = os.path.join(self.folder, name)
            if path == self.path:
                continue
            try:
                age = time.time() - os.stat(path).st_mtime
                with open(path, encoding="utf-8") as handle:
                    info = json.load(handle)
            except (OSError, ValueError):
                continue  # vanished or being replaced: its writer is alive enough to be doing that
            dead = (host == self.host and not _pid_alive(pid)) or age > STALE_S
            if dead:
                try:
                    os.remove(path)
                except OSError:
                    pass
                continue
            found.append({"host": host, "pid": pid, "job": info.get("job") if isinstance(info, dict) else None})
        return found

    def _refuse_other_jobs(self) -> None:
        other = next((c for c in self.others if c["job"] != self.job), None)
        if other is not None:
            raise OutputError(
                f"{self.pattern} is being written by another job (host {other['host']}, pid {other['pid']}); "
                f"two different jobs cannot write one output at once: wait for it or choose another output",
                path=self.pattern)

    def acquire(self) -> "Claim":
        self.others = self._claims()
        self._refuse_other_jobs()
        try:
            write_text(self.path, json.dumps({"job": self.job, "host": self.host, "pid": self.pid,
                                              "pattern": self.pattern}))
        except OSError as exc:
            raise OutputError(f"cannot write in output folder {self.folder}: {exc.strerror or exc}",
                              path=self.folder) from None
        self.others = self._claims()  # two jobs that started together: both see each other and stop
        try:
            self._refuse_other_jobs()
        except OutputError:
            self.release()
            raise
        self._beat = threading.Thread(target=self._heartbeat, name="smite-claim", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        try:
            os.remove(self.path)
        except OSError:
            pass

    def live_pids(self) -> set[int]:
        """Pids of the other live writers of this pattern: their temp files must not be touched."""
        return {c["pid"] for c in self.others}

    def __enter__(self) -> "Claim":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temps(frame_paths: Iterable[str], keep_pids: set[int]) -> None:
    """Remove temp files left for ``frame_paths`` (one folder) by writers not in ``keep_pids``.

    The folder is listed once, so the cost does not grow with one glob per frame; a temp name is
    matched exactly as `io.image` spells it for that pid (long names included).
    """
    paths = list(frame_paths)
    if not paths:
        return
    folder = os.path.dirname(paths[0])
    temp = re.compile(r"^\.(.+)\.(\d+)\.tmp(\.[^.]*)?$")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    expected: dict[int, set[str]] = {}
    for name in names:
        match = temp.match(name)
        if not match or int(match.group(2)) in keep_pids:
            continue
        pid = int(match.group(2))
        if pid not in expected:
            expected[pid] = {os.path.basename(_temp_path(p, pid)) for p in paths}
        if name in expected[pid]:
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def plate_digest(path: str) -> str:
    """What identifies a plate frame's content cheaply: its size and a hash of its first and last 64 KiB."""
    chunk = 64 * 1024
    try:
        size = os.path.getsize(path)
        digest = hashlib.blake2b(digest_size=8)
        with open(path, "rb") as handle:
            digest.update(handle.read(chunk))
            if size > 2 * chunk:
                handle.seek(size - chunk)
            digest.update(handle.read(chunk))
    except OSError:
        return ""
    return f"{size}:{digest.hexdigest()}"
