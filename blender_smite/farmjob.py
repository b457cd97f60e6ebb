"""Send to farm from Blender: write the shot as an OpenJD template and Deadline job files.

The rules (which ``smite farm`` commands, where the files go, the one-line errors) are the core's
``smite.hostapi.farmcmd``, shared with the Nuke node and loaded privately by `corelink`; this module only
names them for the add-on. Its names resolve on each use, so they follow the core a Job loaded
(the one the preferences name). Pure standard library, no ``bpy``.
"""

from __future__ import annotations

from typing import Any

from . import corelink

NAMES = ("DEFAULT_CHUNK", "FARM_DIR", "TIMEOUT_S", "FarmError", "farm_paths", "farm_commands",
         "write_farm_files", "summary")


def __getattr__(name: str) -> Any:
    """``farmjob.farm_commands`` etc.: the loaded core's farmcmd object of that name."""
    if name in NAMES:
        return getattr(corelink.hostapi("farmcmd"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
