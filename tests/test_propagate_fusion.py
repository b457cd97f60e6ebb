"""Fusion of the forward and backward carries in the weight-free backend (backends.propagate._fuse)."""

from __future__ import annotations

import numpy as np
import pytest

from smite.backends.propagate import _fuse
from smite.backends.propagate_settings import PropagateSettings


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
