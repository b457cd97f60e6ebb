"""Fusion of the forward and backward carries in the weight-free backend (backends.propagate._fuse)."""

from __future__ import annotations

import numpy as np
import pytest

from smite.backends.propagate import PropagateBackend, _fuse, _identity
from smite.backends.propagate_settings import PropagateSettings
from smite.config import Settings


def _carry(value: float, conf: float) -> tuple[np.ndarray, np.ndarray]:
    maps = np.zeros((2, 3, 2), np.float32)
    maps[..., 1] = value
    maps[..., 0] = 1.0 - value
    return maps, np.full((2, 3), conf, np.float32)


def test_the_surer_carry_decides():
    """Carries of part 1 (conf 0.8) and of background (conf 0.4): weights 0.8**4 = 0.4096 and 0.4**4 = 0.0256,
    so part 1 gets 0.4096 / 0.4352 = 0.941 (a plain confidence-weighted mean gave 0.8 / 1.2 = 0.667)."""
    fused = _fuse([_carry(1.0, 0.8), _carry(0.0, 0.4)], (2, 3, 2), power=4.0)
    assert fused[..., 1] == pytest.approx(0.4096 / 0.4352, abs=1e-5)
    plain = _fuse([_carry(1.0, 0.8), _carry(0.0, 0.4)], (2, 3, 2), power=1.0)
    assert plain[..., 1] == pytest.approx(0.8 / 1.2, abs=1e-5)
    assert np.allclose(fused.sum(-1), 1.0)


def test_one_side_alone_is_kept_and_equal_carries_are_averaged():
    alone = _fuse([_carry(0.3, 0.2), None], (2, 3, 2), power=4.0)
    assert alone[..., 1] == pytest.approx(0.3, abs=1e-5)
    even = _fuse([_carry(1.0, 0.5), _carry(0.0, 0.5)], (2, 3, 2), power=4.0)
    assert even[..., 1] == pytest.approx(0.5, abs=1e-5)


def test_default_power_is_declared_with_its_range():
    assert PropagateSettings().fuse_power == 4.0
    with pytest.raises(Exception, match="fuse_power"):
        PropagateSettings(fuse_power=0.5)


def _backend(sigma: float) -> PropagateBackend:
    settings = Settings()
    return PropagateBackend(settings.replace(propagate=settings.propagate.replace(fuse_match_sigma=sigma)))


def test_the_carry_that_still_reads_what_the_frame_shows_decides():
    """Two carries of equal flow confidence 0.8 into a frame that is its keyframe shifted 6 px right: the one
    whose coordinates follow the shift reads the same colours (patch error 0, confidence stays 0.8); the
    one that stayed put reads 6-px stripes 6 px off (error 1.0 per pixel: the red channel flips 0 <-> 1), so
    with sigma 0.3 its confidence is 0.8 exp(-1/0.3) = 0.028 and the fused map follows the first. Sigma 0
    leaves both at 0.8 and the maps are averaged."""
    h, w = 12, 48
    ref = np.zeros((h, w, 3), np.float32)
    ref[..., 0] = ((np.arange(w) // 6) % 2)[None, :]
    frame = np.roll(ref, 6, axis=1)
    moved = _identity(h, w)
    moved[..., 0] -= 6  # frame x reads keyframe x - 6
    stayed = _identity(h, w)
    conf = np.full((h, w), 0.8, np.float32)
    part = np.zeros((h, w, 2), np.float32)
    part[..., 1] = 1.0
    ground = 1.0 - part
    inner = (slice(None), slice(12, 36))  # away from the edges, where the roll wraps and reads replicate
    for sigma, bad_conf, fused_part in ((0.3, 0.8 * np.exp(-1 / 0.3), 0.8**4 / (0.8**4 + (0.8 * np.exp(-1 / 0.3))**4)),
                                        (0.0, 0.8, 0.5)):
        backend = _backend(sigma)
        good = backend.fusion_confidence(conf, frame, ref, moved)
        bad = backend.fusion_confidence(conf, frame, ref, stayed)
        assert good[inner] == pytest.approx(0.8, abs=1e-5)
        assert bad[inner] == pytest.approx(bad_conf, abs=1e-5)
        fused = _fuse([(part, good), (ground, bad)], (h, w, 2), power=4.0)
        assert fused[inner][..., 1] == pytest.approx(fused_part, abs=1e-4)
