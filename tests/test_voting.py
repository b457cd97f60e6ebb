"""Temporal voting: sampling along tracks, majority vote, window-level vote."""

from __future__ import annotations


import pytest
import torch

from smite.method.voting import inside_mask, sample_along_tracks, vote, vote_window, window_frames


def test_sample_at_pixel_centres_reads_exact_values():
    probs = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    tracks = torch.tensor([[[0.0, 0.0], [4.0, 3.0], [2.0, 1.0]], [[1.0, 2.0], [3.0, 0.0], [0.0, 3.0]]])
    out = sample_along_tracks(probs, tracks)
    assert out.shape == (2, 3, 3)
    for s in range(2):
        for n in range(3):
            x, y = int(tracks[s, n, 0]), int(tracks[s, n, 1])
            assert torch.equal(out[s, :, n], probs[s, :, y, x])


def test_sample_is_bilinear_between_centres():
    probs = torch.zeros(1, 1, 2, 2)
    probs[0, 0] = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    out = sample_along_tracks(probs, torch.tensor([[[0.5, 0.5], [0.25, 0.0], [1.0, 0.75]]]))
    assert torch.allclose(out[0, 0], torch.tensor([1.5, 0.25, 1.0 + 0.75 * 2.0]))


def test_points_off_the_map_give_zero_and_rim_reads_edge():
    probs = torch.ones(1, 2, 4, 4)
    tracks = torch.tensor([[[-0.6, 1.0], [1.0, 3.6], [float("nan"), 1.0], [-0.4, 3.4]]])
    out = sample_along_tracks(probs, tracks)
    assert torch.equal(out[0, :, :3], torch.zeros(2, 3))
    assert torch.equal(out[0, :, 3], torch.ones(2))
    assert inside_mask(tracks, 4, 4).tolist() == [[False, False, False, True]]


def test_sample_is_differentiable_wrt_probs():
    probs = torch.rand(3, 2, 5, 5, requires_grad=True)
    sample_along_tracks(probs, torch.rand(3, 7, 2) * 4).sum().backward()
    assert probs.grad is not None and probs.grad.abs().sum() > 0


def _vec(*ps):
    return torch.tensor(ps, dtype=torch.float32)


def test_vote_majority_mean_of_agreeing_samples():
    # One point, 4 samples: three say class 1, one says class 0.
    samples = torch.stack([_vec(0.2, 0.8), _vec(0.4, 0.6), _vec(0.9, 0.1), _vec(0.3, 0.7)]).unsqueeze(-1)
    out = vote(samples, torch.ones(4, 1, dtype=torch.bool))
    assert torch.allclose(out[:, 0], _vec(0.3, 0.7))


def test_vote_ignores_invisible_samples():
    samples = torch.stack([_vec(0.2, 0.8), _vec(0.4, 0.6), _vec(0.9, 0.1), _vec(0.7, 0.3)]).unsqueeze(-1)
    visible = torch.tensor([[False], [False], [True], [True]])
    out = vote(samples, visible)
    assert torch.allclose(out[:, 0], _vec(0.8, 0.2))


def test_vote_tie_goes_to_larger_summed_mass():
    # Two samples each for classes 0 and 2; class 2 carries more total probability.
    samples = torch.stack(
        [_vec(0.5, 0.1, 0.4), _vec(0.5, 0.2, 0.3), _vec(0.1, 0.1, 0.8), _vec(0.3, 0.1, 0.6)]
    ).unsqueeze(-1)
    out = vote(samples, torch.ones(4, 1, dtype=torch.bool))
    assert torch.allclose(out[:, 0], _vec(0.2, 0.1, 0.7))
    # Flip the mass so class 0 wins the tie.
    samples2 = torch.stack(
        [_vec(0.9, 0.0, 0.1), _vec(0.8, 0.1, 0.1), _vec(0.4, 0.1, 0.5), _vec(0.4, 0.1, 0.5)]
    ).unsqueeze(-1)
    out2 = vote(samples2, torch.ones(4, 1, dtype=torch.bool))
    assert torch.allclose(out2[:, 0], _vec(0.85, 0.05, 0.1))


def test_vote_no_visible_sample_returns_mean_of_all():
    samples = torch.stack([_vec(0.2, 0.8), _vec(1.0, 0.0)]).unsqueeze(-1)
    out = vote(samples, torch.zeros(2, 1, dtype=torch.bool))
    assert torch.allclose(out[:, 0], _vec(0.6, 0.4))


def test_vote_points_are_independent_and_differentiable():
    torch.manual_seed(0)
    samples = torch.rand(5, 3, 6).softmax(1).requires_grad_(True)
    visible = torch.rand(5, 6) > 0.3
    out = vote(samples, visible)
    for n in range(6):
        assert torch.allclose(out[:, n], vote(samples[:, :, n : n + 1], visible[:, n : n + 1])[:, 0])
    out.sum().backward()
    assert samples.grad is not None and samples.grad.abs().sum() > 0


def test_window_frames_is_centred_and_truncated():
    assert list(window_frames(10, 60, 15)) == list(range(3, 18))
    assert list(window_frames(2, 60, 15)) == list(range(0, 10))
    assert list(window_frames(58, 60, 15)) == list(range(51, 60))
    assert list(window_frames(5, 60, 1)) == [5]
    with pytest.raises(ValueError):
        window_frames(0, 5, 0)


