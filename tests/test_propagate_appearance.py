"""The colour model in the weight-free carry overrides a sure carry only as far as colours separate the parts."""

from __future__ import annotations

import dataclasses

import numpy as np

from smite.backends.propagate import PropagateBackend
from smite.config import Settings
from smite.method.appearance import ColourModel


def _case(separability: float):
    """A carry that says part 1 on the left half, over a frame whose colours the model calls background."""
    rgb = np.zeros((6, 8, 3), np.float32)
    probs = np.zeros((6, 8, 2), np.float32)
    probs[..., 0] = 1
    probs[:, 6:, :] = [0, 1]
    rgb[:, 6:] = [0.9, 0.1, 0.1]  # the keyframe's part is red, its background black
    model = dataclasses.replace(ColourModel.fit([rgb], [probs], levels=4), separability=separability)
    carried = np.zeros((6, 8, 2), np.float32)
    carried[:, :4] = [0.3, 0.7]  # soft, as carried maps are (a hard 0 no colour can lift)
    carried[:, 4:] = [1, 0]
    frame = np.zeros((6, 8, 3), np.float32)  # all black now: colours say background everywhere
    return carried, model, frame


def test_a_sure_carry_keeps_its_map_where_colours_cannot_tell_parts_apart():
    carried, model, frame = _case(separability=0.0)
    out = PropagateBackend(Settings()).with_appearance(carried, np.ones((6, 8), np.float32), model, frame)
    assert np.allclose(out, carried)


def test_colours_decide_where_they_separate_the_parts_or_the_carry_is_unsure():
    carried, model, frame = _case(separability=1.0)
    backend = PropagateBackend(Settings())
    out = backend.with_appearance(carried, np.ones((6, 8), np.float32), model, frame)
    assert (out[:, :4, 0] > 0.9).all()  # black reads background although the carry said part 1
    carried, model, frame = _case(separability=0.6)  # separability_full: colours trusted fully
    unsure = backend.with_appearance(carried, np.zeros((6, 8), np.float32), model, frame)
    assert (unsure[..., 0] > 0.9).all()
    half = backend.with_appearance(carried, np.full((6, 8), 0.5, np.float32), model, frame)
    # keeps conf * (1 - 0.6)**2 = 0.08 of the carry's 0.7, the posterior (~0) the rest
    assert np.allclose(half[:, :4, 1], 0.08 * 0.7, atol=0.02)


def test_colours_that_barely_separate_the_parts_do_not_replace_an_unsure_carry():
    """Their say is scaled by min(1, s / separability_full): a beige cap among beige planks (issue 12)."""
    backend = PropagateBackend(Settings())
    carried, model, frame = _case(separability=0.0)
    unsure = backend.with_appearance(carried, np.zeros((6, 8), np.float32), model, frame)
    assert np.allclose(unsure, carried)
    carried, model, frame = _case(separability=0.3)  # half of separability_full: half the colour side's say
    unsure = backend.with_appearance(carried, np.zeros((6, 8), np.float32), model, frame)
    assert np.allclose(unsure[:, :4, 1], 0.5 * 0.7, atol=0.02)
    # separability_full 0: colours decide fully wherever the carry is unsure (the rule before)
    before = PropagateBackend(Settings.from_dict({"separability_full": 0.0}))
    carried, model, frame = _case(separability=0.0)
    unsure = before.with_appearance(carried, np.zeros((6, 8), np.float32), model, frame)
    assert (unsure[..., 0] > 0.9).all()
