"""Snapping carried maps to the frame's edges only as far as the carry is unsure (`PropagateBackend.snap`)."""

from __future__ import annotations

import numpy as np

from smite.backends.propagate import PropagateBackend
from smite.config import Settings


def _line_case() -> tuple[np.ndarray, np.ndarray]:
    """A 2 px wide part on a flat grey frame: the guided filter blurs by its 9x9 boxes there and thins it to ~0.21."""
    h, w = 20, 20
    fg = np.zeros((h, w), np.float32)
    fg[:, 9:11] = 1.0
    return np.stack([1 - fg, fg], -1), np.full((h, w, 3), 0.5, np.float32)


def _snap(power: float, conf: float) -> np.ndarray:
    settings = Settings()
    backend = PropagateBackend(settings.replace(propagate=settings.propagate.replace(snap_trust_power=power)))
    maps, guide = _line_case()
    return backend.snap(maps, guide, np.full(maps.shape[:2], conf, np.float32))


def test_a_sure_carry_keeps_its_thin_part():
    maps, _ = _line_case()
    assert np.allclose(_snap(1.0, 1.0), maps, atol=1e-6)


def test_an_unsure_carry_is_snapped_and_a_half_sure_one_half():
    snapped = _snap(1.0, 0.0)
    assert snapped[:, 9:11, 1].max() < 0.25  # the flat frame's box blurs thin the line away
    maps, _ = _line_case()
    assert np.allclose(_snap(1.0, 0.5), 0.5 * maps + 0.5 * snapped, atol=1e-6)
    assert np.allclose(_snap(2.0, 0.5), 0.25 * maps + 0.75 * snapped, atol=1e-6)  # keep = conf**power


def test_power_zero_snaps_everywhere_as_before():
    assert np.allclose(_snap(0.0, 1.0), _snap(1.0, 0.0), atol=1e-6)
