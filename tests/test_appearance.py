"""Colour models from references: a pixel of a part's colour is pulled toward that part."""

from __future__ import annotations

import numpy as np

from smite.method.appearance import ColourModel, colour_bins, reweight


def test_colour_bins_are_joint_rgb():
    rgb = np.array([[[0.0, 0.0, 0.0], [0.99, 0.0, 0.0], [0.0, 0.0, 0.99]]], np.float32)
    assert colour_bins(rgb, 4).tolist() == [[0, 48, 3]]


def test_model_prefers_the_class_that_showed_the_colour():
    rgb = np.zeros((10, 10, 3), np.float32)
    rgb[:, 5:] = [0.9, 0.1, 0.1]  # red right half = part 1, black left half = background
    probs = np.zeros((10, 10, 2), np.float32)
    probs[:, :5, 0] = 1
    probs[:, 5:, 1] = 1
    model = ColourModel.fit([rgb], [probs], levels=8)
    lik = model.likelihood(rgb)
    assert (lik[:, 5:, 1] > 10 * lik[:, 5:, 0]).all() and (lik[:, :5, 0] > 10 * lik[:, :5, 1]).all()
    unsure = np.full((10, 10, 2), 0.5, np.float32)
    post = reweight(unsure, lik, 1.0)
    assert (post[:, 5:, 1] > 0.9).all() and (post[:, :5, 0] > 0.9).all()
    assert np.allclose(post.sum(-1), 1.0)
    assert np.array_equal(reweight(unsure, lik, 0.0), unsure)


def test_a_small_part_keeps_its_colours_against_a_large_background():
    """A 20-pixel part in a 100x100 frame whose colour the background also shows, 100 times less often."""
    rgb = np.zeros((100, 100, 3), np.float32)
    rgb[:, :, 1] = 0.5  # green background
    rgb[0, :20] = [0.9, 0.8, 0.1]  # 20 background pixels share the part's colour
    rgb[50, 40:60] = [0.9, 0.8, 0.1]
    probs = np.zeros((100, 100, 2), np.float32)
    probs[..., 0] = 1
    probs[50, 40:60] = [0, 1]
    lik = ColourModel.fit([rgb], [probs], levels=8).likelihood(rgb)
    # p(colour | part) is ~1; p(colour | background) is 20/9980: the part's colour says "part"
    assert lik[50, 50, 1] > 100 * lik[50, 50, 0]
    assert lik[10, 10, 0] > 100 * lik[10, 10, 1]  # and green says background


def _two_class_frame(part_colour, background_colour, rng=None):
    """A 40x40 frame with a 10x10 part in its middle; colours (3,) or None for random noise."""
    rng = rng or np.random.default_rng(0)
    rgb = rng.random((40, 40, 3), dtype=np.float32) if background_colour is None else \
        np.broadcast_to(np.float32(background_colour), (40, 40, 3)).copy()
    if part_colour is None:
        rgb[15:25, 15:25] = rng.random((10, 10, 3), dtype=np.float32)
    else:
        rgb[15:25, 15:25] = part_colour
    probs = np.zeros((40, 40, 2), np.float32)
    probs[..., 0] = 1
    probs[15:25, 15:25] = [0, 1]
    return rgb, probs


def test_separability_is_one_for_distinct_colours_and_near_zero_for_shared_ones():
    rgb, probs = _two_class_frame([0.9, 0.1, 0.1], [0.1, 0.1, 0.9])
    assert ColourModel.fit([rgb], [probs], levels=8).separability > 0.95
    # part and surroundings drawn from the same noise: a colour says nothing about the class. At
    # 4**3 bins a bin holds ~1.6 part pixels, so the fit still remembers some of them: 0.2 at most.
    rgb, probs = _two_class_frame(None, None)
    assert ColourModel.fit([rgb], [probs], levels=4).separability < 0.2


def test_separability_without_any_part_is_zero():
    rgb = np.zeros((8, 8, 3), np.float32)
    probs = np.zeros((8, 8, 2), np.float32)
    probs[..., 0] = 1
    assert ColourModel.fit([rgb], [probs], levels=4).separability == 0.0


def test_separability_is_judged_at_sixteen_levels_whatever_the_model_s_bins():
    """Separability is measured on the keyframes the model was fitted on, where finer bins remember more
    of them: on shared noise a 32-level model agrees with its own keyframe better than a 16-level one
    though colours say nothing. `fit` therefore judges with a 16-level model (SEPARABILITY_LEVELS)."""
    from smite.method.appearance import keyframe_separability

    rgb, probs = _two_class_frame(None, None, np.random.default_rng(1))
    rgb = 0.4 + 0.2 * rgb  # noise over a narrow range: about 30 bins at 16 levels, 260 at 32
    fine, coarse = ColourModel.fit([rgb], [probs], levels=32), ColourModel.fit([rgb], [probs], levels=16)
    assert keyframe_separability(fine, [rgb], [probs]) > keyframe_separability(coarse, [rgb], [probs]) + 0.1
    assert fine.separability == coarse.separability
    assert fine.table.shape == (32**3, 2) and fine.levels == 32
    assert ColourModel.fit([rgb], [probs], levels=8).separability == keyframe_separability(
        ColourModel.fit([rgb], [probs], levels=8), [rgb], [probs])  # coarser models judge themselves
