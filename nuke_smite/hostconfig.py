"""Where the core lives, seen from Nuke's own Python: its source folder and its venv interpreter.

Nuke's interpreter cannot import the venv's packages (different Python, no torch), so the node
loads only the core's stdlib-only host API, through the loader the Blender add-on uses too
(`blender_smite.hostlink`: private package name, no ``sys.path`` edit), and starts the venv's
interpreter for the server. `install/nuke_install.py` writes a small JSON record naming both;
``$SMITE_PYTHON`` / ``$SMITE_CORE`` override it per shell or per farm job, a node's knobs per node.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Dict, Mapping, Optional

# stdlib only, no bpy: the one host loader, in the add-on package of the checkout nuke_smite is imported from
from blender_smite import hostlink

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(PLUGIN_DIR)

CONFIG_ENV = "SMITE_NUKE_CONFIG"  # the installed init.py block sets this to the config it wrote
CORE_ENV = hostlink.CORE_ENV
CONFIG_NAME = "smite_nuke.json"


def config_path(environ: Optional[Mapping[str, str]] = None) -> str:
    """``$SMITE_NUKE_CONFIG``, else ``~/.nuke/smite_nuke.json``."""
    env = os.environ if environ is None else environ
    return env.get(CONFIG_ENV) or os.path.join(os.path.expanduser("~"), ".nuke", CONFIG_NAME)


def load_config(path: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The install config as ``{python, core}`` strings; ``{}`` when missing or unreadable."""
    return hostlink.read_record(path or config_path(environ))


def resolve_core(knob_value: str = "", environ: Optional[Mapping[str, str]] = None,
                 config: Optional[Mapping[str, str]] = None, repo_dir: str = REPO_DIR) -> str:
    """The folder that holds the ``smite`` package sources (``<repo>/core``), or ``""`` (`hostlink.find_core`)."""
    cfg = load_config(environ=environ) if config is None else config
    return hostlink.find_core(knob_value, cfg, os.path.join(repo_dir, "nuke_smite"), environ)


def resolve_python(knob_value: str = "", environ: Optional[Mapping[str, str]] = None,
                   config: Optional[Mapping[str, str]] = None, repo_dir: str = REPO_DIR) -> str:
    """The core venv interpreter: knob, ``$SMITE_PYTHON``, the config, then ``<repo>/.venv`` (``locate.find_python``).

    Returns ``""`` when none is known (the caller reports it to the artist).
    """
    cfg = load_config(environ=environ) if config is None else config
    core = resolve_core("", environ, cfg, repo_dir) or os.path.join(repo_dir, "core")
    return hostapi("locate").find_python(knob_value, cfg, core, environ)


def hostapi(name: str) -> ModuleType:
    """The core's ``smite.hostapi.<name>``: of the core loaded last, else of the one `resolve_core` finds.

    ImportError with one line when no core is found (the node's status line shows it).
    """
    try:
        return hostlink.module(name, resolve_core)
    except ImportError as exc:
        raise ImportError(f"{exc} (run install/nuke_install.py or set ${CORE_ENV})") from None
