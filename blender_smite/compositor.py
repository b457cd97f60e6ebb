"""The thin bpy layer: compositor trees (4.2, 4.5 and 5.0), reference rendering, the "SMITE Matte" group.

What differs between the Blender releases we test (found by running the real-Blender test on bpy
4.2.23, 4.5.15 and 5.0.1) is detected once, in the constants below, from Blender's RNA (bpy.types'
Python attributes do not list RNA properties, so `hasattr(bpy.types.Scene, ...)` is always False):
the rest of the add-on never asks which Blender it runs in.
"""

from __future__ import annotations

import array
import os
from typing import Dict, List, Optional, Sequence

import bpy

from . import corelink, shotplan

# 5.0: each scene's compositor is a node *group* of its own (scene.compositing_node_group, a datablock in
# bpy.data.node_groups) written through a Group Output node; 4.2/4.5: the tree is embedded in the scene
# (scene.node_tree, freed with the scene) and written through a Composite node.
SCENE_TREE_IS_GROUP = "compositing_node_group" in bpy.types.Scene.bl_rna.properties
# 5.0: the Mask node's options (Feather, Size Source) are input sockets; 4.2/4.5: node properties.
MASK_OPTIONS_ARE_SOCKETS = "use_feather" not in bpy.types.CompositorNodeMask.bl_rna.properties

GROUP_NAME = "SMITE Matte"
GROUP_KEY = "smite_key"  # custom property on the group: which scene/mask it shows


# --- trees ------------------------------------------------------------------------------------

def comp_tree(scene: "bpy.types.Scene", create: bool = True) -> Optional["bpy.types.NodeTree"]:
    """The scene's compositor node tree (created when missing and ``create``)."""
    if SCENE_TREE_IS_GROUP:  # Blender 5.0+
        tree = scene.compositing_node_group
        if tree is None and create:
            tree = bpy.data.node_groups.new(f"{scene.name} Compositor", "CompositorNodeTree")
            scene.compositing_node_group = tree
        return tree
    if create and not scene.use_nodes:  # Blender 4.x
        scene.use_nodes = True
    return scene.node_tree


def _new_output_socket(tree: "bpy.types.NodeTree", name: str, socket_type: str) -> None:
    tree.interface.new_socket(name=name, in_out="OUTPUT", socket_type=socket_type)  # tree.interface: 4.0+


def _clear_outputs(tree: "bpy.types.NodeTree") -> None:
    for item in [i for i in tree.interface.items_tree if i.item_type == "SOCKET" and i.in_out == "OUTPUT"]:
        tree.interface.remove(item)


def render_output(tree: "bpy.types.NodeTree") -> "bpy.types.NodeSocket":
    """The socket whose image a render writes: Group Output "Image" (5.0) or the Composite node (4.x)."""
    if not SCENE_TREE_IS_GROUP:
        node = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite"), None)
        node = node or tree.nodes.new("CompositorNodeComposite")
        return node.inputs[0]
    if not any(i.item_type == "SOCKET" and i.in_out == "OUTPUT" for i in tree.interface.items_tree):
        _new_output_socket(tree, "Image", "NodeSocketColor")
    node = next((n for n in tree.nodes if n.bl_idname == "NodeGroupOutput"), None)
    node = node or tree.nodes.new("NodeGroupOutput")
    return node.inputs[0]


def _set_mask_options(node: "bpy.types.Node") -> None:
    """Feathered, at scene (= plate) size: what the artist sees in the mask editor."""
    if MASK_OPTIONS_ARE_SOCKETS:
        node.inputs["Feather"].default_value = True
        node.inputs["Size Source"].default_value = "Scene Size"
    else:
        node.use_feather = True
        node.size_source = "SCENE"


# --- temporary scene --------------------------------------------------------------------------

class TempScene:
    """A scene used only to render with the compositor; removes itself (and what it made) on exit."""

    def __init__(self, width: int, height: int) -> None:
        self.scene = bpy.data.scenes.new("SMITE temp")
        self.made: List[object] = []
        r = self.scene.render
        r.resolution_x, r.resolution_y, r.resolution_percentage = int(width), int(height), 100
        r.pixel_aspect_x = r.pixel_aspect_y = 1.0
        r.use_compositing = True
        r.use_sequencer = False
        # Nothing 3-D is in this scene: Workbench renders its empty view layer at once (4.x EEVEE spent
        # ~25 s compiling shaders under software GL before the compositor ran).
        r.engine = "BLENDER_WORKBENCH"
        self.scene.view_settings.view_transform = "Standard"
        self.tree = comp_tree(self.scene)
        self.output = render_output(self.tree)

    def __enter__(self) -> "TempScene":
        return self

    def __exit__(self, *exc: object) -> None:
        tree = self.tree
        bpy.data.scenes.remove(self.scene)  # 4.x: frees the embedded tree too (touching it now raises)
        if SCENE_TREE_IS_GROUP and tree is not None and tree.users == 0 and tree.name in bpy.data.node_groups:
            bpy.data.node_groups.remove(tree)
        for block in self.made:
            for coll in (bpy.data.masks, bpy.data.images):
                if block in coll.values():
                    coll.remove(block)
                    break

    def render(self, frame: int, path: str, color_mode: str = "BW") -> str:
        """Render the tree at ``frame`` to a float EXR (linear: no view transform touches mask values)."""
        self.scene.frame_set(int(frame))
        settings = self.scene.render.image_settings
        settings.file_format = "OPEN_EXR"
        settings.color_mode = color_mode
        settings.color_depth = "32"
        settings.exr_codec = "ZIP"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic = corelink.hostapi("atomic")
        partial = atomic.partial_path(path)
        self.scene.render.filepath = partial
        self.scene.render.use_file_extension = False
        bpy.ops.render.render(write_still=True, scene=self.scene.name)
        return atomic.commit(partial, path)  # the core never sees half a reference


