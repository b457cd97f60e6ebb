"""One SMITE job seen from Blender: prepare (render references, write the manifest), submit, poll.

The same `Job.step` serves the modal operator's timer (interactive) and a blocking loop
(``bpy.ops.smite.segment()`` from a script or a headless test), so both paths are the one
that is tested. The server process is shared by all jobs of a Blender session (`Session`).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, List, Optional

import bpy

from . import compositor, corelink, shotplan


class Session:
    """The add-on's one `smite serve` process (started on first use, stopped on unregister)."""

    client: Any = None
    key: tuple = ()

    @classmethod
    def get(cls, core: str, python: str) -> Any:
        if cls.client is not None and cls.key == (core, python) and cls.client.alive:
            return cls.client
        cls.stop()
        cls.client = corelink.load(core, "client").SmiteClient(python=python, core=core).start()
        cls.key = (core, python)
        cls.client.initialize(client="blender_smite", blender=bpy.app.version_string)
        return cls.client

    @classmethod
    def stop(cls) -> None:
        if cls.client is not None:
            try:
                cls.client.shutdown(timeout=10)
            except Exception:  # shutting down a dead server must not break unregister
                pass
        cls.client = None


def backend_names(context: Any) -> List[str]:
    """The backends to offer: the running server's, else the located core's fallback list, else none."""
    if Session.client is not None and Session.client.alive:
        return corelink.hostapi("jobsettings").backends(Session.client.server_info)
    prefs = preferences(context) if context is not None else None
    core, _ = corelink.locate(getattr(prefs, "core_path", ""), getattr(prefs, "python_path", ""))
    try:
        return list(corelink.load(core, "jobsettings").BACKENDS)
    except ImportError:  # no core yet: the panel says so; nothing can run anyway
        return []


def preferences(context: "bpy.types.Context") -> Any:
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def plate_info(scene: "bpy.types.Scene", props: Any) -> Dict[str, Any]:
    """What the core needs about the plate: pattern, file frames, size, colourspace, frame map."""
    if props.plate_type == "IMAGE":
        img = props.plate_image
        if img is None:
            raise shotplan.PlanError("choose the plate image (an image sequence)")
        if img.source not in ("SEQUENCE", "FILE"):
            raise shotplan.PlanError(f"plate image '{img.name}' must be an image sequence")
        pattern, _ = shotplan.sequence_pattern(bpy.path.abspath(img.filepath))
        files = shotplan.discover_frames(pattern)
        if not files:
            raise shotplan.PlanError(f"no plate files match {pattern}")
        fmap = _image_frame_map(scene, img, files[0])
        size = tuple(img.size) if img.size[0] else _probe_size(pattern % files[0])
        colorspace = shotplan.core_colorspace(img.colorspace_settings.name)
        clip = None
    else:
        clip = props.plate_clip
        if clip is None:
            raise shotplan.PlanError("choose the plate movie clip")
        path = bpy.path.abspath(clip.filepath)
        size = tuple(clip.size)
        colorspace = shotplan.core_colorspace(clip.colorspace_settings.name)
        if clip.source == "SEQUENCE":
            pattern, first = shotplan.sequence_pattern(path)
            files = shotplan.discover_frames(pattern)
            fmap = shotplan.FrameMap(clip.frame_start, first - 1 + clip.frame_offset)
        else:  # a movie file: frames are extracted to EXR in the cache by Blender
            pattern = ""
            fmap = shotplan.FrameMap(clip.frame_start, clip.frame_offset)
            files = [fmap.file_frame(f) for f in range(clip.frame_start, clip.frame_start + clip.frame_duration)]
            colorspace = "Linear Rec.709 (sRGB)"
    if props.use_scene_range:
        wanted = {fmap.file_frame(f) for f in range(scene.frame_start, scene.frame_end + 1)}
        files = [f for f in files if f in wanted]
    if not files:
        raise shotplan.PlanError("the plate has no frames inside the scene's frame range")
    return {"pattern": pattern, "files": files, "fmap": fmap, "size": size, "colorspace": colorspace, "clip": clip}


def _image_frame_map(scene: "bpy.types.Scene", img: "bpy.types.Image", first_file: int) -> shotplan.FrameMap:
    """The frame mapping of an Image node showing ``img`` in the scene's compositor, else Blender's
    default for a freshly loaded sequence (first file at the scene's start frame)."""
    tree = compositor.comp_tree(scene, create=False)
    for node in (tree.nodes if tree is not None else []):
        if node.bl_idname == "CompositorNodeImage" and node.image == img:
            return shotplan.FrameMap(node.frame_start, node.frame_offset)
    return shotplan.FrameMap(scene.frame_start, first_file - 1)


def _probe_size(path: str) -> tuple:
    img = bpy.data.images.load(path, check_existing=False)
    try:
        return tuple(img.size)
    finally:
        bpy.data.images.remove(img)


