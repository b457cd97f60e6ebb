"""The "SMITE" tab in the compositor's sidebar."""

from __future__ import annotations

import bpy


class SMITE_PT_panel(bpy.types.Panel):
    bl_label = "SMITE Matte"
    bl_space_type = "NODE_EDITOR"
    bl_region_type = "UI"
    bl_category = "SMITE"

    @classmethod
    def poll(cls, context):
        space = context.space_data
        return space is not None and getattr(space, "tree_type", "") == "CompositorNodeTree"

    def draw(self, context):
        props = context.scene.smite
        layout = self.layout
        layout.use_property_split = True
        layout.prop(props, "plate_type")
        layout.prop(props, "plate_image" if props.plate_type == "IMAGE" else "plate_clip")
        layout.prop(props, "mask")
        if props.mask is not None:
            names = ", ".join(l.name for l in props.mask.layers if not l.hide_render) or "no layers"
            layout.label(text=f"Parts: {names}")
        layout.prop(props, "keyframes")
        if not props.keyframes.strip():
            layout.label(text=f"Keyframe: current frame ({context.scene.frame_current})")
        layout.prop(props, "use_scene_range")
        layout.prop(props, "backend")
        layout.prop(props, "part_model")
        if props.backend == "diffusion":
            layout.prop(props, "sd_model")
        layout.prop(props, "cache_dir")
        layout.prop(props, "force")
        row = layout.row(align=True)
        row.operator("smite.learn", icon="OUTLINER_OB_LIGHT")
        row.operator("smite.segment", icon="NODE_COMPOSITING")
        row = layout.row(align=True)
        row.prop(props, "farm_chunk")
        row.operator("smite.send_to_farm", icon="NETWORK_DRIVE")
        if props.running:  # layout.progress: Blender 4.0+
            layout.progress(factor=props.progress, type="BAR", text=props.status or "running")
        elif props.status:
            layout.label(text=props.status)
        if props.running:
            layout.label(text="Esc cancels", icon="CANCEL")


CLASSES = (SMITE_PT_panel,)
