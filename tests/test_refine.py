"""Plate-guided matte upsampling: edges follow the plate, classes still sum to 1."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from smite.refine import refine_to_plate


def _plate_and_square(size: int = 160, lo: int = 37, hi: int = 107, seed: int = 0):
    """Noisy dark plate with a bright square at [lo, hi) in both axes; the square's true mask."""
    rng = np.random.default_rng(seed)
    plate = (0.2 + 0.03 * rng.standard_normal((size, size, 3))).astype(np.float32)
    plate[lo:hi, lo:hi] = (0.8, 0.6, 0.5)
    truth = np.zeros((size, size), bool)
    truth[lo:hi, lo:hi] = True
    return np.clip(plate, 0, 1), truth


def _blocky(truth: np.ndarray, factor: int) -> np.ndarray:
    """(2, h, w) low-res probabilities: the true mask area-averaged onto a grid `factor` times coarser."""
    n = truth.shape[0] // factor
    fg = cv2.resize(truth.astype(np.float32), (n, n), interpolation=cv2.INTER_AREA)
    return np.stack([1.0 - fg, fg])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("factor", [8, 16])
def test_edges_follow_the_plate_better_than_bilinear(factor):
    plate, truth = _plate_and_square()
    probs = _blocky(truth, factor)
    out = refine_to_plate(probs, plate)
    size = truth.shape
    bilinear = cv2.resize(probs[1], size[::-1], interpolation=cv2.INTER_LINEAR)
    iou_refined = _iou(out[1] > 0.5, truth)
    iou_bilinear = _iou(bilinear > 0.5, truth)
    assert iou_refined > iou_bilinear
    # The soft matte steps where the plate steps (rows 36 -> 37 on the square's top edge),
    # instead of ramping over a whole low-res cell.
    cols = slice(50, 95)
    step_refined = (out[1, 37, cols] - out[1, 36, cols]).mean()
    step_bilinear = (bilinear[37, cols] - bilinear[36, cols]).mean()
    assert step_refined > 3 * step_bilinear


def test_output_shape_range_and_sum():
    plate, truth = _plate_and_square()
    rng = np.random.default_rng(1)
    raw = rng.random((3, 20, 20)).astype(np.float32)
    probs = raw / raw.sum(axis=0)
    out = refine_to_plate(probs, plate)
    assert out.shape == (3, 160, 160) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-5)


def test_non_square_plate_and_subsample():
    rng = np.random.default_rng(2)
    plate = rng.random((90, 200, 3)).astype(np.float32)
    fg = (rng.random((9, 20)) > 0.5).astype(np.float32)
    out = refine_to_plate(np.stack([1 - fg, fg]), plate, subsample=2)
    assert out.shape == (2, 90, 200)
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-5)


def test_flat_plate_gives_smooth_upsampling():
    # With no edges in the plate the filter can only smooth: the result stays near bilinear.
    plate = np.full((64, 64, 3), 0.5, np.float32)
    fg = np.zeros((8, 8), np.float32)
    fg[2:6, 2:6] = 1.0
    out = refine_to_plate(np.stack([1 - fg, fg]), plate)
    bilinear = cv2.resize(fg, (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out[1] - bilinear).mean() < 0.05


def test_settings_change_the_result():
    plate, truth = _plate_and_square()
    probs = _blocky(truth, 8)
    base = refine_to_plate(probs, plate)
    assert not np.allclose(base, refine_to_plate(probs, plate, radius=8))
    assert not np.allclose(base, refine_to_plate(probs, plate, eps=1e-1))
    assert not np.allclose(base, refine_to_plate(probs, plate, subsample=2))


def _faint_line_plate(size: int = 96, seed: int = 4):
    """A plate of faint noise (std 0.005, the glass a reflection sits in) and a 2-px line map on a 2x coarser grid."""
    rng = np.random.default_rng(seed)
    plate = np.clip(0.5 + 0.005 * rng.standard_normal((size, size, 3)), 0, 1).astype(np.float32)
    fg = np.zeros((size // 2, size // 2), np.float32)
    fg[:, 20] = 1.0  # one working px wide: two plate px
    return plate, np.stack([1.0 - fg, fg])


def test_edge_gate_keeps_a_thin_part_where_the_plate_has_no_edge():
    """With no edge to follow the filter only box-blurs: the 2-px line falls below 0.5 and is lost; the gate keeps
    the bilinear upsampling there (its weight v / (v + gate eps) is about 0.05 for this noise)."""
    plate, probs = _faint_line_plate()
    line = np.zeros((96, 96), bool)
    line[:, 40:42] = True
    plain = refine_to_plate(probs, plate, radius=4, eps=5e-4)
    gated = refine_to_plate(probs, plate, radius=4, eps=5e-4, edge_gate=1.0)
    bilinear = cv2.resize(probs[1], (96, 96), interpolation=cv2.INTER_LINEAR)
    assert (plain[1][line] < 0.5).all()
    assert (gated[1][line] >= 0.5).all()
    assert np.abs(gated[1] - bilinear).max() < 0.1
    np.testing.assert_allclose(gated.sum(axis=0), 1.0, atol=1e-5)


def test_edge_gate_leaves_the_filter_where_the_plate_has_edges():
    """Where the plate has a strong edge the gate's weight is near 1: the result stays the filter's."""
    plate, truth = _plate_and_square()
    probs = _blocky(truth, 8)
    plain = refine_to_plate(probs, plate, radius=4, eps=5e-4)
    gated = refine_to_plate(probs, plate, radius=4, eps=5e-4, edge_gate=1.0)
    edge = truth ^ (cv2.erode(truth.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    assert np.abs(gated[1] - plain[1])[edge].mean() < 0.02
    assert _iou(gated[1] > 0.5, truth) >= _iou(plain[1] > 0.5, truth) - 0.005


def test_edge_gate_zero_is_the_filter():
    plate, truth = _plate_and_square()
    probs = _blocky(truth, 8)
    assert np.array_equal(refine_to_plate(probs, plate), refine_to_plate(probs, plate, edge_gate=0.0))
