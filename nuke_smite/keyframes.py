"""Keyframes: the frames whose roto becomes a SMITE reference.

The default is every frame where the artist keyed a shape in the Roto (the frames they
actually looked at); the knob holds the same list as text (``"1001,1010-1012"``) so the
artist can add or drop frames. Reading and writing that text is the core's `smite.hostapi.frames`
(the Blender add-on types the same lists). Pure Python: the Roto walk that collects key times
lives in `render_refs`.
"""

from __future__ import annotations

from typing import Iterable, List, Sequence

from . import hostconfig

_frames = hostconfig.hostapi("frames")
format_keyframes = _frames.format_frames  # knob text, shared with Blender
parse_keyframes = _frames.parse_frames  # "1001, 1010-1012" -> frames; [] when empty


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
