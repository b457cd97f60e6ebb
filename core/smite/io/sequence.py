"""Frame patterns and frame ranges: the way compositors name image sequences.

A pattern holds one frame token: a run of ``#`` or ``@`` (one digit of padding each, so
``####`` is four digits) or a printf field (``%d``, ``%04d``). Ranges are the farm's
spelling: ``1001-1100``, ``1001-1100x2`` (every second frame), ``5`` and comma lists.
Everything here is pure (standard library only) so hosts and the farm can share it.
"""

from __future__ import annotations

import glob
import os
import re

from ..errors import BadInputError, FrameError, OutputError

_TOKEN = re.compile(r"#+|@+|%(0?\d*)d")
_RANGE_ITEM = re.compile(r"^(\d+)(?:-(\d+)(?:x(\d+))?)?$")
NO_TOKEN_HINT = "has no frame token (use ####, %04d or @)"
# Most frames one range may name: 100,000 frames is 69 minutes at 24 fps, far beyond any shot. Counted
# before anything is built, so "0-100000000" is one quick error instead of an 11 GB list.
MAX_FRAMES = 100_000
MATTE_EXTENSIONS = (".exr",)  # mattes are EXR: an output pattern never names a photo or a plate


def parse_frame_range(spec: str) -> list[int]:
    """Frames named by ``spec`` ("1001-1100", "1001-1100x2", "5", "1-3,7,10-20x5"), sorted, unique.

    The step only thins the run; the last frame is included when the step lands on it. A range naming
    more than `MAX_FRAMES` frames (counted arithmetically first) is refused.
    """
    spec = str(spec)
    if len(spec) > 64 * MAX_FRAMES:  # longer than any list of MAX_FRAMES frame numbers
        raise BadInputError(f"frame range of {len(spec)} characters is too long (at most {MAX_FRAMES} frames)")
    items = [item.strip() for item in spec.split(",")]
    if not any(items):
        raise BadInputError(f"empty frame range {_short(spec)!r}")
    runs: list[range] = []
    count = 0
    for item in items:
        match = _RANGE_ITEM.match(item.replace(" ", ""))
        if not match:
            raise BadInputError(f"bad frame range {_short(spec)!r}: cannot read {_short(item)!r} "
                                f"(use e.g. 1001-1100, 1001-1100x2, 5)")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        step = int(match.group(3)) if match.group(3) is not None else 1
        if end < start:
            raise BadInputError(f"bad frame range {spec!r}: {item!r} ends before it starts")
        if step < 1:
            raise BadInputError(f"bad frame range {spec!r}: step in {item!r} must be at least 1")
        count += (end - start) // step + 1  # arithmetic: len(range) overflows past 2**63
        if count > MAX_FRAMES:
            raise BadInputError(f"frame range {_short(spec)!r} names more than {MAX_FRAMES} frames "
                                f"(the most one run takes)")
        runs.append(range(start, end + 1, step))
    frames: set[int] = set()
    for run in runs:
        frames.update(run)
    return sorted(frames)


