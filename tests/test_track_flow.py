"""Flow tracker on a synthetic clip whose motion is known, and on one real DAVIS clip."""

from __future__ import annotations


import cv2
import numpy as np
import pytest
import torch

from smite.track.base import Tracker, Tracks
from smite.track.flow import DenseFlows, FlowTracker, compute_flows, dense_tracks
from conftest import SHARED_DATA

SPEED = 3  # px per frame, to the right


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random colour texture in [0, 1] (blurred noise, so flow has gradients everywhere)."""
    t = cv2.GaussianBlur(rng.random((h, w, 3), dtype=np.float32), (0, 0), 1.5)
    t -= t.min()
    return t / t.max()


def _square_clip(t: int = 9, h: int = 192, w: int = 256, x0: int = 20, y0: int = 64, side: int = 64, seed: int = 0):
    """(T, h, w, 3) clip: static textured background, textured square moving SPEED px/frame right.

    The square spans x in [x0 + SPEED*i, x0 + SPEED*i + side) at frame i, y in [y0, y0 + side).
    """
    rng = np.random.default_rng(seed)
    bg, fg = _texture(rng, h, w), _texture(rng, side, side)
    video = np.repeat(bg[None], t, axis=0)
    for i in range(t):
        x = x0 + SPEED * i
        x1, x2 = max(x, 0), min(x + side, w)
        if x2 > x1:
            video[i, y0 : y0 + side, x1:x2] = fg[:, x1 - x : x2 - x]
    return video


def test_flow_tracker_is_a_tracker():
    assert isinstance(FlowTracker(), Tracker)


def test_dense_flow_shapes_and_scale():
    video = _square_clip(t=4)
    flows = compute_flows(video, max_side=128)
    assert isinstance(flows, DenseFlows)
    assert flows.size == (96, 128) and flows.video_size == (192, 256)
    assert flows.forward.shape == flows.backward.shape == (3, 96, 128, 2)
    assert flows.fwd_ok.shape == flows.bwd_ok.shape == (3, 96, 128)
    assert flows.fwd_ok.dtype == bool and flows.bwd_ok.dtype == bool
    assert flows.scale == pytest.approx(0.5)
    # Square interior moves +1.5 working px per frame; the background far from it stays still.
    assert np.allclose(flows.forward[1, 48, 26], [SPEED / 2, 0], atol=0.3)
    assert np.allclose(flows.backward[1, 48, 28], [-SPEED / 2, 0], atol=0.3)
    assert np.allclose(flows.forward[1, 10, 100], [0, 0], atol=0.3)
    assert flows.fwd_ok[1, 48, 26] and flows.bwd_ok[1, 48, 28]


@pytest.mark.parametrize("max_side", [480, 200])
def test_point_on_square_tracked_forward_and_backward(max_side):
    video = _square_clip()
    centre = np.array([52.0, 96.0])  # middle of the square at frame 0
    last = centre + [SPEED * 8, 0]
    queries = np.array([[0, *centre], [8, *last], [4, *(centre + [SPEED * 4, 0])]])
    tracks = FlowTracker(max_side=max_side).track(video, queries)
    assert isinstance(tracks, Tracks) and tracks.points.shape == (9, 3, 2)
    truth = torch.from_numpy(np.array([centre + [SPEED * i, 0] for i in range(9)], dtype=np.float32))
    for q in range(3):
        assert tracks.visible[:, q].all()
        err = (tracks.points[:, q] - truth).norm(dim=-1)
        assert err.max() < 1.0, err
    # The query frame holds the query point exactly.
    assert torch.equal(tracks.points[0, 0], torch.tensor(centre, dtype=torch.float32))


def test_point_leaving_frame_becomes_invisible_for_good():
    video = _square_clip(x0=190)  # square spans x 190..253 at frame 0 and leaves the 256-wide frame
    tracks = FlowTracker().track(video, np.array([[0, 248.0, 96.0], [0, 200.0, 96.0]]))
    vis = tracks.visible
    # x = 248 + 3t passes the right edge (255.5) at t = 3.
    assert vis[:3, 0].all()
    assert not vis[4:, 0].any()
    # x = 200 + 3t stays inside for all 9 frames.
    assert vis[:, 1].all()


def test_occluded_point_becomes_invisible_for_good():
    video = _square_clip()
    # (93, 96): static background; the square (x 20+3t .. 83+3t) first covers it at t = 4.
    # (30, 96): static background seen from frame 8 backwards; covered for t <= 3.
    tracks = FlowTracker().track(video, np.array([[0, 93.0, 96.0], [8, 30.0, 96.0]]))
    vis = tracks.visible
    # Lost by the covering frame at the latest (the motion-boundary band may drop it one frame early).
    assert vis[:3, 0].all() and not vis[4:, 0].any()
    assert vis[5:, 1].all() and not vis[:4, 1].any()
    still = torch.tensor([[93.0, 96.0], [30.0, 96.0]])
    assert (tracks.points[:3, 0] - still[0]).norm(dim=-1).max() < 0.5
    assert (tracks.points[5:, 1] - still[1]).norm(dim=-1).max() < 0.5


def test_boundary_test_stops_sliding_onto_the_trailing_edge():
    # Without the motion-boundary test, smeared flow at the square's trailing edge drags the
    # background point at (30, 96) onto the square instead of losing it when it gets covered.
    video = _square_clip()
    query = np.array([[8, 30.0, 96.0]])
    loose = FlowTracker(boundary_test=False).track(video, query)
    strict = FlowTracker(boundary_test=True).track(video, query)
    assert loose.visible[:, 0].sum() > strict.visible[:, 0].sum()
    assert not strict.visible[:4, 0].any()


def test_dense_tracks_agree_with_track():
    video = _square_clip()
    tracker = FlowTracker(max_side=200)
    flows = tracker.flows(video)
    assert tracker.flows(video) is flows  # cached
    frame, frames = 4, range(0, 9)
    pts, vis = dense_tracks(flows, frame, frames)
    h, w = flows.size
    assert pts.shape == (9, h * w, 2) and vis.shape == (9, h * w)
    rng = np.random.default_rng(1)
    idx = rng.choice(h * w, size=50, replace=False)
    grid = flows.grid_points()[idx]
    tracks = tracker.track(video, np.concatenate([np.full((50, 1), frame), grid], axis=1))
    assert torch.equal(tracks.visible, vis[:, idx])
    assert torch.allclose(tracks.points, pts[:, idx], atol=1e-3)
    # A stride picks every s-th working pixel, in grid_points order.
    pts3, vis3 = dense_tracks(flows, frame, frames, stride=3)
    sub = np.arange(h * w).reshape(h, w)[::3, ::3].ravel()
    assert torch.equal(vis3, vis[:, sub]) and torch.allclose(pts3, pts[:, sub])
    assert np.allclose(flows.grid_points(3), flows.grid_points()[sub])
    # A sub-window returns the matching slice.
    pts2, vis2 = dense_tracks(flows, frame, range(2, 7))
    assert torch.equal(vis2, vis[2:7]) and torch.allclose(pts2, pts[2:7])


DAVIS = SHARED_DATA / "davis16_car-shadow"


def test_real_clip_point_on_car_stays_on_car():
    if not DAVIS.is_dir():
        pytest.skip("DAVIS car-shadow clip not present")
    from PIL import Image

    frames = [np.asarray(Image.open(DAVIS / "frames" / f"{i:05d}.jpg").convert("RGB")) for i in range(6)]
    masks = [np.asarray(Image.open(DAVIS / "masks" / f"{i:05d}.png")) > 0 for i in range(6)]
    video = np.stack(frames).astype(np.float32) / 255.0
    # Query: a point deep inside the car at frame 0 (largest distance to the mask border).
    dist = cv2.distanceTransform(masks[0].astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    # Also a point nearer the border (distance ~ 15 px) to make the test sensitive.
    yy, xx = np.nonzero((dist > 14) & (dist < 16))
    queries = np.array([[0, x, y], [0, xx[0], yy[0]], [5, x, y]], dtype=np.float64)
    queries[2, 1:] = queries[0, 1:]
    dist5 = cv2.distanceTransform(masks[5].astype(np.uint8), cv2.DIST_L2, 5)
    y5, x5 = np.unravel_index(np.argmax(dist5), dist5.shape)
    queries[2, 1:] = [x5, y5]
    tracks = FlowTracker().track(video, queries)
    for q in range(3):
        for t in range(6):
            assert tracks.visible[t, q], (q, t)
            px, py = np.round(tracks.points[t, q].numpy()).astype(int)
            assert masks[t][py, px], (q, t, px, py)
