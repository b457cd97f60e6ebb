"""The shot cache: one folder per host shot holding its references, ``shot.json``, mattes and part model.

Both hosts use this one layout and this one manifest builder, so a shot prepared in Nuke and one
prepared in Blender look alike on disk and to the core (and to the farm, which reads ``shot.json``)::

    <cache>/shot.json                      the shot manifest (`shot_manifest`), written atomically
    <cache>/references/<part>.<frame>.exr  one rendered mask per part and keyframe (plate file frame, 4+ digits)
    <cache>/mattes/mattes.<frame>.exr      the core's output
    <cache>/parts.smite                    the part model Learn writes
    <cache>/farm/                          farm job files (`farmcmd`)

Mask paths under the cache are written relative to ``shot.json``, so the folder can move (or be
mounted elsewhere on the farm) as a whole. Older caches kept references elsewhere (Nuke: ``refs/``,
Blender: 5-digit names); they are never read: every Segment renders its references again and
``shot.json`` names the new files, and because the core's job key holds those paths, mattes made
from an old layout are recomputed, not reused. `legacy_folders` names what can be deleted.
Standard library only, Python 3.9-safe.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, Iterable, List, Mapping, Sequence

from . import atomic
from .frames import format_frames
from .names import check_part_names

CACHE_FOLDER = "smite_cache"  # beside the host's document: <document folder>/smite_cache/<shot>
SHOT_FILE = "shot.json"
REFERENCES = "references"
MATTES = "mattes"
PART_MODEL = "parts.smite"
REF_DIGITS = 4
LEGACY_FOLDERS = ("refs",)  # Nuke's reference folder before this layout


class ShotCache:
    """The paths inside one shot cache folder."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.manifest = os.path.join(self.root, SHOT_FILE)
        self.references = os.path.join(self.root, REFERENCES)
        self.part_model = os.path.join(self.root, PART_MODEL)

    def reference(self, part: str, frame: int) -> str:
        """The rendered mask of ``part`` at plate file frame ``frame``: ``references/<part>.0012.exr``."""
        return os.path.join(self.references, f"{part}.{int(frame):0{REF_DIGITS}d}.exr")

    def mattes(self, token: str = "####") -> str:
        """The core's output pattern, with the host's frame token (``####`` for Nuke, ``%05d``...)."""
        return os.path.join(self.root, MATTES, f"mattes.{token}.exr")

    def __repr__(self) -> str:
        return f"ShotCache({self.root!r})"


def safe_name(text: str) -> str:
    """A folder-safe name (script, node, scene or mask name) for a shot cache."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "shot"


def default_folder(document: str, labels: Sequence[str], temp_dir: str) -> str:
    """``<document folder>/smite_cache/<label>_<label>``; under ``temp_dir`` for a document never saved."""
    root = os.path.dirname(os.path.abspath(document)) if document else temp_dir
    return os.path.join(root, CACHE_FOLDER, "_".join(safe_name(label) for label in labels))


def legacy_folders(root: str) -> List[str]:
    """Folders an older layout left in the cache at ``root`` (never read; safe to delete)."""
    return [os.path.join(root, name) for name in LEGACY_FOLDERS if os.path.isdir(os.path.join(root, name))]


def shot_manifest(plate: str, frames: Iterable[int], colorspace: str, parts: Sequence[str],
                  references: Mapping[int, Mapping[str, str]], base_dir: str = "",
                  name: str = "", what: str = "part") -> Dict[str, Any]:
    """The shot manifest (``smite.config.ShotSpec`` format): ``references`` maps plate file frame -> {part: mask}.

    A keyframe with no masks is left out (a part absent there). Checks what the core would refuse
    anyway, but names the keyframe or part first (``what``: the host's word for a part's source, as in
    `names.check_part_names`): ValueError with one line. Masks under ``base_dir`` (the manifest's
    folder) are written relative to it.
    """
    frame_list = sorted(set(int(f) for f in frames))
    if not frame_list:
        raise ValueError("the plate has no frames to segment")
    check_part_names(parts, what)
    entries = []
    for frame in sorted(references):
        if int(frame) not in frame_list:
            raise ValueError(f"keyframe {frame} is outside the plate's frames {format_frames(frame_list)}")
        masks = {}
        for part, path in references[frame].items():
            if part not in parts:
                raise ValueError(f"keyframe {frame}: unknown part {part!r}")
            masks[part] = _relative(path, base_dir) if base_dir else path
        if masks:
            entries.append({"frame": int(frame), "masks": masks})
    if not entries:
        raise ValueError("no keyframes: draw the parts on at least one keyframe")
    drawn = {part for entry in entries for part in entry["masks"]}
    missing = [part for part in parts if part not in drawn]
    if missing:
        raise ValueError(f"part {missing[0]!r} is empty on every keyframe")
    manifest: Dict[str, Any] = {"plate": plate, "frames": format_frames(frame_list), "colorspace": colorspace,
                                "parts": list(parts), "references": entries}
    if name:
        manifest["name"] = name
    return manifest


def write_manifest(cache: ShotCache, manifest: Mapping[str, Any]) -> str:
    """Write ``shot.json`` atomically (a farm node or the server never reads half of it); returns its path."""
    return atomic.write_json(cache.manifest, manifest)


def _relative(path: str, base_dir: str) -> str:
    full = os.path.abspath(path)
    base = os.path.abspath(base_dir)
    if os.path.commonpath([full, base]) == base:
        return os.path.relpath(full, base).replace(os.sep, "/")
    return full
