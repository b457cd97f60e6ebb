"""Where the Blender add-on finds the SMITE core, and the core's host API modules it uses.

The rule is the shared one (`hostlink`): the add-on preference first, then ``$SMITE_CORE`` /
``$SMITE_PYTHON``, then ``core_location.json`` written beside this file by
``install/blender_install.py``, then the repository this add-on folder sits in. What the add-on uses
of the core (frame lists, shot cache, client...) is ``corelink.hostapi(name)``: the host API of the
core a Job loaded (the one the preferences name), else of the core found without preferences.
Pure standard library, no ``bpy``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Mapping, Optional, Tuple

from . import hostlink

LOCATION_FILE = "core_location.json"
ADDON_DIR = os.path.dirname(os.path.abspath(__file__))


def locate(core_pref: str = "", python_pref: str = "", env: Optional[Mapping[str, str]] = None,
           addon_dir: str = ADDON_DIR) -> Tuple[str, str]:
    """``(core_folder, python)``; empty strings for what was not found (a venv folder is accepted as python)."""
    record = hostlink.read_record(os.path.join(addon_dir, LOCATION_FILE))
    core = hostlink.find_core(core_pref, record, addon_dir, env)
    if not core:
        return "", ""
    return core, hostlink.module("locate", lambda: core).find_python(python_pref, record, core, env)


def load(core: str, name: str) -> ModuleType:
    """``smite.hostapi.<name>`` of ``core``, which becomes the core `hostapi` answers for."""
    return hostlink.load(core, name)


def hostapi(name: str) -> ModuleType:
    """``smite.hostapi.<name>`` of the core loaded last, else of the core `locate` finds without preferences."""
    return hostlink.module(name, lambda: locate()[0])
