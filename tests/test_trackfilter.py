"""The weight-free temporal module: tracks that keep going past failed flow tests, weighted by reliability."""

from __future__ import annotations

import numpy as np

from smite.backends.propagate import PropagateBackend
from smite.config import Settings
from smite.method.trackfilter import colour_weights, track_mean, track_median
from smite.track.flow import chain, weighted_chain


class _Shift:
    """Flows of a clip whose content moves `dx` px right per frame; `failed[(t, d)]` marks steps failing the tests."""

    def __init__(self, n: int, h: int, w: int, dx: float, failed: dict | None = None) -> None:
        self.n, self.h, self.w, self.dx, self.failed = n, h, w, dx, failed or {}

    @property
    def num_frames(self) -> int:
        return self.n

    def packed(self, t: int, direction: int) -> np.ndarray:
        out = np.zeros((self.h, self.w, 3), np.float32)
        out[..., 0] = self.dx * direction
        out[..., 2] = 0.0 if self.failed.get((t, direction)) else 1.0
        return out


def test_weighted_chain_follows_chain_where_every_step_passes():
    flows = _Shift(5, 8, 40, 2.0)
    pos = np.array([[10.0, 3.0], [20.0, 4.0]], np.float32)
    pts, weights = weighted_chain(flows, pos, 2, 0, 4, fail_weight=0.25)
    ref_pts, ref_vis = chain(flows, pos, 2, 0, 4)
    assert np.allclose(pts, ref_pts) and ref_vis.all()
    assert np.array_equal(weights, np.ones((5, 2), np.float32))


def test_weighted_chain_keeps_moving_past_a_failed_step_and_drops_points_that_leave():
    flows = _Shift(5, 8, 40, 2.0, failed={(2, 1): True})
    pos = np.array([[10.0, 3.0], [37.0, 4.0]], np.float32)
    pts, weights = weighted_chain(flows, pos, 2, 0, 4, fail_weight=0.25)
    _, vis = chain(flows, pos, 2, 0, 4)
    assert not vis[3, 0] and not vis[4, 0]  # chain drops the point for good
    assert np.allclose(pts[3:, 0, 0], [12.0, 14.0])  # weighted_chain keeps following the flow ...
    assert np.allclose(weights[:, 0], [1.0, 1.0, 1.0, 0.25, 0.25])  # ... at a lower weight
    assert weights[4, 1] == 0.0 and weights[0, 1] == 1.0  # x = 41 is off the frame


def test_colour_weights_and_track_mean():
    own = np.array([[0.2, 0.2, 0.2], [0.5, 0.5, 0.5]], np.float32)
    other = own + np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]], np.float32)
    assert np.allclose(colour_weights(other, own, 0.1), [1.0, np.exp(-0.5)])
    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]], np.float32)  # (S=2, K=1, N=2)
    weights = np.array([[1.0, 1.0], [3.0, 0.0]], np.float32)
    assert np.allclose(track_mean(samples, weights), [[0.25, 0.0]])


def test_track_median_is_the_weighted_median():
    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[0.5, 0.2]]], np.float32)  # (S=3, K=1, N=2)
    weights = np.array([[1.0, 1.0], [3.0, 0.0], [1.0, 1.0]], np.float32)
    # point 0: 0.0 carries 3 of the 5 -> 0.0; point 1: 0.0 and 0.2 weigh 1 each, 1.0 nothing -> the lower, 0.0
    assert np.array_equal(track_median(samples, weights), [[0.0, 0.0]])
    rng = np.random.default_rng(3)
    samples = rng.random((15, 2, 200), dtype=np.float32)
    weights = rng.random((15, 200), dtype=np.float32) * (rng.random((15, 200)) > 0.3)
    weights[7] = 1.0  # the frame's own sample always weighs 1
    got = track_median(samples, weights)
    for k in range(2):
        for n in range(200):  # by sorting: the first sample at which the cumulated weight reaches half
            order = np.argsort(samples[:, k, n], kind="stable")
            cum = np.cumsum(weights[order, n])
            assert got[k, n] == samples[order[np.searchsorted(cum, 0.5 * cum[-1] - 1e-6)], k, n]


def _temporal(frames_rgb: list[np.ndarray], maps: list[np.ndarray], t: int, window: int = 3, dx: float = 0.0,
              **own) -> np.ndarray:
    settings = Settings().replace(vote_window=window)
    backend = PropagateBackend(settings.replace(propagate=settings.propagate.replace(**own)))
    n, (h, w) = len(maps), maps[0].shape[:2]
    return backend.temporal(maps.__getitem__, frames_rgb.__getitem__, _Shift(n, h, w, dx), n, t)


def test_temporal_takes_the_median_of_neighbours_that_look_the_same():
    h, w = 12, 16
    grey = [np.full((h, w, 3), 0.5, np.float32)] * 3
    fg = [np.full((h, w), v, np.float32) for v in (0.8, 0.5, 0.8)]
    maps = [np.stack([1 - f, f], -1) for f in fg]
    assert np.allclose(_temporal(grey, maps, 1)[..., 1], 0.8, atol=1e-6)  # the median of 0.8, 0.5, 0.8
    assert np.allclose(_temporal(grey, maps, 1, temporal_median=0.0)[..., 1], 0.7, atol=1e-5)  # their mean
    assert np.allclose(_temporal(grey, maps, 1, temporal_median=0.5)[..., 1], 0.75, atol=1e-5)


def test_temporal_median_keeps_a_part_a_minority_of_tracks_slid_off():
    """Two of five tracks slid off a part onto a same-coloured background: the mean is dragged, the median is not."""
    h, w = 12, 16
    grey = [np.full((h, w, 3), 0.5, np.float32)] * 5
    fg = [np.full((h, w), v, np.float32) for v in (0.9, 0.9, 0.9, 0.0, 0.0)]
    maps = [np.stack([1 - f, f], -1) for f in fg]
    assert np.allclose(_temporal(grey, maps, 2, window=5)[..., 1], 0.9, atol=1e-6)
    assert np.allclose(_temporal(grey, maps, 2, window=5, temporal_median=0.0)[..., 1], 0.54, atol=1e-5)


def test_temporal_filters_every_pixel_not_only_the_tracked_ones():
    """Tracks start at every 2nd pixel (vote_stride 2), yet a 1 px line on an odd column, missing from the
    middle frame only, comes back there: every pixel is sampled along its block's track. With the samples
    taken at the tracked pixels only (a correction upsampled from even columns) it stayed lost."""
    h, w, dx = 12, 24, 2.0
    grey = [np.full((h, w, 3), 0.5, np.float32)] * 3
    fg = [np.zeros((h, w), np.float32) for _ in range(3)]
    fg[0][:, 5] = fg[2][:, 9] = 1.0  # the line moves 2 px a frame, like the flow; frame 1 lost it (column 7)
    maps = [np.stack([1 - f, f], -1) for f in fg]
    out = _temporal(grey, maps, 1, dx=dx)[..., 1]
    assert np.allclose(out[:, 7], 1.0, atol=1e-5)
    assert np.abs(np.delete(out, 7, axis=1)).max() < 1e-5


def test_temporal_keeps_the_frames_own_maps_where_tracks_land_on_another_colour():
    h, w = 12, 16
    rgb = [np.full((h, w, 3), v, np.float32) for v in (0.9, 0.1, 0.9)]  # neighbours: another surface
    fg = [np.full((h, w), v, np.float32) for v in (0.0, 1.0, 0.0)]
    maps = [np.stack([1 - f, f], -1) for f in fg]
    out = _temporal(rgb, maps, 1)
    assert out[..., 1].min() > 0.99
