"""Evaluation measures on hand-made masks with known answers, plus one real DAVIS pair."""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA
from smite.metrics import (
    ConfusionAccumulator,
    boundary_f,
    consistent_flow_mask,
    jaccard,
    seg2bmap,
    warping_error,
)

DOG = SHARED_DATA / "davis16_dog"


def square(h, w, y, x, size):
    m = np.zeros((h, w), dtype=bool)
    m[y : y + size, x : x + size] = True
    return m


# --- J -------------------------------------------------------------------------------------------


def test_jaccard_known_values():
    a = square(20, 20, 2, 2, 10)
    assert jaccard(a, a) == 1.0
    assert jaccard(a, square(20, 20, 12, 12, 5)) == 0.0
    # Shift by 5 columns: overlap 10x5 = 50, union 100 + 100 - 50 = 150.
    assert jaccard(a, square(20, 20, 2, 7, 10)) == pytest.approx(50 / 150)
    empty = np.zeros((20, 20), dtype=bool)
    assert jaccard(empty, empty) == 1.0
    assert jaccard(empty, a) == 0.0
    with pytest.raises(ValueError):
        jaccard(a, a[:10])


# --- F -------------------------------------------------------------------------------------------


def test_seg2bmap_of_a_square_is_its_outline():
    m = square(8, 8, 2, 2, 3)
    b = seg2bmap(m)
    # Inside pixels whose E/S/SE neighbour is outside: right column and bottom row of the square,
    # plus outside pixels whose E/S/SE neighbour is inside: the row and column just before it.
    expected = np.zeros((8, 8), dtype=bool)
    expected[1, 1:5] = True
    expected[1:5, 1] = True
    expected[4, 1:5] = True
    expected[1:5, 4] = True
    assert np.array_equal(b, expected)


def test_boundary_f_identical_empty_and_one_sided():
    a = square(50, 50, 10, 10, 20)
    empty = np.zeros_like(a)
    assert boundary_f(a, a) == 1.0
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(empty, a) == 0.0
    assert boundary_f(a, empty) == 0.0


def test_boundary_f_small_shift_within_tolerance_at_480p():
    h, w = 480, 854  # tolerance ceil(0.008 * 979.6) = 8 px
    a = square(h, w, 100, 200, 150)
    assert boundary_f(a, np.roll(a, 1, axis=1)) == 1.0
    assert boundary_f(a, np.roll(np.roll(a, 1, axis=0), 1, axis=1)) == 1.0


def test_boundary_f_far_shift_is_low_and_tolerance_matters():
    h, w = 480, 854
    a = square(h, w, 100, 200, 150)
    far = np.roll(np.roll(a, 60, axis=0), 60, axis=1)
    assert boundary_f(a, far) < 0.2
    # A 12 px shift is outside the 8 px default tolerance on the vertical edges but inside 20 px.
    shifted = np.roll(a, 12, axis=1)
    assert boundary_f(a, shifted) < 1.0
    assert boundary_f(a, shifted, bound_th=20) == 1.0


# --- mIoU ----------------------------------------------------------------------------------------


def test_confusion_miou_by_hand():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 2], [2, 2, 2, 0]])
    acc = ConfusionAccumulator(4)  # class 3 never appears
    acc.add(pred, gt)
    # class 0: tp 3, gt 4, pred 4 -> 3/5; class 1: tp 3, gt 4, pred 4 -> 3/5; class 2: tp 3, gt 4, pred 4 -> 3/5
    iou = acc.iou_per_class()
    assert np.allclose(iou[:3], [3 / 5, 3 / 5, 3 / 5])
    assert np.isnan(iou[3])
    assert acc.miou() == pytest.approx(3 / 5)


def test_confusion_accumulates_over_frames_and_counts_pred_only_classes():
    acc = ConfusionAccumulator(3)
    acc.add(np.array([[0, 1]]), np.array([[0, 1]]))
    acc.add(np.array([[2, 1]]), np.array([[0, 1]]))
    # class 0: tp 1, union 2 -> 0.5; class 1: 2/2 = 1; class 2 (only predicted): 0/1 = 0.
    assert np.allclose(acc.iou_per_class(), [0.5, 1.0, 0.0])
    assert acc.miou() == pytest.approx(0.5)


def test_confusion_ignore_index_and_validation():
    acc = ConfusionAccumulator(2, ignore_index=255)
    acc.add(np.array([[1, 0, 1]]), np.array([[1, 255, 0]]))
    assert np.allclose(acc.iou_per_class(), [0.0, 0.5])
    with pytest.raises(ValueError):
        ConfusionAccumulator(2).add(np.array([[1, 0]]), np.array([[1, 255]]))
    with pytest.raises(ValueError):
        ConfusionAccumulator(2).miou()