def _short(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters for an error message."""
    return text if len(text) <= limit else text[:limit] + "..."


def format_frame_range(frames: list[int]) -> str:
    """Compact spelling of ``frames`` that `parse_frame_range` reads back: [1,2,3,5] -> "1-3,5".

    Evenly stepped runs of three or more frames use the ``x`` step ("1-9x2").
    """
    values = sorted(set(int(f) for f in frames))
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        if i + 1 < len(values):
            step = values[i + 1] - values[i]
            while j + 1 < len(values) and values[j + 1] - values[j] == step:
                j += 1
            if step > 1 and j - i < 2:  # two frames with a gap read better as a list
                j = i
        else:
            step = 1
        if j == i:
            parts.append(str(values[i]))
        elif step == 1:
            parts.append(f"{values[i]}-{values[j]}")
        else:
            parts.append(f"{values[i]}-{values[j]}x{step}")
        i = j + 1
    return ",".join(parts)


def _last_token(pattern: str) -> re.Match[str] | None:
    """The frame token of ``pattern``: the last one, so a stray ``#`` in a folder name never wins over the file name's."""
    matches = list(_TOKEN.finditer(pattern))
    return matches[-1] if matches else None


def _token_width(token: re.Match[str]) -> int:
    text = token.group(0)
    if text.startswith("%"):
        digits = token.group(1)
        return int(digits) if digits else 0
    return len(text)


def has_frame_token(pattern: str) -> bool:
    """True when ``pattern`` holds ``#``/``@`` runs or a ``%0Nd`` field."""
    return _last_token(pattern) is not None


def frame_path(pattern: str, frame: int) -> str:
    """``pattern`` with its frame token replaced by ``frame``, zero padded to the token width."""
    token = _last_token(pattern)
    if token is None:
        raise BadInputError(f"pattern {pattern} {NO_TOKEN_HINT}")
    return pattern[: token.start()] + f"{int(frame):0{_token_width(token)}d}" + pattern[token.end():]


def without_frame_token(name: str) -> str:
    """``name`` with its frame token and the separator before it removed: "mattes.####" -> "mattes"."""
    token = _last_token(name)
    if token is None:
        return name
    return name[: token.start()].rstrip("._-") + name[token.end():]


def check_output_pattern(pattern: str) -> None:
    """Raise OutputError when an output pattern cannot name one matte EXR per frame.

    The pattern must end in ``.exr``: a pattern like ``IMG_####.jpg`` would otherwise replace photos.
    """
    if not has_frame_token(pattern):
        raise OutputError(f"output pattern {pattern} {NO_TOKEN_HINT}")
    if not pattern.lower().endswith(MATTE_EXTENSIONS):
        raise OutputError(f"output pattern {pattern} must end in .exr (mattes are EXR files)")
    token = _last_token(pattern)
    if os.sep in pattern[token.end():]:
        raise OutputError(f"output pattern {pattern}: the frame token must be in the file name, not a folder")


def find_missing(pattern: str, frames: list[int]) -> list[int]:
    """The frames of ``frames`` whose file does not exist, in the given order.

    When the frame token is in the file name, the folder is listed once instead of asking the file
    system about each frame, so the cost is linear in the folder and the request, not per-file calls.
    """
    token = _last_token(pattern)
    if token is None or os.sep in pattern[token.end():] or len(frames) < 64:
        return [f for f in frames if not os.path.isfile(frame_path(pattern, f))]
    folder = os.path.dirname(frame_path(pattern, frames[0])) or "."
    try:
        with os.scandir(folder) as entries:
            present = {entry.name for entry in entries if entry.is_file()}
    except OSError:
        present = set()
    return [f for f in frames if os.path.basename(frame_path(pattern, f)) not in present]


def discover_frames(pattern: str) -> list[int]:
    """Frames on disk whose file name is exactly what `frame_path` would give, sorted.

    A file must match the padding too ("plate.0012.exr" for ``####``, not "plate.12.exr"),
    so two sequences that differ only in padding are never mixed.
    """
    token = _last_token(pattern)
    if token is None:
        raise BadInputError(f"pattern {pattern} {NO_TOKEN_HINT}")
    head, tail = pattern[: token.start()], pattern[token.end():]
    digits = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail))
    frames = set()
    for path in glob.glob(glob.escape(head) + "*" + glob.escape(tail)):
        match = digits.fullmatch(path)
        if match and frame_path(pattern, int(match.group(1))) == path and os.path.isfile(path):
            frames.add(int(match.group(1)))
    return sorted(frames)


def require_frames(pattern: str, frames: list[int]) -> None:
    """Raise FrameError naming the first missing frame (and how many are missing in all)."""
    missing = find_missing(pattern, frames)
    if not missing:
        return
    first = missing[0]
    message = f"missing frame {first}: {frame_path(pattern, first)}"
    if len(missing) > 1:
        message += f" ({len(missing)} of {len(frames)} frames missing: {format_frame_range(missing)})"
    raise FrameError(message, frame=first, missing=missing)
