"""Send to farm: write the node's shot as an OpenJD template and Deadline job files.

The rules (which ``smite farm`` commands, where the files go, the one-line errors) are the
core's `smite.hostapi.farmcmd`, shared with the Blender add-on; this module names them for the node.
Pure Python, Python 3.9-safe.
"""

from __future__ import annotations

from . import hostconfig

hostconfig.import_hostapi()  # the core on sys.path when Nuke's init.py did not put it there

from smite.hostapi.farmcmd import (  # noqa: E402  (re-exported: the node's names for the farm rules)
    DEFAULT_CHUNK, FARM_DIR, TIMEOUT_S, FarmError, farm_commands, farm_paths, summary, write_farm_files,
)

__all__ = ["DEFAULT_CHUNK", "FARM_DIR", "TIMEOUT_S", "FarmError", "farm_commands", "farm_paths", "summary",
           "write_farm_files"]
