"""The shot manifest a "SMITE Matte" node hands to the core, built from plain values.

The node collects strings and numbers from Nuke (Read file/first/last/colourspace, Roto
layer names, rendered reference paths); everything below turns them into the same JSON a
farm job or `smite segment` reads, so an interactive run and a farm run see one shot.
Paths inside the shot cache are written relative to the manifest, so a cache folder can
move (or be mounted elsewhere on the farm) as a whole.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

from . import hostconfig

hostconfig.import_hostapi()  # the core on sys.path when Nuke's init.py did not put it there

from smite.hostapi import jobsettings  # noqa: E402  (rules shared with the Blender add-on)
from smite.hostapi.jobsettings import job_settings  # noqa: E402,F401  (the server call's ``settings``)
from smite.hostapi.names import LAYER_PREFIX, PART_NAME, layer_name  # noqa: E402,F401  (the core's part-name rule)
NUKE_CHANNEL = "alpha"  # Nuke reads EXR channel "smite_x.A" as "smite_x.alpha"
DEFAULT_COLORSPACE = "sRGB - Texture"

# Nuke's built-in (non-OCIO, "nuke-default") colourspace names -> the core's OCIO config names.
NUKE_DEFAULT_COLORSPACES = {
    "sRGB": "sRGB - Texture",
    "linear": "Linear Rec.709 (sRGB)",
    "rec709": "Gamma 2.4 Rec.709 - Texture",  # closest scene-referred reading of Nuke's rec709 curve
    "Gamma2.2": "Gamma 2.2 Rec.709 - Texture",
    "raw": "Raw",
}
_DEFAULT_WRAPPER = re.compile(r"^default\s*\((.*)\)$")  # Nuke shows "default (sRGB)" for the default choice
_VIEW_TOKEN = re.compile(r"%[Vv]")


def channel_name(part: str) -> str:
    """The one channel of `layer_name` as Nuke names it (``smite_<part>.alpha``)."""
    return f"{layer_name(part)}.{NUKE_CHANNEL}"


def check_part_names(names: Sequence[str]) -> List[str]:
    """Roto layer names as part names; ValueError naming the first one the core would refuse."""
    if not names:
        raise ValueError("the Roto has no top-level layers: make one layer per part, named after the part")
    seen = set()
    for name in names:
        if not PART_NAME.match(name):
            raise ValueError(f"Roto layer {name!r} is not a valid part name "
                             "(start with a letter; letters, digits and _ only)")
        if name in seen:
            raise ValueError(f"two Roto layers are called {name!r}: part names must be unique")
        seen.add(name)
    return list(names)


def plate_pattern(file_value: str) -> str:
    """A Read's file knob as a core frame pattern (``%04d``, ``####`` and ``@`` pass through).

    Stereo view tokens and single files are refused: a SMITE shot is one view, one sequence.
    """
    path = file_value.strip()
    if not path:
        raise ValueError("the plate Read has no file")
    if _VIEW_TOKEN.search(path):
        raise ValueError(f"plate {path} has a view token (%V/%v): pick one view with a OneView upstream")
    if not re.search(r"#+|@+|%0?\d*d", os.path.basename(path)):
        raise ValueError(f"plate {path} is a single file: SMITE needs an image sequence (####, %04d)")
    return path


def plate_colorspace(value: str, raw: bool = False) -> str:
    """The core's colourspace for a Read's ``colorspace`` knob (``raw`` wins; nuke-default names mapped)."""
    if raw:
        return "Raw"
    name = value.strip()
    match = _DEFAULT_WRAPPER.match(name)
    if match:
        name = match.group(1).strip()
    if not name:
        return DEFAULT_COLORSPACE
    return NUKE_DEFAULT_COLORSPACES.get(name, name)


class CachePaths:
    """The files one node keeps in its shot cache folder."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.refs_dir = os.path.join(self.root, "refs")
        self.manifest = os.path.join(self.root, "shot.json")
        self.mattes = os.path.join(self.root, "mattes", "mattes.####.exr")
        self.model = os.path.join(self.root, "parts.smite")

    def ref_pattern(self, part: str) -> str:
        """Where the rendered roto alpha of ``part`` goes: ``refs/<part>.####.exr``."""
        return os.path.join(self.refs_dir, f"{part}.####.exr")

    def ref_file(self, part: str, frame: int) -> str:
        return os.path.join(self.refs_dir, f"{part}.{int(frame):04d}.exr")


def default_cache_dir(script_path: str, node_name: str, temp_dir: Optional[str] = None) -> str:
    """``<script folder>/smite_cache/<script>_<node>``, or the temp folder for an unsaved script."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", node_name) or "SMITE"
    if script_path:
        stem = os.path.splitext(os.path.basename(script_path))[0]
        return os.path.join(os.path.dirname(os.path.abspath(script_path)), "smite_cache", f"{stem}_{safe}")
    return os.path.join(temp_dir or tempfile.gettempdir(), "smite_cache", safe)


def build_manifest(plate: str, first: int, last: int, colorspace: str, parts: Sequence[str],
                   masks: Mapping[int, Mapping[str, str]], base_dir: str, name: str = "") -> Dict[str, Any]:
    """The shot manifest dict (``smite.config.ShotSpec`` format) with per-part mask references.

    ``masks`` maps keyframe -> {part: mask file}; files under ``base_dir`` are written relative
    to it (the manifest's folder). Raises ValueError naming the bad frame or part.
    """
    first, last = int(first), int(last)
    if last < first:
        raise ValueError(f"plate frame range {first}-{last} ends before it starts")
    check_part_names(list(parts))
    if not masks:
        raise ValueError("no keyframe references to send")
    references = []
    for frame in sorted(masks):
        if frame < first or frame > last:
            raise ValueError(f"keyframe {frame} is outside the plate's frames {first}-{last}")
        entry = {}
        for part, path in masks[frame].items():
            if part not in parts:
                raise ValueError(f"keyframe {frame}: unknown part {part!r}")
            entry[part] = _relative(path, base_dir)
        if not entry:
            raise ValueError(f"keyframe {frame} has no part masks")
        references.append({"frame": int(frame), "masks": entry})
    manifest: Dict[str, Any] = {
        "plate": plate,
        "frames": f"{first}-{last}",
        "colorspace": colorspace or DEFAULT_COLORSPACE,
        "parts": list(parts),
        "references": references,
    }
    if name:
        manifest["name"] = name
    return manifest


def _relative(path: str, base_dir: str) -> str:
    full = os.path.abspath(path)
    base = os.path.abspath(base_dir)
    if os.path.commonpath([full, base]) == base:
        return os.path.relpath(full, base).replace(os.sep, "/")
    return full


def write_json_atomic(path: str, data: Mapping[str, Any]) -> str:
    """Write ``data`` as indented JSON via a temp file + rename (a reader never sees half a file)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".smite-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def segment_part_model(knob_value: str, default_path: str) -> str:
    """Part model a Segment uses: the knob's file, else Learn's default once it exists, else ``""``."""
    return jobsettings.segment_part_model(knob_value.strip(), default_path)
