"""The matte EXR: one half-float channel per part, named ``smite_<part>.A``, plus metadata.

Compositors pick a part with a Shuffle (Nuke) or a Separate node (Blender) by channel name,
so names are stable and layer-style. Half precision and ``zips`` (one scanline per block) keep
files small and fast to read back a line at a time. The metadata records how the frame was made,
which is what lets an interrupted render resume: a frame is kept only if it matches the job.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np

from ..errors import BadInputError, FrameError, SmiteError
from ..hostapi.names import PART_NAME, channel_name
from .image import _open, _read_pixels, write_image

PARTS_KEY = "smite/parts"


def _check_parts(parts: list[str]) -> None:
    for part in parts:
        if not isinstance(part, str) or not PART_NAME.match(part):
            raise BadInputError(f"part name {part!r} is not a valid channel name (start with a letter; letters, digits and _)", part=part)
    seen = set()
    for part in parts:
        if part in seen:
            raise BadInputError(f"part name {part!r} is given twice", part=part)
        seen.add(part)


def write_matte(path: str, probs: np.ndarray, parts: list[str], metadata: Mapping[str, str]) -> None:
    """Write part probabilities ``probs`` (K, H, W) to ``path`` atomically.

    Every key of ``metadata`` becomes a string attribute; ``smite/parts`` (the JSON list of
    ``parts``, in order) is always written and cannot be overridden.
    """
    parts = list(parts)
    _check_parts(parts)
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[0] != len(parts):
        raise BadInputError(f"matte {path}: probabilities of shape {probs.shape} do not match {len(parts)} parts")
    attributes = {str(k): str(v) for k, v in metadata.items()}
    attributes[PARTS_KEY] = json.dumps(parts)
    write_image(
        path,
        np.moveaxis(probs.astype(np.float32), 0, -1),
        dtype="half",
        channel_names=[channel_name(p) for p in parts],
        compression="zips",
        attributes=attributes,
    )


def read_matte(path: str) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """(parts, probs (K, H, W) float32, metadata) of the matte at ``path``.

    Channels are found by name, not position: OpenEXR stores channels sorted by name, so the
    file's order is not the part order. ``metadata`` holds every ``smite/`` string attribute.
    """
    with _open(path) as inp:
        spec = inp.spec()
        try:
            parts = json.loads(spec.get_string_attribute(PARTS_KEY) or "null")
        except json.JSONDecodeError:
            parts = None
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            raise FrameError(f"matte {path} has no valid {PARTS_KEY} attribute", path=path)
        names = list(spec.channelnames)
        missing = [p for p in parts if channel_name(p) not in names]
        if missing:
            raise FrameError(f"matte {path} lacks channel {channel_name(missing[0])}", path=path, part=missing[0])
        pixels = _read_pixels(inp, path, "float")
        metadata = {
            attr.name: attr.value
            for attr in spec.extra_attribs
            if attr.name.startswith("smite/") and isinstance(attr.value, str)
        }
    index = [names.index(channel_name(p)) for p in parts]
    probs = np.ascontiguousarray(np.moveaxis(pixels[:, :, index], -1, 0), dtype=np.float32)
    return parts, probs, metadata


def has_smite_attribute(path: str, key: str = PARTS_KEY) -> bool:
    """True when ``path`` is an image whose header holds string attribute ``key`` (a file SMITE wrote).

    Header only, no pixels: used before overwriting, so a user's photo or plate is never replaced.
    """
    try:
        with _open(path) as inp:
            return bool(inp.spec().get_string_attribute(key))
    except SmiteError:
        return False


EXR_MAGIC = b"v/1\x01"


def is_smite_matte(path: str) -> bool:
    """True when ``path`` is a matte SMITE wrote, or a damaged one (truncated by a full disk or a copy).

    A damaged file counts as ours only when it is an EXR whose first 4 KiB (the header, which lists
    channels near its start) names a ``smite_`` channel; any other file, image or not, is not ours.
    """
    if has_smite_attribute(path):
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.startswith(EXR_MAGIC) and b"smite_" in head and not _opens(path)


def _opens(path: str) -> bool:
    try:
        with _open(path):
            return True
    except SmiteError:
        return False


def matte_is_complete(path: str, expected: Mapping[str, str]) -> bool:
    """True only if ``path`` reads fully, holds the parts of ``expected["smite/parts"]`` and all ``expected`` metadata.

    Used to resume an interrupted render: anything else (missing, truncated, other settings) is redone.
    """
    if not os.path.isfile(path):
        return False
    try:
        parts, _, metadata = read_matte(path)
    except SmiteError:
        return False
    if PARTS_KEY in expected:
        try:
            wanted = json.loads(expected[PARTS_KEY])
        except (TypeError, json.JSONDecodeError):
            return False
        if not isinstance(wanted, list) or not set(wanted) <= set(parts):
            return False
    # The parts list is compared as a list above: its JSON spelling may differ harmlessly.
    return all(metadata.get(key) == str(value) for key, value in expected.items() if key != PARTS_KEY)