class Job:
    """Prepare and run one ``segment`` or ``learn`` call; `step` is polled until it returns a final state."""

    def __init__(self, context: "bpy.types.Context", method: str) -> None:
        self.method = method
        self.scene = context.scene
        self.props = context.scene.smite
        prefs = preferences(context)
        self.core, self.python = corelink.locate(getattr(prefs, "core_path", ""), getattr(prefs, "python_path", ""))
        self.client: Any = None
        self.job: Optional[str] = None
        self.state = "preparing"
        self.message = ""
        self.parts: List[str] = []

    # --- before submitting ---------------------------------------------------------------------

    def prepare(self) -> Dict[str, Any]:
        """Render references and build the request params (raises PlanError with an artist-facing line)."""
        props, scene = self.props, self.scene
        if not self.core or not self.python:
            raise shotplan.PlanError("SMITE core not found: set the core folder and Python in the add-on preferences")
        corelink.load(self.core, "farmcmd")  # corelink.hostapi now answers for the core the preferences name
        mask = props.mask
        if mask is None:
            raise shotplan.PlanError("choose a Mask: each of its layers is one part")
        layers = [l.name for l in mask.layers if not l.hide_render]
        self.parts = shotplan.part_names(layers)
        plate = plate_info(scene, props)
        cache = shotplan.cache_folder(bpy.data.filepath, scene.name, mask.name,
                                      bpy.path.abspath(props.cache_dir) if props.cache_dir else "",
                                      tempfile.gettempdir())
        keyframes = shotplan.parse_keyframes(props.keyframes, scene.frame_current)
        fmap = plate["fmap"]
        outside = [k for k in keyframes if fmap.file_frame(k) not in set(plate["files"])]
        if outside:
            raise shotplan.PlanError(f"keyframe {outside[0]} is outside the plate frames being segmented")
        if plate["clip"] is not None and not plate["pattern"]:
            plate["pattern"] = compositor.extract_movie(plate["clip"], [fmap.scene_frame(f) for f in plate["files"]],
                                                        fmap, cache)
        refs = compositor.render_references(mask, layers, self.parts, keyframes, fmap, plate["size"], cache)
        shot = shotplan.build_manifest(plate["pattern"], plate["files"], self.parts, refs, plate["colorspace"],
                                       base_dir=cache, name=f"{scene.name} / {mask.name}")
        shotcache = corelink.hostapi("shotcache")
        shot_cache = shotcache.ShotCache(cache)
        self.shot_path = shotcache.write_manifest(shot_cache, shot)  # the same shot can go to the farm
        self.pattern = shot_cache.mattes(shotplan.matte_token(plate["files"]))
        self.fmap, self.files, self.cache = fmap, plate["files"], cache
        self.key = f"{scene.name}/{mask.name}"  # which SMITE Matte group this shot feeds
        field = bpy.path.abspath(props.part_model) if props.part_model else ""
        self.part_model = shotplan.part_model_path(field, cache)
        self.sd_model = bpy.path.abspath(props.sd_model) if props.sd_model else ""
        if self.method == "learn":
            settings = shotplan.job_settings("learn", props.backend, "", self.sd_model)
            return {"shot": shot, "out": self.part_model, "settings": settings, "base_dir": cache}
        settings = shotplan.job_settings("segment", props.backend, shotplan.segment_part_model(field, cache),
                                         self.sd_model)
        return {"shot": shot, "out": self.pattern, "settings": settings, "base_dir": cache, "force": props.force}

    def farm_commands(self) -> List[Any]:
        """After `prepare`: the ``smite farm openjd`` and ``smite farm deadline`` commands for this shot."""
        farmcmd = corelink.hostapi("farmcmd")
        try:
            return farmcmd.farm_commands(self.python, self.shot_path, self.pattern, self.cache,
                                         self.props.farm_chunk, self.props.backend, self.part_model, self.sd_model)
        except farmcmd.FarmError as exc:
            raise shotplan.PlanError(str(exc)) from None

    def start(self) -> None:
        params = self.prepare()
        self.client = Session.get(self.core, self.python)
        self.job = self.client.submit(self.method, params)
        self.state = "queued"
        self._show(0.0, f"{self.method}: queued")

    # --- while running ---------------------------------------------------------------------------

    def step(self) -> str:
        """Poll once; update the panel; on success build the results. Returns the job state."""
        snap = self.client.poll(self.job)
        self.state = snap["state"]
        shown = corelink.hostapi("progress").describe(snap.get("progress"), self.state)
        frac = shown.fraction
        self._show(frac, shown.text)
        if self.state == "done":
            self.finish(snap.get("result"))
        elif self.state in ("failed", "cancelled"):
            err = snap.get("error") or {}
            self.message = str(err.get("message") or self.state)
            self._show(frac, f"{self.method} {self.state}: {self.message}")
        return self.state

    def cancel(self) -> None:
        if self.client is not None and self.job is not None:
            try:
                self.client.cancel(self.job, timeout=10)
            except Exception as exc:  # already finished, or the server died: poll says which
                self.message = str(exc)

    def finish(self, result: Any) -> None:
        if self.method == "segment":
            node = compositor.build_matte_group(self.scene, self.key, self.parts,
                                                self.pattern, self.fmap, min(self.files), max(self.files))
            self.message = f"mattes in {os.path.dirname(self.pattern)} -> node '{node.name}'"
        else:
            self.message = f"part model written: {result}"
        self._show(1.0, f"{self.method} done: {self.message}")

    def _show(self, fraction: float, text: str) -> None:
        self.props.progress = fraction
        self.props.status = text[:250]
