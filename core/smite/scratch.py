"""Scratch cache on disk: per-frame arrays a backend needs after they leave its memory window.

Why: a long shot cannot keep every working frame, flow field and carried map in RAM, yet the
backward carry and the temporal pass need what the forward sweep computed. Each entry is one
`.npy` file, written under a temporary name and renamed (atomic), so a reader sees a whole file
or none, and two farm chunks of the same job may write the same entry at once.

Layout: `<root>/<job>/<kind>/<name>.npy`. `job` is the job's identity (the engine's job key, which
covers plate, references, colourspace, settings, model and version), so a changed setting never
reads another job's data; entry names are the backend's own content keys. A resumed run or another
chunk of the same job reads what is there; a missing or unreadable entry is simply recomputed.
The engine removes the job's folder once every frame of the shot is written.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import OutputError
from .hostapi.atomic import replacing

SCRATCH_FOLDER = ".smite-scratch"  # default root, beside the mattes (shared storage for farm chunks)
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
# A job folder nothing has written to for this long is an abandoned job's (changed settings, a shot
# given up): it is removed when another job under the same root finishes, so the root does not grow forever.
STALE_AFTER_S = 7 * 24 * 3600


def default_root(out_pattern: str) -> str:
    """`<folder of the mattes>/.smite-scratch`: on the storage every chunk of a farm job sees."""
    return os.path.join(os.path.dirname(os.path.abspath(out_pattern)), SCRATCH_FOLDER)


@dataclass
class ScratchStats:
    """Per entry kind: entries read that an earlier run or another chunk wrote, and entries this run wrote."""

    reused: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    mine: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def count(self, table: dict[str, int], kind: str) -> None:
        table[kind] = table.get(kind, 0) + 1


@dataclass
class ScratchReport:
    """Where a run's scratch cache is, how big it grew, whether it is kept, and what it reused and wrote."""

    folder: str
    bytes: int
    kept: bool
    reused: dict[str, int]
    written: dict[str, int]
    pruned: int = 0  # abandoned job folders removed beside it (`prune_stale`)

    @classmethod
    def of(cls, scratches: list["Scratch"], remove: bool) -> "ScratchReport":
        """Report on a run's caches (more than one after out-of-memory retries) and remove them when `remove`."""
        size = sum(s.size_bytes() for s in scratches)
        reused: dict[str, int] = {}
        written: dict[str, int] = {}
        for s in scratches:
            for total, part in ((reused, s.stats.reused), (written, s.stats.written)):
                for kind, count in part.items():
                    total[kind] = total.get(kind, 0) + count
        pruned = 0
        if remove:
            keep = {s.folder for s in scratches}
            pruned = prune_stale(scratches[-1].root, keep)
            for s in scratches:
                s.remove()
        return cls(scratches[-1].folder, size, not remove, reused, written, pruned)

    @property
    def used(self) -> bool:
        """Whether the run read or wrote any entry (the diffusion backend keeps nothing on disk)."""
        return bool(self.bytes or self.reused or self.written or self.pruned)

    def describe(self) -> str:
        """One line for people: folder, size, kept or removed, what was reused and written."""
        def counts(table: dict[str, int]) -> str:
            return ", ".join(f"{n} {kind}" for kind, n in sorted(table.items())) or "nothing"
        state = "kept for a resumed run or other chunks" if self.kept else "removed, every frame is done"
        pruned = f"; removed {self.pruned} abandoned job folder(s) beside it" if self.pruned else ""
        return (f"scratch cache {self.folder}: {format_bytes(self.bytes)}, {state}; "
                f"reused {counts(self.reused)}; wrote {counts(self.written)}{pruned}")


class Scratch:
    """One job's scratch folder; entries are `(kind, name) -> ndarray`."""

    def __init__(self, root: str, job: str) -> None:
        self.root = os.path.abspath(root)
        self.folder = os.path.join(self.root, job)
        self.stats = ScratchStats()
        self._tag = f"{socket.gethostname()}.{os.getpid()}"
        self._lock = threading.Lock()

    @classmethod
    def temporary(cls) -> "Scratch":
        """A private folder under the system temp dir, for a backend run without an engine."""
        return cls(tempfile.mkdtemp(prefix="smite-scratch-"), "run")

    def path(self, kind: str, name: str) -> str:
        return os.path.join(self.folder, kind, f"{name}.npy")

    def has(self, kind: str, name: str) -> bool:
        return os.path.isfile(self.path(kind, name))

    def load(self, kind: str, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        """The entry, or None when it is missing, unreadable or not of `shape` (then it is recomputed)."""
        try:
            array = np.load(self.path(kind, name), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if shape is not None and array.shape != shape:
            return None
        with self._lock:
            if (kind, name) not in self.stats.mine:
                self.stats.count(self.stats.reused, kind)
        return array

    def save(self, kind: str, name: str, array: np.ndarray) -> None:
        """Write the entry atomically; a full disk is an OutputError naming the folder."""
        final = self.path(kind, name)
        temp = os.path.join(os.path.dirname(final), f".{name}.{self._tag}.{threading.get_ident()}.tmp")
        for attempt in (1, 2):
            try:  # interrupted (Ctrl-C, SIGTERM) or failed: `replacing` leaves no temp file
                with replacing(final, temp=temp, durable=False):  # lost entries are recomputed: no fsync
                    with open(temp, "wb") as handle:
                        np.save(handle, array, allow_pickle=False)
                break
            except OSError as exc:
                if exc.errno in FULL_DISK:
                    raise OutputError(f"scratch cache folder {self.root} is full ({exc.strerror}); free space "
                                      f"there or choose another with --scratch DIR", path=self.root) from None
                if exc.errno != errno.ENOENT or attempt == 2:  # ENOENT: another chunk just removed the folder
                    raise OutputError(f"cannot write the scratch cache in {self.root}: {exc.strerror}",
                                      path=self.root) from None
        with self._lock:
            self.stats.count(self.stats.written, kind)
            self.stats.mine.add((kind, name))

    def discard(self, kind: str, name: str) -> None:
        """Remove an entry no later step needs (best effort)."""
        _discard(self.path(kind, name))

    def size_bytes(self) -> int:
        total = 0
        for folder, _, files in os.walk(self.folder):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(folder, name))
                except OSError:
                    pass
        return total

    def remove(self) -> None:
        """Delete the job's folder, and the root when nothing else is left in it."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            os.rmdir(self.root)
        except OSError:
            pass


def prune_stale(root: str, keep: set[str], older_than_s: float = STALE_AFTER_S) -> int:
    """Remove job folders under `root` (not in `keep`) with nothing written for `older_than_s`; how many.

    Only folders of finished-or-abandoned jobs qualify: a live job (a running chunk, a resumable
    run) writes entries as it goes, so its newest file is recent.
    """
    try:
        names = os.listdir(root)
    except OSError:
        return 0
    now, removed = time.time(), 0
    for name in names:
        folder = os.path.join(root, name)
        if folder in keep or not os.path.isdir(folder) or os.path.islink(folder):
            continue
        if now - _newest_mtime(folder) > older_than_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed += not os.path.exists(folder)
    return removed


def _newest_mtime(folder: str) -> float:
    newest = os.path.getmtime(folder)
    for sub, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                newest = max(newest, os.path.getmtime(os.path.join(sub, name)))
            except OSError:
                pass
    return newest


def _discard(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def format_bytes(n: int) -> str:
    """`n` bytes for people: 0 B, 12.3 MB, 1.4 GB."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
