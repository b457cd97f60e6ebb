"""SMITE Matte for Blender's compositor: draw a Mask, press Segment, get one matte per part.

The heavy core runs in its own venv as a `smite serve` subprocess (see `corelink`); this package
uses only the standard library and ``bpy``. Modules that touch ``bpy`` are imported inside
`register`, so the pure ones (`shotplan`, `corelink`, `hostlink`) import anywhere, tests included.
`hostlink` is the host-API loader the Nuke plugin uses too.
"""


def register() -> None:
    from . import operators, properties, ui

    properties.register()
    import bpy

    for cls in operators.CLASSES + ui.CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    import bpy

    from . import jobs, operators, properties, ui

    jobs.Session.stop()
    for cls in reversed(operators.CLASSES + ui.CLASSES):
        bpy.utils.unregister_class(cls)
    properties.unregister()
