"""The segmentation backends by name: the one table the CLI's choices, `smite serve`'s capabilities
and `config.Settings` derive from.

Each entry names its class as ``"module:Class"``, imported only by `backend_class`, so reading the
table (settings validation, ``initialize``) imports nothing heavy and the weight-free path never
imports diffusers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import BadInputError

if TYPE_CHECKING:
    from ..config import Settings
    from .base import BackendBase, ProgressFn

BACKENDS: dict[str, str] = {
    "propagate": "smite.backends.propagate:PropagateBackend",  # weight-free: runs without downloads (the default)
    "diffusion": "smite.backends.diffusion:DiffusionBackend",  # SMITE on Stable Diffusion
}
BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)


def backend_class(name: str) -> "type[BackendBase]":
    """The class of backend ``name``, imported now (a missing dependency raises ImportError naming it)."""
    if name not in BACKENDS:
        raise BadInputError(f"unknown backend {name!r}; known: {', '.join(BACKEND_NAMES)}")
    module, _, attribute = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def make_backend(settings: "Settings", progress: "ProgressFn | None" = None) -> "BackendBase":
    """The backend the settings name, built with them; ``progress`` gets its pre-frame work (flow, carries)."""
    return backend_class(settings.backend)(settings, progress=progress)
