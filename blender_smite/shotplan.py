"""Pure planning for a Blender SMITE job: keyframes, part names, frame numbers, paths, manifest.

Nothing here imports ``bpy``: the operators gather plain values from Blender and hand them to
these functions, so the rules (which file is which frame, what a part may be called, where the
cache lives) are tested in the core's venv without Blender. Rules the Nuke node shares (frame lists,
job settings, part names) are the core's ``smite.hostapi``, loaded privately through `corelink`. Python 3.9-compatible.
"""

from __future__ import annotations

import os
import re
from typing import Any, List, Mapping, Sequence, Tuple

from . import corelink

# Blender colourspace names -> names in the core's OCIO config (pinned CG config); others pass through.
COLORSPACES = {
    "sRGB": "sRGB - Texture",
    "Linear": "Linear Rec.709 (sRGB)",  # Blender < 4.0
    "Linear Rec.709": "Linear Rec.709 (sRGB)",
    "Linear Rec.2020": "Linear Rec.2020",
    "ACEScg": "ACEScg",
    "ACES2065-1": "ACES2065-1",
    "Non-Color": "Raw",
    "Raw": "Raw",
}


class PlanError(ValueError):
    """A one-line message for the artist, naming the field or file at fault."""


def parse_keyframes(text: str, default: int) -> List[int]:
    """Frames listed as ``"1,12,30"`` (also spaces, ``a-b`` and ``a-bxN`` ranges); ``default`` when empty.

    Blender does not expose the times of mask shape keys to Python, so the artist types them.
    """
    try:
        frames = corelink.hostapi("frames").parse_frames(text)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    return frames or [int(default)]


def part_names(layer_names: Sequence[str]) -> List[str]:
    """Core part names for mask layers, in order: invalid characters -> ``_``, unique, start with a letter.

    The core (and the EXR channel ``smite_<part>.A``) accepts only ``[A-Za-z][A-Za-z0-9_]*``, while a
    mask layer may be called "Left Arm.001"; the mapping is deterministic so a re-run finds its outputs.
    """
    out: List[str] = []
    for raw in layer_names:
        name = re.sub(r"[^A-Za-z0-9_]+", "_", raw.strip()).strip("_") or "part"
        if not name[0].isalpha():
            name = "p_" + name
        base, n = name, 2
        while name in out:
            name = f"{base}_{n}"
            n += 1
        out.append(name)
    return out


def sequence_pattern(path: str) -> Tuple[str, int]:
    """``(pattern, number)`` for one file of an image sequence: the last digit run of the file name
    becomes ``%0Nd`` (the core's frame token). ``/p/plate.0101.exr`` -> ``("/p/plate.%04d.exr", 101)``.
    """
    folder, name = os.path.split(path)
    runs = list(re.finditer(r"\d+", name))
    if not runs:
        raise PlanError(f"plate {path} has no frame number in its file name (an image sequence is needed)")
    run = runs[-1]
    pattern = name[: run.start()] + f"%0{len(run.group(0))}d" + name[run.end():]
    return os.path.join(folder, pattern), int(run.group(0))


def discover_frames(pattern: str) -> List[int]:
    """Frame numbers present on disk for a ``%0Nd`` pattern (padding as written, or wider)."""
    folder, name = os.path.split(pattern)
    m = re.search(r"%0(\d+)d", name)
    if m is None:
        raise PlanError(f"pattern {pattern} has no %0Nd frame field")
    regex = re.compile(re.escape(name[: m.start()]) + r"(\d{%s,})" % m.group(1) + re.escape(name[m.end():]) + "$")
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    return sorted(int(x.group(1)) for x in map(regex.match, names) if x is not None)


class FrameMap:
    """Scene frame <-> file number of a sequence, Blender's rule for an image user or movie clip:
    ``file = scene - start + 1 + offset`` (``start`` = scene frame where the sequence begins).
    """

    def __init__(self, start: int, offset: int) -> None:
        self.start = int(start)
        self.offset = int(offset)

    def file_frame(self, scene_frame: int) -> int:
        return int(scene_frame) - self.start + 1 + self.offset

    def scene_frame(self, file_frame: int) -> int:
        return int(file_frame) + self.start - 1 - self.offset

    def __repr__(self) -> str:
        return f"FrameMap(start={self.start}, offset={self.offset})"


def format_frames(frames: Sequence[int]) -> str:
    """A core frame range string (``"0-59"``, ``"1,5,9"``) for ``frames``."""
    text = corelink.hostapi("frames").format_frames(frames)
    if not text:
        raise PlanError("no frames to segment")
    return text


def core_colorspace(blender_name: str) -> str:
    """The core's name for a Blender colourspace (unknown names pass through; the core lists valid ones)."""
    return COLORSPACES.get(blender_name, blender_name)


def cache_folder(blend_path: str, scene: str, mask: str, override: str = "", temp: str = "") -> str:
    """Where references and mattes go: ``override`` if set, else ``<blend dir>/smite_cache/<scene>_<mask>``
    (``temp`` dir when the file was never saved)."""
    if override:
        return os.path.abspath(override)
    return corelink.hostapi("shotcache").default_folder(blend_path, [scene, mask], temp or os.getcwd())


def matte_token(files: Sequence[int]) -> str:
    """The matte pattern's frame token: as wide as the largest plate file number, at least 4 digits."""
    return f"%0{max(4, len(str(max(files))))}d"


def matte_socket(part: str) -> str:
    """How Blender names a part's output on an Image node of the matte EXR: ``smite_<part>.A`` is read
    as pass ``smite_<part>`` (channel A) of the unnamed layer."""
    return corelink.hostapi("names").layer_name(part)


def build_manifest(plate: str, frames: Sequence[int], parts: Sequence[str],
                   references: Mapping[int, Mapping[str, str]], colorspace: str, base_dir: str = "",
                   name: str = "") -> Any:
    """The shot manifest (`smite.hostapi.shotcache.shot_manifest`); its refusals as a PlanError."""
    try:
        return corelink.hostapi("shotcache").shot_manifest(plate, frames, colorspace, parts, references,
                                                           base_dir=base_dir, name=name, what="mask layer")
    except ValueError as exc:
        raise PlanError(str(exc)) from None


def matte_image_user(fmap: FrameMap, first: int, last: int) -> Tuple[int, int, int]:
    """``(frame_start, frame_offset, frame_duration)`` for an Image node on the matte sequence whose files
    ``first..last`` are numbered like the plate, so matte file N shows at the scene frame of plate file N.

    Blender clamps a sequence to its duration, so the sequence starts at the first matte, not at the plate.
    """
    if last < first:
        raise PlanError(f"no mattes in {first}-{last}")
    return fmap.scene_frame(first), int(first) - 1, int(last) - int(first) + 1


def job_settings(method: str, backend: str, part_model: str = "", sd_model: str = "") -> Dict[str, object]:
    """The ``settings`` object of a server ``segment``/``learn`` call (diffusion fields nested)."""
    return corelink.hostapi("jobsettings").job_settings(method, backend, part_model, sd_model)


def part_model_path(field: str, cache: str) -> str:
    """The part model Learn writes and the farm's Learn task targets: the field, else ``<cache>/parts.smite``."""
    return field or corelink.hostapi("shotcache").ShotCache(cache).part_model


def segment_part_model(field: str, cache: str) -> str:
    """Part model a Segment uses: the field's file, else Learn's default file once it exists, else ``""``."""
    return corelink.hostapi("jobsettings").segment_part_model(field, part_model_path("", cache))
