"""Frame lists as an artist types them in a host (``"1001, 1010-1012 1020-1040x10"``) and as the core reads them.

Standard library only, Python 3.9-safe. The core's strict shot/farm grammar is
`smite.io.sequence.parse_frame_range`; `format_frames` writes text both read.
"""

from __future__ import annotations

import re
from typing import Iterable, List

_FRAME_ITEM = re.compile(r"(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?")  # 12, 10-40, 10-40x10 (every 10th)


def parse_frames(text: str) -> List[int]:
    """Frames an artist typed (``"1001, 1010-1012 1020-1040x10"``), sorted and unique; ``[]`` when empty.

    Raises ValueError with one line naming the item it cannot read.
    """
    frames = set()
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        match = _FRAME_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"keyframes: cannot read {item!r} (write frames like 1001, 1010-1012 or 1010-1040x10)")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3)) if match.group(3) else 1
        if last < first:
            raise ValueError(f"keyframes: {item!r} ends before it starts")
        if step < 1:
            raise ValueError(f"keyframes: the step of {item!r} must be at least 1")
        frames.update(range(first, last + 1, step))
    return sorted(frames)


def format_frames(frames: Iterable[int]) -> str:
    """Frames as the core's range text: consecutive runs collapse (``"1-3,7"``); ``""`` for none.

    `parse_frames` reads it back, and so does the core's shot ``frames`` field.
    """
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
