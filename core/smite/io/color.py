"""Colour conversion with OpenColorIO: plate colourspace -> the model's display-referred sRGB.

Diffusion backbones were trained on sRGB-encoded photos, so a scene-linear EXR plate must be
converted before it is encoded. The default config is a pinned built-in ACES CG config (never
a "latest" alias, whose meaning changes between OCIO releases); a facility's ``$OCIO`` wins.
"""

from __future__ import annotations

import difflib
import os

import numpy as np
import PyOpenColorIO as ocio

from ..errors import BadInputError

DEFAULT_CONFIG = "ocio://cg-config-v2.2.0_aces-v1.3_ocio-v2.4"
MODEL_COLORSPACE = "sRGB - Texture"


def config_uri(config: str | None = None) -> str:
    """The config to use: ``config`` if given, else ``$OCIO`` if set, else the pinned built-in."""
    if config:
        return config
    return os.environ.get("OCIO") or DEFAULT_CONFIG


def load_config(config: str | None = None) -> ocio.Config:
    """Load the config named by `config_uri`; BadInputError naming it when it cannot be read."""
    uri = config_uri(config)
    try:
        return ocio.Config.CreateFromFile(uri)
    except (ocio.Exception, ocio.ExceptionMissingFile) as exc:
        raise BadInputError(f"cannot load OCIO config {uri}: {' '.join(str(exc).split())}", config=uri) from exc


def _resolve(cfg: ocio.Config, name: str, uri: str) -> str:
    """Canonical name of colourspace ``name`` (aliases and roles accepted)."""
    space = cfg.getColorSpace(name)
    if space is None:
        # Plates are scene-referred, so those names come first; display spaces are rarely meant.
        scene = ocio.SEARCH_REFERENCE_SPACE_SCENE, ocio.COLORSPACE_ACTIVE
        valid = [cs.getName() for cs in cfg.getColorSpaces(*scene)] or [cs.getName() for cs in cfg.getColorSpaces()]
        close = difflib.get_close_matches(name, [cs.getName() for cs in cfg.getColorSpaces()], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        shown = ", ".join(valid[:10]) + (", …" if len(valid) > 10 else "")
        raise BadInputError(
            f"unknown colourspace {name!r} in OCIO config {uri} ({hint}valid: {shown})", colorspace=name, valid=valid
        )
    return space.getName()


class ColorConverter:
    """Converts (H, W, 3) float32 plates from ``src`` to ``dst`` (the model's sRGB by default)."""

    def __init__(self, src: str = MODEL_COLORSPACE, dst: str = MODEL_COLORSPACE, config: str | None = None) -> None:
        self.config = config_uri(config)
        cfg = load_config(config)
        self.src = _resolve(cfg, src, self.config)
        self.dst = _resolve(cfg, dst, self.config)
        self._cpu = None
        if self.src != self.dst:
            try:
                self._cpu = cfg.getProcessor(self.src, self.dst).getDefaultCPUProcessor()
            except ocio.Exception as exc:
                message = " ".join(str(exc).split())
                raise BadInputError(f"cannot convert {self.src!r} to {self.dst!r} in {self.config}: {message}") from exc

    @property
    def is_identity(self) -> bool:
        return self._cpu is None

    def to_model(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) plate pixels -> (H, W, 3) float32 in ``dst``, clipped to [0, 1] (a new array)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected (H, W, 3) pixels, got shape {rgb.shape}")
        out = np.array(rgb, dtype=np.float32, order="C", copy=True)
        if self._cpu is not None:
            self._cpu.applyRGB(out)
        return np.clip(out, 0.0, 1.0, out=out)