# --- warping error -------------------------------------------------------------------------------


def textured_plate(h, w, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.random((h, w, 3)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0) * 3.0 - 1.0  # spread the blurred values back over 0..1


def shifted_pair(dx, dy, h=96, w=128):
    plate = np.clip(textured_plate(h + 40, w + 40), 0, 1)
    mask = np.zeros((h + 40, w + 40), dtype=np.float32)
    mask[50:90, 40:100] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), 1.5)
    crop = (slice(20, 20 + h), slice(20, 20 + w))
    crop_next = (slice(20 - dy, 20 - dy + h), slice(20 - dx, 20 - dx + w))  # content moves by (+dx, +dy)
    return plate[crop], plate[crop_next], mask[crop], mask[crop_next]


def test_warping_error_zero_with_exact_flow_and_large_for_flicker():
    dx, dy = 3, 2
    p0, p1, m0, m1 = shifted_pair(dx, dy)
    fwd = np.broadcast_to(np.array([dx, dy], np.float32), m0.shape + (2,)).copy()
    bwd = -fwd
    assert warping_error(m0, m1, flow_fwd=fwd, flow_bwd=bwd) < 1e-6
    flicker = m1.copy()
    flicker[30:60, 30:80] = 1.0 - flicker[30:60, 30:80]
    assert warping_error(m0, flicker, flow_fwd=fwd, flow_bwd=bwd) > 0.05
    # Consistent flows: everything except the border that moves out of frame is valid.
    valid = consistent_flow_mask(fwd, bwd)
    assert valid[:-dy, :-dx].all() and not valid[-1].any() and not valid[:, -1].any()


def test_warping_error_with_dis_flow_from_plates():
    p0, p1, m0, m1 = shifted_pair(3, 2)
    moving = np.stack([m0, 1.0 - m0])
    moving_next = np.stack([m1, 1.0 - m1])
    err = warping_error(moving, moving_next, p0, p1)
    # Ignoring the motion is clearly worse than following it.
    zero = np.zeros(m0.shape + (2,), np.float32)
    still = warping_error(moving, moving_next, flow_fwd=zero, flow_bwd=zero)
    assert err < 0.01
    assert still > 5 * err
    flicker = moving_next.copy()
    flicker[:, 30:60, 30:80] = 1.0 - flicker[:, 30:60, 30:80]
    assert warping_error(moving, flicker, p0, p1) > 0.05


def test_warping_error_inconsistent_flow_excludes_pixels_and_validates():
    m = np.zeros((10, 10), np.float32)
    fwd = np.full((10, 10, 2), 2.0, np.float32)
    assert np.isnan(warping_error(m, m, flow_fwd=fwd, flow_bwd=fwd))  # f + b = 4 px everywhere
    with pytest.raises(ValueError):
        warping_error(m, m)
    with pytest.raises(ValueError):
        warping_error(m, m[:5], flow_fwd=fwd, flow_bwd=-fwd)


def test_custom_flow_fn_is_used():
    p0, p1, m0, m1 = shifted_pair(3, 2)
    calls = []

    def fn(a, b):
        calls.append(a.shape)
        return np.zeros(a.shape + (2,), np.float32)

    warping_error(m0, m1, p0, p1, flow_fn=fn)
    assert len(calls) == 2 and calls[0] == m0.shape


# --- real data -----------------------------------------------------------------------------------


def test_davis_dog_consecutive_masks_overlap():
    if not (DOG / "masks").is_dir():
        pytest.skip("davis16_dog data not available")
    from PIL import Image

    a = np.array(Image.open(DOG / "masks" / "00000.png")) > 0
    b = np.array(Image.open(DOG / "masks" / "00001.png")) > 0
    j = jaccard(a, b)
    assert 0.5 < j < 1.0
    f = boundary_f(a, b)
    assert 0.0 < f <= 1.0


# --- SMITE's own evaluation (authors' src/metrics.py, repository alimohammadiamirhossein/smite) -------

from smite.metrics import (  # noqa: E402
    SMITE_EVAL_SIZE,
    smite_f_measure,
    smite_jaccard,
    smite_part_iou,
    smite_scores,
    to_eval_size,
)


