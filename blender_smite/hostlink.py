"""Find the SMITE core and load its stdlib-only host API: the one loader both hosts use.

A host runs its own Python (Nuke's, Blender's: no torch), so it never imports the core package:
it loads the core's ``smite/hostapi/`` folder under a private package name (`PACKAGE`), with no
``sys.path`` edit and no clash with another ``smite``, and runs the engine in the core's venv as a
``smite serve`` subprocess. Loading another core folder replaces the loaded one.

Where the core is, first match wins (`find_core`): the host's own setting (Nuke knob, add-on
preference), ``$SMITE_CORE``, the installer's record (``{core, python}`` JSON: `read_record`), and
finally the repository the host package sits in (``<repo>/core``). A repository root is accepted for
its ``core/`` folder. The core's Python is found by the loaded host API (``locate.find_python``).

This file sits in the Blender add-on's package because a Blender extension zip carries only that
package; the Nuke plugin runs from the same checkout and imports it from here (`nuke_smite.hostconfig`).
Standard library only, no ``bpy``, Python 3.9-safe.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from types import ModuleType
from typing import Callable, Dict, Mapping, Optional

PACKAGE = "_smite_hostapi"  # what the core's smite.hostapi is called inside a host
CORE_ENV = "SMITE_CORE"
RECORD_KEYS = ("core", "python")


def read_record(path: str) -> Dict[str, str]:
    """An installer's record ``{core, python}`` (non-empty strings only); ``{}`` when missing or unreadable.

    A broken record must never stop the host from starting: it reads as "no record", and the host
    later says which path is missing.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k in RECORD_KEYS and isinstance(v, str) and v}


def is_core(folder: str) -> bool:
    """True when ``folder`` holds the host API (``smite/hostapi/``): the core's source folder."""
    return bool(folder) and os.path.isfile(os.path.join(folder, "smite", "hostapi", "__init__.py"))


def find_core(setting: str, record: Mapping[str, str], host_dir: str,
              environ: Optional[Mapping[str, str]] = None) -> str:
    """The core folder: ``setting``, ``$SMITE_CORE``, ``record["core"]``, then ``<host_dir>/../core``; ``""``."""
    env = os.environ if environ is None else environ
    guess = os.path.join(os.path.dirname(os.path.abspath(host_dir)), "core")
    for candidate in (setting.strip(), env.get(CORE_ENV, ""), record.get("core", ""), guess):
        if not candidate:
            continue
        candidate = os.path.abspath(os.path.expanduser(candidate))
        for folder in (candidate, os.path.join(candidate, "core")):
            if is_core(folder):
                return folder
    return ""


def load(core: str, name: str) -> ModuleType:
    """The core's ``smite.hostapi.<name>`` loaded from ``core`` under `PACKAGE` (another core's is dropped)."""
    if not is_core(core):
        raise ImportError(f"no SMITE core at {core or '(not set)'}: set the core folder (<smite repo>/core)")
    pkg_dir = os.path.join(os.path.abspath(core), "smite", "hostapi")
    if not os.path.isfile(os.path.join(pkg_dir, name + ".py")):
        raise ImportError(f"the SMITE core at {core} has no smite/hostapi/{name}.py: update the core")
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None and list(loaded.__path__) != [pkg_dir]:
        for mod in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[mod]  # the core folder changed: load the new one
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, os.path.join(pkg_dir, "__init__.py"), submodule_search_locations=[pkg_dir])
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the SMITE host API from {pkg_dir}")
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE}.{name}")


def module(name: str, find: Callable[[], str]) -> ModuleType:
    """``smite.hostapi.<name>`` of the core loaded last; before any, of the core ``find()`` names."""
    if PACKAGE in sys.modules:
        return importlib.import_module(f"{PACKAGE}.{name}")
    return load(find(), name)
