"""Real-Blender end-to-end check of the add-on; run with .venv-blender-<X.Y>/bin/python (bpy 4.2, 4.5, 5.0).

Registers ``blender_smite``, builds a scene (plate = a few frames of tests/data/chair as an image
sequence, a Mask with one layer "chair" drawn as a polygon around the chair at frame 0), runs
``bpy.ops.smite.segment()`` against a real `smite serve` (weight-free backend), renders the
compositor with the "SMITE Matte" output at a few frames, records the settings Segment/Learn send
with the diffusion backend, runs ``bpy.ops.smite.send_to_farm()``, and writes ``result.json`` into the
folder given as the first argument. Assertions on pixels happen in tests/test_blender_addon.py
(core venv: OIIO reads the mattes); what only Blender can see is asserted here.

Usage: run_blender_test.py OUT_DIR [EXTENSION_ZIP]
With a zip (built by install/blender_install.py) the add-on is installed and enabled through Blender's
extension system (set BLENDER_USER_RESOURCES to a scratch folder first); without one it is imported
from this checkout and the core is found through $SMITE_PYTHON / the repo.
"""

import json
import os
import sys

import bpy
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAIR = os.path.join(REPO, "tests", "data", "chair")
FRAMES = 5  # plate files 0..4 at scene frames 1..5
RENDER_AT = (1, 3, 5)


def chair_bbox():
    """Pixel bbox (x0, y0, x1, y1; y down) of label 1 in the frame-0 mask, read through Blender."""
    img = bpy.data.images.load(os.path.join(CHAIR, "masks", "00000.png"))
    w, h = img.size
    px = np.empty(w * h * img.channels, np.float32)
    img.pixels.foreach_get(px)
    fg = px.reshape(h, w, img.channels)[::-1, :, :3].max(axis=2) > 0  # Blender rows go bottom-up
    bpy.data.images.remove(img)
    ys, xs = np.nonzero(fg)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, w, h


def to_mask_space(x, y, w, h):
    """Pixel (y down) -> mask coordinates: x over the width, y about the centre scaled by h/w, y up."""
    return x / w, ((1.0 - y / h) - 0.5) * h / w + 0.5


def build_scene():
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, FRAMES
    scene.frame_set(1)
    plate = bpy.data.images.load(os.path.join(CHAIR, "frames", "00000.jpg"))
    plate.source = "SEQUENCE"
    x0, y0, x1, y1, w, h = chair_bbox()
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = w, h, 100
    # Only the compositor's output is checked: Workbench renders the (empty) view layer at once, where
    # EEVEE under software GL spends ~30 s per frame on 4.x.
    scene.render.engine = "BLENDER_WORKBENCH"
    mask = bpy.data.masks.new("Roto")
    layer = mask.layers.new(name="chair")
    spline = layer.splines.new()
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    spline.points.add(len(corners) - len(spline.points))
    for point, (x, y) in zip(spline.points, corners):
        point.co = to_mask_space(x, y, w, h)
        point.handle_type = "VECTOR"
    spline.use_cyclic = True
    return scene, plate, mask, (x0, y0, x1, y1)


def render_output(compositor, scene, node, out_dir):
    """Render the scene's compositor with the part's output wired to the render output."""
    tree = compositor.comp_tree(scene)
    tree.links.new(node.outputs["chair"], compositor.as_alpha(tree, compositor.render_output(tree)))
    settings = scene.render.image_settings
    settings.file_format, settings.color_mode, settings.color_depth = "OPEN_EXR", "BW", "32"
    paths = {}
    for frame in RENDER_AT:
        scene.frame_set(frame)
        scene.render.filepath = os.path.join(out_dir, f"render.{frame:04d}.exr")
        scene.render.use_file_extension = False
        bpy.ops.render.render(write_still=True)
        paths[frame] = scene.render.filepath
    return paths


