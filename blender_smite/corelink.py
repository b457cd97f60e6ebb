"""Find the SMITE core (its ``smite`` sources and its venv's Python) and load its stdlib-only client.

Blender's Python has no torch, so the add-on never imports the core package into Blender's
``sys.modules``: it loads the stdlib-only host API ``smite/hostapi/`` (the client, and the planning rules shared with
the Nuke node) from the core folder under a private package name (no
``sys.path`` edits, no clash with another ``smite``) and runs the heavy engine in the core venv as a
``smite serve`` subprocess. Pure standard library, no ``bpy``.

Where the core is, first match wins: the add-on preference, ``$SMITE_CORE`` / ``$SMITE_PYTHON``,
``core_location.json`` written beside this file by ``install/blender_install.py``, and finally the
repository this add-on folder sits in (``<repo>/blender_smite`` next to ``<repo>/core``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import Any, Dict, Mapping, Optional, Tuple

LOCATION_FILE = "core_location.json"
PRIVATE_PACKAGE = "_smite_hostapi"  # what the core's smite.hostapi is called inside Blender


def _venv_python(venv: str) -> str:
    return os.path.join(venv, "Scripts", "python.exe") if os.name == "nt" else os.path.join(venv, "bin", "python")


def _recorded(addon_dir: str) -> Dict[str, str]:
    try:
        with open(os.path.join(addon_dir, LOCATION_FILE), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def is_core(folder: str) -> bool:
    """True when ``folder`` holds ``smite/hostapi/client.py`` (the core's source folder, e.g. ``<repo>/core``)."""
    return bool(folder) and os.path.isfile(os.path.join(folder, "smite", "hostapi", "client.py"))


def locate(core_pref: str = "", python_pref: str = "", env: Optional[Mapping[str, str]] = None,
           addon_dir: Optional[str] = None) -> Tuple[str, str]:
    """``(core_folder, python)``; empty strings for what was not found.

    A venv folder is accepted for ``python_pref``; the core folder may also be given as the repo root.
    """
    env = os.environ if env is None else env
    addon_dir = addon_dir or os.path.dirname(os.path.abspath(__file__))
    recorded = _recorded(addon_dir)
    repo_guess = os.path.dirname(addon_dir)
    core = ""
    for candidate in (core_pref, env.get("SMITE_CORE", ""), recorded.get("core", ""), os.path.join(repo_guess, "core")):
        if not candidate:
            continue
        candidate = os.path.abspath(os.path.expanduser(candidate))
        for folder in (candidate, os.path.join(candidate, "core")):
            if is_core(folder):
                core = folder
                break
        if core:
            break
    python = ""
    venv_guesses = [os.path.join(os.path.dirname(core), ".venv")] if core else []
    for candidate in [python_pref, env.get("SMITE_PYTHON", ""), recorded.get("python", "")] + venv_guesses:
        if not candidate:
            continue
        candidate = os.path.abspath(os.path.expanduser(candidate))
        if os.path.isdir(candidate):
            candidate = _venv_python(candidate)
        if os.path.isfile(candidate):
            python = candidate
            break
    return core, python


def load_hostapi_module(core: str, name: str) -> Any:
    """The core's ``smite.hostapi.<name>`` module loaded from ``core`` under the private package name."""
    if not is_core(core):
        raise ImportError(f"no SMITE core at {core or '(not set)'}: set the core folder in the add-on preferences")
    pkg_dir = os.path.join(core, "smite", "hostapi")
    if not os.path.isfile(os.path.join(pkg_dir, name + ".py")):
        raise ImportError(f"the SMITE core at {core} has no smite/hostapi/{name}.py: update the core")
    loaded = sys.modules.get(PRIVATE_PACKAGE)
    if loaded is not None and getattr(loaded, "__path__", [None])[0] != pkg_dir:
        for mod in [n for n in sys.modules if n == PRIVATE_PACKAGE or n.startswith(PRIVATE_PACKAGE + ".")]:
            del sys.modules[mod]  # the core folder changed: load the new one
    if PRIVATE_PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PRIVATE_PACKAGE, os.path.join(pkg_dir, "__init__.py"), submodule_search_locations=[pkg_dir])
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the SMITE host API from {pkg_dir}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[PRIVATE_PACKAGE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{PRIVATE_PACKAGE}.{name}")


def load_client_module(core: str) -> Any:
    """The core's ``smite.hostapi.client`` module loaded from ``core`` under a private package name."""
    return load_hostapi_module(core, "client")


def hostapi(name: str) -> Any:
    """``smite.hostapi.<name>`` of the core loaded last, else of the core `locate` finds without preferences.

    A Job loads the core its preferences name first (`load_hostapi_module`), so the pure modules
    (`shotplan`, `farmjob`) follow it; tests and scripts fall back to the environment or the repo.
    """
    if PRIVATE_PACKAGE in sys.modules:
        return importlib.import_module(f"{PRIVATE_PACKAGE}.{name}")
    return load_hostapi_module(locate()[0], name)


def server_env(core: str) -> Dict[str, str]:
    """Environment for the server: the core folder on PYTHONPATH, so an un-installed checkout works too."""
    return {"PYTHONPATH": core} if core else {}
