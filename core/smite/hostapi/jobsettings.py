"""What a host sends as a server job's ``settings``: the backends it offers and which part model a Segment uses.

Standard library only, Python 3.9-safe.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional

# The backends a host offers when it has no server to ask yet (a server's ``initialize`` reply lists
# its own under ``capabilities.backends``); the first is the default: weight-free, runs without downloads.
BACKENDS = ("propagate", "diffusion")


def backends(server_info: Optional[Mapping[str, Any]] = None) -> List[str]:
    """The backends to offer: the server's ``capabilities.backends`` when it said, else `BACKENDS`."""
    listed = ((server_info or {}).get("capabilities") or {}).get("backends")
    if isinstance(listed, list) and listed and all(isinstance(name, str) for name in listed):
        return list(listed)
    return list(BACKENDS)


def job_settings(method: str, backend: str, part_model: str = "", sd_model: str = "") -> Dict[str, Any]:
    """The ``settings`` object of a server ``segment``/``learn`` call (``smite.config.Settings`` format).

    The diffusion backend's own settings nest under ``"diffusion"``: ``part_model`` (the .smite
    file) and ``model`` (the SD folder). Segment sends them only with the diffusion backend, so
    the weight-free backend's mattes keep the same job metadata (and resume) whatever those
    fields hold; Learn always trains on SD, so it sends ``model`` when one is set.
    """
    settings: Dict[str, Any] = {"backend": backend}
    diffusion: Dict[str, str] = {}
    if method == "segment" and backend == "diffusion" and part_model:
        diffusion["part_model"] = part_model
    if (method == "learn" or backend == "diffusion") and sd_model:
        diffusion["model"] = sd_model
    if diffusion:
        settings["diffusion"] = diffusion
    return settings


def segment_part_model(chosen: str, default_path: str) -> str:
    """Part model a Segment uses: the artist's file, else Learn's default file once it exists, else ``""``.

    ``""`` lets the diffusion backend learn from the shot's references itself, instead of failing
    on a default file Learn never wrote.
    """
    if chosen:
        return chosen
    return default_path if os.path.isfile(default_path) else ""