def test_smite_part_iou_averages_frames_not_pixels():
    """Authors' src/metrics.py:298-307: IoU per frame (100·I/(U+1e-7), :11-14), then the mean over frames.

    Class 1: frame 0 has 4 GT pixels of which the prediction finds 2 (IoU 50), frame 1 is exact (100):
    the frame mean is 75, where one pooled confusion matrix would give (2+50)/(4+50) = 96.3.
    Background: frame 0 GT 96 px, prediction 98 px (the 2 missed ones), I 96, U 98; frame 1 exact.
    """
    gt = np.zeros((2, 10, 10), int)
    gt[0, 0:2, 0:2] = 1
    gt[1, 0:5, :] = 1
    pred = gt.copy()
    pred[0, 0, 0:2] = 0
    iou = smite_part_iou(pred, gt, 2)
    assert iou[1] == pytest.approx(75.0)
    assert iou[0] == pytest.approx((100 * 96 / 98 + 100) / 2)
    conf = ConfusionAccumulator(2)
    for p, g in zip(pred, gt):
        conf.add(p, g)
    assert 100 * conf.iou_per_class()[1] == pytest.approx(100 * 52 / 54)  # our pooled measure differs


def test_smite_part_iou_skips_frames_without_the_class_and_scores_absent_classes_zero():
    """Authors' src/metrics.py:303-304 skip a frame whose GT lacks the class (a false positive there is free);
    :307 gives 0 to a class no GT frame holds, and :314 still averages it into mean_iou.

    Class 1 is exact in frame 0 (100) and falsely predicted in frame 1, whose GT has no class 1: stays 100.
    Class 2 is in no GT frame: 0. Background: frame 0 exact (100), frame 1 GT all 16 px, prediction 12 → 75.
    mean_iou over the 3 classes = (87.5 + 100 + 0) / 3.
    """
    gt = np.zeros((2, 4, 4), int)
    gt[0, :2, :2] = 1
    pred = gt.copy()
    pred[1, :2, :2] = 1
    iou = smite_part_iou(pred, gt, 3)
    assert iou == pytest.approx([87.5, 100.0, 0.0])
    assert smite_scores(pred, gt, 3)["mean_iou"] == pytest.approx((87.5 + 100.0) / 3)


def test_smite_f_measure_averages_gt_objects_per_frame_then_frames():
    """Authors' src/metrics.py:243-244 take the objects from the GT (ids 1..254, background excluded),
    :255-263 average F over them per frame, :289 over frames. An object in neither mask of a frame scores 1
    (:193-195); one missed entirely scores 0 (:187-189 give P 1, R 0).

    Frame 0: object 1 exact (1), object 2 missed (0) → 0.5. Frame 1: object 1 exact, object 2 in neither → 1.
    Sequence F = 0.75. A predicted-only label 3 adds no object. J likewise (union 0 gives 1, :74-75).
    """
    gt = np.zeros((2, 20, 20), int)
    gt[:, 2:8, 2:8] = 1
    gt[0, 10:16, 10:16] = 2
    pred = gt.copy()
    pred[0, 10:16, 10:16] = 0
    pred[1, 12:14, 12:14] = 3
    assert smite_f_measure(pred, gt) == pytest.approx(0.75)
    assert smite_jaccard(pred, gt) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        smite_f_measure(gt, np.zeros_like(gt))


def test_smite_f_measure_tolerance_is_6_px_at_512():
    """Authors' src/metrics.py:165-166: tolerance ceil(0.008 · |(512, 512)|) = ceil(5.79) = 6 px on the 512²
    maps of utils/gt_extractor.py:49. A square shifted by 6 px matches every boundary pixel (F 1); by 7 px the
    two edges across the shift no longer match (F < 1)."""
    gt = np.zeros((1, SMITE_EVAL_SIZE, SMITE_EVAL_SIZE), int)
    gt[0, 100:300, 100:300] = 1
    shift6 = np.zeros_like(gt)
    shift6[0, 100:300, 106:306] = 1
    shift7 = np.zeros_like(gt)
    shift7[0, 100:300, 107:307] = 1
    assert smite_f_measure(shift6, gt) == 1.0
    assert smite_f_measure(shift7, gt) < 0.999


def test_smite_scores_mae_is_of_label_ids_and_eval_size_is_nearest():
    """Authors' src/metrics.py:318: MAE is mean |y_true - y_pred| of the label ids themselves (one pixel
    labelled 2 where GT says 0 on a 2x2 map: 2/4 = 0.5); utils/gt_extractor.py:49 resizes labels to 512²
    with nearest neighbour, so no new label values appear."""
    gt = np.zeros((1, 2, 2), int)
    pred = gt.copy()
    pred[0, 0, 0] = 2
    gt[0, 1, 1] = 1
    assert smite_scores(pred, gt, 3)["mae"] == pytest.approx((2 + 1) / 4)
    big = to_eval_size(np.array([[0, 1], [2, 3]]))
    assert big.shape == (512, 512)
    assert set(np.unique(big)) == {0, 1, 2, 3}
    assert big[0, 0] == 0 and big[511, 511] == 3
