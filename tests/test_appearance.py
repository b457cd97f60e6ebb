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
