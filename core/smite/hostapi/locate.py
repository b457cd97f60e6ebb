"""The core's venv interpreter as a host finds it, and the environment of a subprocess started with it.

A host starts ``smite serve`` and ``smite farm`` with the core venv's Python; `find_python` is the
one rule for which interpreter that is, `core_environment` the one for what it inherits.
Standard library only, Python 3.9-safe.
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

# Variables that point a host's embedded interpreter (Nuke's, Blender's) at its own libraries; a core
# venv started with them imports the host's packages or does not start at all.
HOST_PYTHON_VARS = ("PYTHONHOME", "PYTHONPATH")
PYTHON_ENV = "SMITE_PYTHON"  # the core venv's interpreter, per shell or per farm job


def core_environment(core: str = "", extra: Optional[Mapping[str, str]] = None,
                     environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment for a core subprocess (``smite serve``, ``smite farm``): the host's without
    `HOST_PYTHON_VARS`, plus ``extra``; ``core`` (the core's source folder) first on ``PYTHONPATH``
    so a checkout that is not pip-installed in the venv works too. The one place this rule lives.
    """
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in HOST_PYTHON_VARS}
    env.update(extra or {})
    if core:
        env["PYTHONPATH"] = os.pathsep.join([core] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def venv_python(venv: str) -> str:
    """The interpreter inside the venv folder ``venv`` (``Scripts/python.exe`` on Windows)."""
    if os.name == "nt":
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


def find_python(setting: str, record: Mapping[str, str], core: str,
                environ: Optional[Mapping[str, str]] = None) -> str:
    """The core venv's interpreter: ``setting``, ``$SMITE_PYTHON``, ``record["python"]``, then ``<core>/../.venv``.

    The first one given wins even if it does not exist (the host then says which path is missing);
    a venv folder stands for its interpreter; the guess beside the core counts only if it exists.
    Returns ``""`` when none is known.
    """
    env = os.environ if environ is None else environ
    for candidate in (setting.strip(), env.get(PYTHON_ENV, ""), record.get("python", "")):
        if candidate:
            candidate = os.path.abspath(os.path.expanduser(candidate))
            return venv_python(candidate) if os.path.isdir(candidate) else candidate
    guess = venv_python(os.path.join(os.path.dirname(os.path.abspath(core)), ".venv")) if core else ""
    return guess if guess and os.path.isfile(guess) else ""
