"""Files written so that a reader (the core, a host, a farm node) never sees half of one.

Every file goes to a temporary name in its own folder (same file system, so the rename is atomic),
is flushed to disk, then renamed over the target (`replacing`). The one atomic-write rule of the
project: the hosts use it, and so does the core (mattes, part models, claims, benchmark JSON), since
the core may import `hostapi`. Standard library only, Python 3.9-safe.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator, Optional

TEMP_PREFIX = ".smite-"


@contextmanager
def replacing(path: str, temp: Optional[str] = None, durable: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path``; once the block has written it, flush it to disk and
    rename it to ``path``. On any error (Ctrl-C included) the temporary file is removed and ``path``
    is untouched. ``temp`` names the temporary file (a writer that picks the format from the
    extension, or one whose stale temp files are recognised by name); by default a fresh unique one.
    ``durable=False`` skips the flush: for a cache that is recomputed when lost, the rename alone
    keeps readers from half a file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if temp is None:
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=folder)
        os.close(fd)
    try:
        yield temp
        if durable:  # flushed before the rename: a crash never leaves a name over empty data
            fd = os.open(temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def write_text(path: str, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically (`replacing`); creates the folder; returns ``path``."""
    with replacing(path) as temp:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
    return path


def write_json(path: str, data: Any, sort_keys: bool = False) -> str:
    """``data`` as indented JSON at ``path``, atomically (`write_text`); returns ``path``."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")


def partial_path(path: str) -> str:
    """Where a renderer (Nuke's Write, Blender's render) writes ``path`` before `commit` renames it.

    The extension stays last so the renderer picks the same file format.
    """
    folder, name = os.path.split(path)
    return os.path.join(folder, TEMP_PREFIX + name)


def commit(partial: str, path: str) -> str:
    """Flush a file a renderer wrote at ``partial`` to disk and rename it to ``path``; returns ``path``."""
    with replacing(path, temp=partial):
        pass  # the renderer has written it
    return path
