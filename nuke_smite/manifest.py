"""What a "SMITE Matte" node adds to the shared shot rules: Nuke's plate, colourspace and part names.

The node collects strings and numbers from Nuke (Read file/first/last/colourspace, Roto layer
names); the shot cache layout and the manifest itself are the core's `smite.hostapi.shotcache`,
shared with the Blender add-on, so an interactive run and a farm run see one shot.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import List, Sequence

from . import hostconfig

jobsettings = hostconfig.hostapi("jobsettings")  # rules shared with the Blender add-on
names = hostconfig.hostapi("names")
shotcache = hostconfig.hostapi("shotcache")
job_settings = jobsettings.job_settings  # the server call's ``settings``
layer_name = names.layer_name  # the core's matte layer of a part
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


def check_part_names(layers: Sequence[str]) -> List[str]:
    """Roto layer names as part names; ValueError naming the first one the core would refuse."""
    return names.check_part_names(layers, what="Roto layer")


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


def default_cache_dir(script_path: str, node_name: str, temp_dir: str = "") -> str:
    """``<script folder>/smite_cache/<script>_<node>``, or the temp folder for an unsaved script."""
    if script_path:
        stem = os.path.splitext(os.path.basename(script_path))[0]
        return shotcache.default_folder(script_path, [stem, node_name], "")
    return shotcache.default_folder("", [node_name], temp_dir or tempfile.gettempdir())


def segment_part_model(knob_value: str, default_path: str) -> str:
    """Part model a Segment uses: the knob's file, else Learn's default once it exists, else ``""``."""
    return jobsettings.segment_part_model(knob_value.strip(), default_path)
