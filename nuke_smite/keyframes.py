"""Keyframes: the frames whose roto becomes a SMITE reference.

The default is every frame where the artist keyed a shape in the Roto (the frames they
actually looked at); the knob holds the same list as text (``"1001,1010-1012"``) so the
artist can add or drop frames. Pure Python: the Roto walk that collects key times lives
in `render_refs`.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Sequence

_ITEM = re.compile(r"^(-?\d+)(?:-(-?\d+))?$")


def parse_keyframes(text: str) -> List[int]:
    """Frames in ``text`` ("1001, 1010-1012 1020"), sorted and unique; ValueError naming the bad item."""
    frames = set()
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        match = _ITEM.match(item)
        if not match:
            raise ValueError(f"keyframes: cannot read {item!r} (use e.g. 1001, 1010-1012)")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        if end < start:
            raise ValueError(f"keyframes: {item!r} ends before it starts")
        frames.update(range(start, end + 1))
    return sorted(frames)


def format_keyframes(frames: Iterable[int]) -> str:
    """Text for the knob: consecutive runs collapse ("1-3,7"); `parse_keyframes` reads it back."""
    values = sorted(set(int(f) for f in frames))
    items: List[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        items.append(str(values[i]) if j == i else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(items)


def merge_key_times(times: Iterable[float]) -> List[int]:
    """Roto key times (floats, possibly sub-frame) -> whole frames, sorted and unique.

    Sub-frame keys round to the nearest frame: a reference is a rendered frame of the plate.
    """
    return sorted(set(int(round(float(t))) for t in times))


def check_in_range(frames: Sequence[int], first: int, last: int) -> List[int]:
    """``frames`` when all lie in ``first..last``; ValueError naming the first outside frame."""
    if not frames:
        raise ValueError("no keyframes: key a shape in the Roto or type frames into 'keyframes'")
    for frame in frames:
        if frame < first or frame > last:
            raise ValueError(f"keyframe {frame} is outside the plate's frames {first}-{last}")
    return list(frames)
