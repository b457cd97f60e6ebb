"""Files a host writes, written so that a reader (the core, a farm node) never sees half of one.

Every file goes to a temporary name in its own folder (same file system, so the rename is atomic),
is flushed to disk, then renamed over the target. Standard library only, Python 3.9-safe.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

TEMP_PREFIX = ".smite-"


def write_text(path: str, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; creates the folder; returns ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str, data: Any) -> str:
    """``data`` as indented JSON at ``path``, atomically (`write_text`); returns ``path``."""
    return write_text(path, json.dumps(data, indent=2) + "\n")


def partial_path(path: str) -> str:
    """Where a renderer (Nuke's Write, Blender's render) writes ``path`` before `commit` renames it.

    The extension stays last so the renderer picks the same file format.
    """
    folder, name = os.path.split(path)
    return os.path.join(folder, TEMP_PREFIX + name)


def commit(partial: str, path: str) -> str:
    """Flush a file a renderer wrote at ``partial`` to disk and rename it to ``path``; returns ``path``."""
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, path)
    return path
