"""Where the core lives, seen from Nuke's own Python: its venv interpreter and its source folder.

Nuke's interpreter cannot import the venv's packages (different Python, no torch), so we
only put the core's *source* folder on ``sys.path`` for the stdlib-only `smite.hostapi`
(client and rules shared with the Blender add-on; see `import_hostapi`), and start the
venv's interpreter for the server. `install/nuke_install.py` writes a small JSON config naming
both; ``$SMITE_PYTHON`` / ``$SMITE_CORE`` override it per shell or per farm job.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from types import ModuleType
from typing import Dict, List, Mapping, Optional

CONFIG_ENV = "SMITE_NUKE_CONFIG"  # the installed init.py block sets this to the config it wrote
PYTHON_ENV = "SMITE_PYTHON"
CORE_ENV = "SMITE_CORE"
CONFIG_NAME = "smite_nuke.json"
CONFIG_VERSION = 1

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(PLUGIN_DIR)


def venv_python(venv_dir: str) -> str:
    """The interpreter inside ``venv_dir`` (``Scripts/python.exe`` on Windows)."""
    if os.name == "nt":
        return os.path.join(venv_dir, "Scripts", "python.exe")
    return os.path.join(venv_dir, "bin", "python")


def config_path(environ: Optional[Mapping[str, str]] = None) -> str:
    """``$SMITE_NUKE_CONFIG``, else ``~/.nuke/smite_nuke.json``."""
    env = os.environ if environ is None else environ
    return env.get(CONFIG_ENV) or os.path.join(os.path.expanduser("~"), ".nuke", CONFIG_NAME)


def load_config(path: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The install config as ``{python, core}`` strings; ``{}`` when missing or unreadable.

    A broken config must never stop Nuke from starting, so errors read as "no config" and the
    node's status line later says which path is missing.
    """
    target = path or config_path(environ)
    try:
        with open(target, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k in ("python", "core") and isinstance(v, str) and v}


def resolve_python(knob_value: str = "", environ: Optional[Mapping[str, str]] = None,
                   config: Optional[Mapping[str, str]] = None, repo_dir: str = REPO_DIR) -> str:
    """The core venv interpreter: knob, then ``$SMITE_PYTHON``, then the config, then ``<repo>/.venv``.

    Returns ``""`` when none is known (the caller reports it to the artist).
    """
    env = os.environ if environ is None else environ
    cfg = load_config(environ=env) if config is None else config
    for candidate in (knob_value.strip(), env.get(PYTHON_ENV, ""), cfg.get("python", "")):
        if candidate:
            return candidate
    guess = venv_python(os.path.join(repo_dir, ".venv"))
    return guess if os.path.isfile(guess) else ""


def resolve_core(knob_value: str = "", environ: Optional[Mapping[str, str]] = None,
                 config: Optional[Mapping[str, str]] = None, repo_dir: str = REPO_DIR) -> str:
    """The folder that holds the ``smite`` package sources (``<repo>/core``), or ``""``."""
    env = os.environ if environ is None else environ
    cfg = load_config(environ=env) if config is None else config
    for candidate in (knob_value.strip(), env.get(CORE_ENV, ""), cfg.get("core", ""), os.path.join(repo_dir, "core")):
        if candidate and os.path.isfile(os.path.join(candidate, "smite", "hostapi", "client.py")):
            return candidate
    return ""


def add_core_to_path(core_dir: str, sys_path: Optional[List[str]] = None) -> bool:
    """Put ``core_dir`` first on ``sys_path`` (default ``sys.path``) once; True when it was added."""
    path = sys.path if sys_path is None else sys_path
    if not core_dir:
        return False
    core_dir = os.path.abspath(core_dir)
    if core_dir in path:
        return False
    path.insert(0, core_dir)
    return True


def import_hostapi() -> ModuleType:
    """The core's stdlib-only ``smite.hostapi``, putting the resolved core on ``sys.path`` first if needed.

    Nuke's init.py normally added the core already; a session that skipped it (``nuke -t`` with
    another plugin path, a test) gets it added here, so the pure modules import anywhere.
    """
    try:
        return importlib.import_module("smite.hostapi")
    except ImportError as exc:
        if not add_core_to_path(resolve_core()):
            raise ImportError(f"SMITE core not found ({exc}): run install/nuke_install.py or set ${CORE_ENV}") from None
        return importlib.import_module("smite.hostapi")