def check_settings_and_farm(addon, props, out_dir):
    """The settings Segment and Learn would send with the diffusion backend, then Send to farm."""
    jobs = sys.modules[addon.__name__ + ".jobs"]
    props.backend = "diffusion"
    props.part_model = os.path.join(out_dir, "chair.smite")
    props.sd_model = "/models/sd21"
    sent = {}
    for method in ("segment", "learn"):
        params = jobs.Job(bpy.context, method).prepare()
        sent[method] = {"out": params["out"], "settings": params["settings"]}
    props.farm_chunk = 2
    result = bpy.ops.smite.send_to_farm()
    assert result == {"FINISHED"}, (result, props.status)
    assert not props.running
    return sent, props.status


def load_addon(zip_path):
    """The add-on's package module: installed from the zip as an extension, or imported from the repo."""
    if zip_path:
        result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                          enable_on_install=True)
        assert result == {"FINISHED"}, result
        name = "bl_ext.user_default.blender_smite"
        assert name in bpy.context.preferences.addons, "the extension did not enable"
        return sys.modules[name], lambda: bpy.ops.preferences.addon_disable(module=name)
    sys.path.insert(0, REPO)
    import blender_smite

    blender_smite.register()
    return blender_smite, blender_smite.unregister


def main(out_dir, zip_path=""):
    addon, unregister = load_addon(zip_path)
    compositor = sys.modules[addon.__name__ + ".compositor"]
    scene, plate, mask, bbox = build_scene()
    scenes_before = sorted(s.name for s in bpy.data.scenes)
    props = scene.smite
    props.plate_image = plate
    props.mask = mask
    props.keyframes = ""  # default: the current frame (1 -> plate file 0)
    props.cache_dir = os.path.join(out_dir, "cache")
    properties = sys.modules[addon.__name__ + ".properties"]
    menus = {"before": [item[0] for item in properties.backend_items(props, bpy.context)]}  # no server yet
    chunk_default = props.farm_chunk
    result = bpy.ops.smite.segment()
    assert result == {"FINISHED"}, (result, props.status)
    first_status = props.status
    result = bpy.ops.smite.segment()  # re-run: resumes (nothing to do) and reloads the same group
    assert result == {"FINISHED"}, (result, props.status)

    assert sorted(s.name for s in bpy.data.scenes) == scenes_before, "the temporary scene was left behind"
    assert [l.name for l in mask.layers] == ["chair"], "the user's mask was edited"
    tree = compositor.comp_tree(scene)
    groups = [n for n in tree.nodes
              if n.bl_idname == "CompositorNodeGroup" and n.node_tree.name.startswith("SMITE Matte")]
    assert len(groups) == 1, f"expected one SMITE Matte node after two runs, found {len(groups)}"
    node = groups[0]
    outputs = [s.name for s in node.outputs]
    assert outputs == ["chair"], outputs
    inner = node.node_tree.nodes["SMITE mattes"]
    assert inner.image.colorspace_settings.name == "Non-Color"
    menus["server"] = [item[0] for item in properties.backend_items(props, bpy.context)]
    renders = render_output(compositor, scene, node, out_dir)
    sent, farm_status = check_settings_and_farm(addon, props, out_dir)
    info = {
        "status": first_status,
        "bbox": bbox,
        "reference": os.path.join(props.cache_dir, "references", "chair.0000.exr"),
        "matte_pattern": os.path.join(props.cache_dir, "mattes", "mattes.%04d.exr"),
        "renders": {str(frame): path for frame, path in renders.items()},
        "plate_file_of_frame": {str(f): f - 1 for f in RENDER_AT},
        "image_user": [inner.frame_start, inner.frame_offset, inner.frame_duration],
        "blender": bpy.app.version_string,
        "addon": addon.__name__,
        "sent": sent,
        "farm_status": farm_status,
        "backend_menus": menus,
        "farm_chunk_default": chunk_default,
    }
    with open(os.path.join(out_dir, "result.json"), "w") as handle:
        json.dump(info, handle, indent=1)
    unregister()
    print("run_blender_test: ok")


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "")
