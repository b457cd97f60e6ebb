"""Scene settings (``scene.smite``) and add-on preferences (where the core lives)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import corelink, jobs

# What the menu says about a backend; the backends themselves come from the core (`backend_items`).
BACKEND_HELP = {
    "propagate": "Weight-free keyframe propagation (no model download)",
    "diffusion": "SMITE with a Stable Diffusion backbone (needs the weights and, ideally, a GPU)",
}
_MENUS: dict = {}  # every item list handed to Blender, kept alive (Blender holds no reference to them)


def backend_items(self, context):
    """The backend menu: the server's backends once one runs, else the core's list (`jobs.backend_names`).

    Numbered by position, as the fixed menu was, so saved scenes keep their choice.
    """
    names = tuple(jobs.backend_names(context))
    if names not in _MENUS:
        _MENUS[names] = [(n, n.title(), BACKEND_HELP.get(n, n), i) for i, n in enumerate(names)]
    return _MENUS[names]


def _get_farm_chunk(self):
    """The chunk the artist set, else the core's default (`smite.hostapi.farmcmd.DEFAULT_CHUNK`)."""
    if "farm_chunk" in self:
        return int(self["farm_chunk"])
    try:
        return int(corelink.hostapi("farmcmd").DEFAULT_CHUNK)
    except ImportError:  # no core yet: nothing to send to a farm
        return 1


def _set_farm_chunk(self, value):
    self["farm_chunk"] = int(value)


class SmitePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    core_path: StringProperty(
        name="Core folder", subtype="DIR_PATH",
        description="The SMITE core sources (<repo>/core); empty: $SMITE_CORE or where installed from")
    python_path: StringProperty(
        name="Core Python", subtype="FILE_PATH",
        description="The core venv's python (or the venv folder); empty: $SMITE_PYTHON or <repo>/.venv")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "core_path")
        layout.prop(self, "python_path")
        core, python = corelink.locate(self.core_path, self.python_path)
        layout.label(text=f"Using core: {core or 'not found'}", icon="CHECKMARK" if core else "ERROR")
        layout.label(text=f"Using Python: {python or 'not found'}", icon="CHECKMARK" if python else "ERROR")


class SmiteSceneSettings(bpy.types.PropertyGroup):
    plate_type: EnumProperty(name="Plate", items=[("IMAGE", "Image", "An image sequence"),
                                                  ("CLIP", "Movie Clip", "A movie clip (sequence or movie file)")])
    plate_image: PointerProperty(name="Plate image", type=bpy.types.Image)
    plate_clip: PointerProperty(name="Plate clip", type=bpy.types.MovieClip)
    mask: PointerProperty(name="Mask", type=bpy.types.Mask, description="Each mask layer is one part")
    keyframes: StringProperty(name="Keyframes", default="",
                              description="Scene frames where the mask is drawn, e.g. 1,12,30 (empty: current frame)")
    use_scene_range: BoolProperty(name="Scene range only", default=True,
                                  description="Segment only plate frames inside the scene's frame range")
    backend: EnumProperty(name="Backend", items=backend_items)
    part_model: StringProperty(name="Part model", subtype="FILE_PATH",
                               description="Part model file written by Learn (default: in the shot cache)")
    sd_model: StringProperty(name="SD model", subtype="FILE_PATH",
                             description="Diffusion backend: Stable Diffusion folder or file (empty: $SMITE_MODEL)")
    farm_chunk: IntProperty(name="Farm chunk", min=1, get=_get_farm_chunk, set=_set_farm_chunk,
                            description="Frames per farm task for Send to farm")
    cache_dir: StringProperty(
        name="Cache", subtype="DIR_PATH",
        description="Shot cache for references and mattes (default: //smite_cache/<scene>_<mask>)")
    force: BoolProperty(name="Recompute all", default=False,
                        description="Rewrite every matte instead of resuming the missing or outdated ones")
    progress: FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    status: StringProperty(name="Status", default="", options={"SKIP_SAVE"})
    running: BoolProperty(default=False, options={"SKIP_SAVE"})


CLASSES = (SmitePreferences, SmiteSceneSettings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.smite = PointerProperty(type=SmiteSceneSettings)


def unregister() -> None:
    del bpy.types.Scene.smite
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
