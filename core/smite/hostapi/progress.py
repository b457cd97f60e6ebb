"""A job's ``progress`` notification as a host shows it: a fraction for a bar and one status line.

The server sends ``{stage, done, total, message}``; both hosts show it through `describe`, so the
Nuke status knob and the Blender panel read alike (``segment 3/12 (25%): frame 1003``).
Standard library only, Python 3.9-safe.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional


class Progress(NamedTuple):
    """How far a job is: ``fraction`` in 0..1 and ``text``, one line."""

    fraction: float
    text: str

    @property
    def percent(self) -> int:
        """Whole percent, rounded down (100 only when done)."""
        return int(100 * self.fraction)


def describe(progress: Optional[Mapping[str, Any]], state: str = "working") -> Progress:
    """`Progress` of a ``progress`` notification; ``state`` names the job before its first one."""
    if not progress:
        return Progress(0.0, state)
    try:
        done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
    except (TypeError, ValueError):
        done, total = 0, 0
    fraction = max(0.0, min(1.0, done / total)) if total > 0 else 0.0
    stage = str(progress.get("stage") or state)
    text = f"{stage} {done}/{total} ({int(100 * fraction)}%)" if total > 0 else stage
    message = str(progress.get("message") or "")
    return Progress(fraction, f"{text}: {message}" if message else text)