def test_shifted_window_is_the_authors_determine_window():
    """`determine_window(i, length, 15)` (src/tracking.py:88-99, called at :126): 15 frames around i,
    shifted to stay inside the window. Frame 0 of a 16-frame window votes over 0..14 (centred: 0..7)."""
    assert list(window_frames(0, 16, 15, "shifted")) == list(range(0, 15))
    assert list(window_frames(0, 16, 15)) == list(range(0, 8))  # the weight-free backend's rule, unchanged
    assert list(window_frames(7, 16, 15, "shifted")) == list(range(0, 15))
    assert list(window_frames(8, 16, 15, "shifted")) == list(range(1, 16))
    assert list(window_frames(15, 16, 15, "shifted")) == list(range(1, 16))
    assert list(window_frames(10, 60, 15, "shifted")) == list(window_frames(10, 60, 15))  # same inside
    # every frame of a 16-frame window votes over 15 frames; theirs indexes past a shorter window's end,
    # ours votes over all of it
    assert all(len(window_frames(t, 16, 15, "shifted")) == 15 for t in range(16))
    assert all(list(window_frames(t, 4, 15, "shifted")) == [0, 1, 2, 3] for t in range(4))
    with pytest.raises(ValueError):
        window_frames(0, 16, 15, "sliding")


def test_shifted_rule_changes_the_vote_at_the_window_end():
    # one pixel, 16 frames: frames 0-6 say class 0, frames 7-15 class 1; frame 0 votes over 0..14
    # (7 against 8: class 1) with the authors' rule, over 0..7 (7 against 1: class 0) centred
    t = 16
    probs = torch.zeros(t, 2, 1, 1)
    probs[:7, 0], probs[:7, 1] = 0.9, 0.1
    probs[7:, 0], probs[7:, 1] = 0.2, 0.8
    tracks = torch.zeros(1, t, 1, 2)
    visible = torch.ones(1, t, 1, dtype=torch.bool)
    assert vote_window(probs, tracks, visible, [0], 15, "shifted")[0, :, 0].argmax() == 1
    assert vote_window(probs, tracks, visible, [0], 15)[0, :, 0].argmax() == 0
    torch.testing.assert_close(vote_window(probs, tracks, visible, [0], 15, "shifted")[0, :, 0],
                               torch.tensor([0.2, 0.8]))


def test_vote_window_static_tracks_follow_the_majority_in_window():
    # 7 frames, 1 pixel map, 2 classes; frame 3 is a flicker to class 0, others are class 1.
    t = 7
    probs = torch.zeros(t, 2, 1, 1)
    probs[:, 1] = 0.9
    probs[:, 0] = 0.1
    probs[3] = torch.tensor([0.8, 0.2]).view(2, 1, 1)
    tracks = torch.zeros(1, t, 1, 2)
    visible = torch.ones(1, t, 1, dtype=torch.bool)
    out = vote_window(probs, tracks, visible, [3], window=3)
    assert torch.allclose(out[0, :, 0], torch.tensor([0.1, 0.9]))
    # Window 1: only the frame itself votes, so the flicker survives.
    out1 = vote_window(probs, tracks, visible, [3], window=1)
    assert torch.allclose(out1[0, :, 0], torch.tensor([0.8, 0.2]))


def test_vote_window_follows_moving_tracks_and_drops_offmap_samples():
    # A square of class 1 moves right by one pixel per frame; its query point follows it.
    t, h, w = 5, 6, 10
    probs = torch.zeros(t, 2, h, w)
    probs[:, 0] = 1.0
    for s in range(t):
        probs[s, :, 2:4, 2 + s : 4 + s] = torch.tensor([0.0, 1.0]).view(2, 1, 1)
    # Query at frame 2 on the square's left column (x = 4): its track is x = 2 + s. A static point
    # at x = 4 is on the square only in frames 1 and 2.
    moving = torch.tensor([[2.0 + s, 2.0] for s in range(t)]).view(1, t, 1, 2)
    static = torch.tensor([[4.0, 2.0]] * t).view(1, t, 1, 2)
    offmap = moving.clone()
    offmap[0, [0, 1, 3], 0, 0] = -5.0  # off the map: only frames 2 and 4 count
    tracks = torch.cat([moving, static, offmap], dim=2).expand(1, t, 3, 2).contiguous()
    visible = torch.ones(1, t, 3, dtype=torch.bool)
    out = vote_window(probs, tracks, visible, [2], window=5)
    assert torch.allclose(out[0, :, 0], torch.tensor([0.0, 1.0]), atol=1e-6)
    assert torch.allclose(out[0, :, 1], torch.tensor([1.0, 0.0]), atol=1e-6)  # static point: 3 of 5 frames background
    assert torch.allclose(out[0, :, 2], torch.tensor([0.0, 1.0]), atol=1e-6)


def test_vote_window_shapes_and_validation():
    probs = torch.rand(4, 3, 8, 8)
    tracks = torch.rand(2, 4, 10, 2) * 7
    visible = torch.ones(2, 4, 10, dtype=torch.bool)
    assert vote_window(probs, tracks, visible, [0, 3]).shape == (2, 3, 10)
    with pytest.raises(ValueError):
        vote_window(probs, tracks, visible, [0])
    with pytest.raises(ValueError):
        vote_window(probs, tracks, visible, [0, 4])


def test_vote_window_handles_full_size_inputs():
    # 60 frames, 17 classes, a 64x64 map and 4096 points per frame, 8 query frames.
    torch.manual_seed(0)
    t, k, q, n = 60, 17, 8, 4096
    probs = torch.rand(t, k, 64, 64).softmax(1)
    tracks = torch.rand(q, t, n, 2) * 63
    visible = torch.rand(q, t, n) > 0.2
    out = vote_window(probs, tracks, visible, list(range(0, 60, 8)), window=15)
    assert out.shape == (q, k, n)
    assert torch.allclose(out.sum(1), torch.ones(q, n), atol=1e-4)  # voted vectors stay distributions
