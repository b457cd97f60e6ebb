"""The environment of a core-venv subprocess started from a host (``smite serve``, ``smite farm``).

Standard library only, Python 3.9-safe.
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

# Variables that point a host's embedded interpreter (Nuke's, Blender's) at its own libraries; a core
# venv started with them imports the host's packages or does not start at all.
HOST_PYTHON_VARS = ("PYTHONHOME", "PYTHONPATH")


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
