"""The background-motion cue (`method.motion`): the trail a moving subject leaves loses its label,
the subject and what merely moves with it keep theirs, and a subject that moves like its background
changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from smite.backends.propagate import PropagateBackend
from smite.backends.propagate_settings import PropagateSettings
from smite.config import Settings
from smite.method.motion import MotionCue, with_motion

H, W = 120, 160
SUBJECT = (slice(40, 80), slice(70, 110))  # where the subject is now
TRAIL = (slice(40, 80), slice(50, 70))  # ground it has walked off, still carried as subject
SHADOW = (slice(80, 90), slice(70, 110))  # moves with the subject, labelled background


def _flow(background: str = "pan", subject=(-6.0, 0.0)) -> np.ndarray:
    """Packed step flow (h, w, [fx, fy, ok]): the camera's motion everywhere, the subject's (and its shadow's) own."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    if background == "pan":
        fx, fy = np.full((H, W), 2.0, np.float32), np.full((H, W), -1.0, np.float32)
    else:  # zoom by 3% about the centre: a homography, not a translation
        fx, fy = 0.03 * (xs - W / 2), 0.03 * (ys - H / 2)
    packed = np.stack([fx, fy, np.ones((H, W), np.float32)], axis=-1)
    for region in (SUBJECT, SHADOW):
        packed[region][..., 0], packed[region][..., 1] = subject
    return packed


def _carry(trail_conf: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    maps = np.zeros((H, W, 2), np.float32)
    maps[..., 0] = 1.0
    maps[SUBJECT] = (0.0, 1.0)
    maps[TRAIL] = (0.2, 0.8)  # after the colour model: the ground looks like the subject
    conf = np.ones((H, W), np.float32)
    conf[TRAIL] = trail_conf
    return maps, conf


@pytest.mark.parametrize("camera", ["pan", "zoom"])
def test_the_trail_loses_its_label_and_the_subject_keeps_it(camera):
    maps, conf = _carry()
    packed = _flow(camera)
    cue = MotionCue.fit(packed, maps, conf)
    assert cue is not None and cue.separability > 0.9
    out = with_motion(maps, conf, cue, weight=4.0, trust_power=4.0)
    assert out[TRAIL][..., 1].max() < 0.5  # moved like the ground: background now
    assert out[SUBJECT][..., 1].min() > 0.99
    assert out[SHADOW][..., 1].max() < 1e-6  # one way: moving with the subject adds no part
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_a_subject_that_moves_like_its_background_changes_nothing():
    """A static chair filmed by a panning camera: residuals agree, separability 0, maps unchanged."""
    maps, conf = _carry()
    packed = _flow("pan", subject=(2.0, -1.0))
    cue = MotionCue.fit(packed, maps, conf)
    assert cue is not None and cue.separability < 1e-6
    np.testing.assert_allclose(with_motion(maps, conf, cue, 4.0, 4.0), maps, atol=1e-5)


def test_a_sure_carry_is_believed_over_one_frame_s_flow():
    """Confidence 1 on the trail (straight from the keyframe): the carry keeps it; trust power 0 keeps it always."""
    maps, conf = _carry(trail_conf=1.0)
    packed = _flow()
    maps_unsure, conf_unsure = _carry()
    cue = MotionCue.fit(packed, maps_unsure, conf_unsure)
    np.testing.assert_array_equal(with_motion(maps, conf, cue, 4.0, 4.0), maps)
    np.testing.assert_array_equal(with_motion(maps_unsure, conf_unsure, cue, 4.0, 0.0), maps_unsure)


def test_failed_flow_and_too_few_sure_pixels_give_no_evidence():
    maps, conf = _carry()
    packed = _flow()
    packed[TRAIL][..., 2] = 0.0  # the step's flow failed its test there: no evidence
    cue = MotionCue.fit(packed, maps, conf)
    assert np.all(cue.ratio[TRAIL] == 1.0)
    unsure = np.full((H, W), 0.5, np.float32)
    assert MotionCue.fit(packed, maps, unsure) is None


def test_backend_weight_zero_turns_the_cue_off():
    maps, conf = _carry()
    off = PropagateBackend(Settings(propagate=PropagateSettings(motion_weight=0.0)))
    on = PropagateBackend(Settings())
    np.testing.assert_array_equal(off.with_motion(maps, conf, _flow()), maps)
    assert on.with_motion(maps, conf, _flow())[TRAIL][..., 1].max() < 0.5


def test_a_background_that_fixes_no_homography_gives_no_cue():
    """Sure background on one row only (collinear points): RANSAC finds no homography, the frame is left alone."""
    maps, conf = _carry()
    conf[:] = 0.5
    conf[0] = 1.0  # the only sure pixels: the top row (background) ...
    conf[SUBJECT] = 1.0  # ... and the subject
    assert MotionCue.fit(_flow(), maps, conf) is None