def as_alpha(tree: "bpy.types.NodeTree", output: "bpy.types.NodeSocket") -> "bpy.types.NodeSocket":
    """A float input whose value reaches ``output`` as grey *and* alpha (a Set Alpha node on white).

    The core reads a mask file's alpha when it has one; 4.2/4.5 write a BW EXR render as RGBA with
    alpha 1 (5.0 writes one channel), so the mask must be the alpha itself to read the same everywhere.
    """
    node = tree.nodes.new("CompositorNodeSetAlpha")  # default mode (4.x) / Type (5.0): apply to white
    tree.links.new(node.outputs[0], output)
    return node.inputs["Alpha"]


def _max_value(path: str) -> float:
    """Largest first-channel value of an image file (empty-reference check without numpy)."""
    img = bpy.data.images.load(path, check_existing=False)
    try:
        buf = array.array("f", bytes(4 * len(img.pixels)))
        img.pixels.foreach_get(buf)
        return max(buf[0::img.channels]) if len(buf) else 0.0
    finally:
        bpy.data.images.remove(img)


def render_references(mask: "bpy.types.Mask", layers: Sequence[str], parts: Sequence[str],
                      keyframes: Sequence[int], fmap: shotplan.FrameMap, size: Sequence[int],
                      cache: str) -> Dict[int, Dict[str, str]]:
    """Render each mask layer alone at each keyframe (scene frames) with Blender's Mask node.

    Returns ``{plate file frame: {part: exr}}``; a layer empty at a keyframe is left out there
    (the part is absent on that keyframe). The user's mask is copied, never edited.
    """
    refs: Dict[int, Dict[str, str]] = {}
    shot_cache = corelink.hostapi("shotcache").ShotCache(cache)
    with TempScene(size[0], size[1]) as temp:
        node = temp.tree.nodes.new("CompositorNodeMask")
        _set_mask_options(node)
        temp.tree.links.new(node.outputs[0], as_alpha(temp.tree, temp.output))
        for layer_name, part in zip(layers, parts):
            solo = mask.copy()
            temp.made.append(solo)
            for other in [l for l in solo.layers if l.name != layer_name]:
                solo.layers.remove(other)
            node.mask = solo
            for frame in keyframes:
                path = shot_cache.reference(part, fmap.file_frame(frame))
                temp.render(frame, path)
                if _max_value(path) >= 0.5:
                    refs.setdefault(fmap.file_frame(frame), {})[part] = path
                else:
                    os.remove(path)
    return refs


def extract_movie(clip: "bpy.types.MovieClip", scene_frames: Sequence[int], fmap: shotplan.FrameMap,
                  cache: str) -> str:
    """Write a movie clip's frames as linear EXRs (the core reads image sequences); returns the pattern."""
    pattern = os.path.join(cache, "plate", "plate.%05d.exr")
    with TempScene(clip.size[0], clip.size[1]) as temp:
        node = temp.tree.nodes.new("CompositorNodeMovieClip")
        node.clip = clip
        temp.tree.links.new(node.outputs[0], temp.output)
        for frame in scene_frames:
            path = pattern % fmap.file_frame(frame)
            if not os.path.isfile(path):
                temp.render(frame, path, color_mode="RGB")
    return pattern


# --- results ----------------------------------------------------------------------------------

def _matte_image(first_file: str) -> "bpy.types.Image":
    path = os.path.abspath(first_file)
    for img in bpy.data.images:
        if img.source == "SEQUENCE" and os.path.abspath(bpy.path.abspath(img.filepath)) == path:
            img.reload()  # a re-run rewrote the files
            return img
    img = bpy.data.images.load(path, check_existing=False)
    img.name = "SMITE mattes"
    img.source = "SEQUENCE"
    return img


def build_matte_group(scene: "bpy.types.Scene", key: str, parts: Sequence[str], pattern: str,
                      fmap: shotplan.FrameMap, first: int, last: int) -> "bpy.types.Node":
    """Create or refresh the "SMITE Matte" group (one float output per part) and its node in the
    scene's compositor; returns that node. Mattes are data: the image is Non-Color."""
    img = _matte_image(pattern % first)
    img.colorspace_settings.name = "Non-Color"
    group = next((g for g in bpy.data.node_groups if g.get(GROUP_KEY) == key), None)
    if group is None:
        group = bpy.data.node_groups.new(GROUP_NAME, "CompositorNodeTree")
        group[GROUP_KEY] = key
    group.nodes.clear()
    _clear_outputs(group)
    for part in parts:
        _new_output_socket(group, part, "NodeSocketFloat")
    image_node = group.nodes.new("CompositorNodeImage")
    image_node.name = image_node.label = "SMITE mattes"
    image_node.image = img
    start, offset, duration = shotplan.matte_image_user(fmap, first, last)
    image_node.frame_start, image_node.frame_offset, image_node.frame_duration = start, offset, duration
    image_node.use_auto_refresh = True
    out = group.nodes.new("NodeGroupOutput")
    out.location = (300, 0)
    for part in parts:
        socket = image_node.outputs.get(shotplan.matte_socket(part))
        if socket is None:
            names = ", ".join(s.name for s in image_node.outputs)
            raise RuntimeError(f"matte {pattern % first} has no channel for part '{part}' (outputs: {names})")
        group.links.new(socket, out.inputs[part])

    tree = comp_tree(scene)
    node = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeGroup" and n.node_tree == group), None)
    if node is None:
        node = tree.nodes.new("CompositorNodeGroup")
        node.node_tree = group
        node.name = node.label = GROUP_NAME
        node.location = (-300, -300)
    return node
