"""Weight-free dense point tracking by chaining OpenCV DIS optical flow.

Why this exists: voting and E_track need point tracks, and CoTracker is optional (non-commercial
licence, weights to download). DIS flow on grey frames at a working scale (long side 480 by default)
costs a few milliseconds per frame pair on a CPU, so the whole weight-free path stays interactive.

Occlusion handling is the classic forward-backward check: where the flow into the next frame and the
flow back do not cancel, the pixel is occluded (or the flow is wrong) and the point is lost for good.

Coordinates: video pixels have their centres at integers; working pixels likewise, related by
`x_work = (x_video + 0.5) * (w / W) - 0.5` per axis (see `DenseFlows.to_working`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError
from .base import Tracks

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# Forward-backward test (Sundaram et al. 2010): |f + b(x+f)|^2 < REL * (|f|^2 + |b(x+f)|^2) + ABS, working px.
FB_REL = 0.01
FB_ABS = 0.5
# Motion-boundary test (the second criterion of Sundaram et al.): |grad u|^2 + |grad v|^2 > REL |w|^2 + ABS.
# DIS's variational refinement smears flow across an object's trailing edge, where the forward-backward
# test passes yet background points slide onto the object; flagging steep flow gradients stops that.
MB_REL = 0.01
MB_ABS = 0.002
# The machine the weight-free path targets has 2 cores; more threads only add contention.
CV_THREADS = 2


class StepFlows(Protocol):
    """What `chain` reads: per-step packed flows of a clip (`DenseFlows`, or a streaming window of them)."""

    @property
    def num_frames(self) -> int: ...

    def packed(self, t: int, direction: int) -> np.ndarray: ...


def pack(flow: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 [flow_x, flow_y, ok] from flow (h, w, 2) and ok (h, w) bool: one sample per step."""
    return np.concatenate([flow, ok[..., None].astype(np.float32)], axis=-1)


@dataclass
class DenseFlows:
    """Flow between consecutive frames of a clip at working resolution.

    forward:  (T-1, h, w, 2) float32, flow frame t -> t+1 (working px).
    backward: (T-1, h, w, 2) float32, flow frame t+1 -> t.
    fwd_ok:   (T-1, h, w) bool, forward flow passes the forward-backward test, lands inside the frame
              and (unless turned off) is not on a motion boundary.
    bwd_ok:   (T-1, h, w) bool, the same for the backward flow.
    scale:    working px per video px (w / W; the vertical ratio h / H differs only by rounding).
    size:     (h, w) working size.
    video_size: (H, W) size of the video the flows were computed from.
    """

    forward: np.ndarray
    backward: np.ndarray
    fwd_ok: np.ndarray
    bwd_ok: np.ndarray
    scale: float
    size: tuple[int, int]
    video_size: tuple[int, int]
    # Per-step (flow x, flow y, ok) images built on first use, so repeated tracking reuses them.
    _packed: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def packed(self, t: int, direction: int) -> np.ndarray:
        """(h, w, 3) float32 [flow_x, flow_y, ok] for the step from frame t to t + direction (+1 or -1)."""
        key = (t, direction)
        if key not in self._packed:
            if direction == 1:
                flow, ok = self.forward[t], self.fwd_ok[t]
            else:
                flow, ok = self.backward[t - 1], self.bwd_ok[t - 1]
            self._packed[key] = pack(flow, ok)
        return self._packed[key]

    @property
    def num_frames(self) -> int:
        return self.forward.shape[0] + 1

    def _ratios(self) -> np.ndarray:
        (h, w), (hv, wv) = self.size, self.video_size
        return np.array([w / wv, h / hv], dtype=np.float32)

    def to_working(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) video px -> working px (float32)."""
        out = np.asarray(xy, np.float32) + np.float32(0.5)
        out *= self._ratios()
        out -= np.float32(0.5)
        return out

    def to_video(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) working px -> video px (float32)."""
        out = np.asarray(xy, np.float32) + np.float32(0.5)
        out /= self._ratios()
        out -= np.float32(0.5)
        return out

    def grid_points(self, stride: int = 1) -> np.ndarray:
        """(n, 2) video-px positions of the queries `dense_tracks(..., stride)` uses, in its order."""
        return self.to_video(_grid(self.size, stride))


@contextmanager
def _cv_threads(n: int) -> Iterator[None]:
    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) with the long side at most `max_side`; never upsamples."""
    s = min(1.0, max_side / max(height, width))
    return max(1, round(height * s)), max(1, round(width * s))


def grey_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Grey uint8 frame (h, w) at working size (DIS works on 8-bit grey); shrink before quantising."""
    h, w = size
    g = cv2.cvtColor(np.asarray(frame, np.float32), cv2.COLOR_RGB2GRAY)
    if g.shape != (h, w):
        g = cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.convertScaleAbs(g, alpha=255.0)  # saturates to [0, 255], rounds


def _grid(size: tuple[int, int], stride: int) -> np.ndarray:
    """(n, 2) working-px centres of every `stride`-th pixel in both axes, row-major."""
    xs, ys = pixel_grid(*size)
    return np.stack([xs[::stride, ::stride].ravel(), ys[::stride, ::stride].ravel()], axis=-1)


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys) float32 (h, w) pixel-centre coordinates: read-only broadcast views, free to make per frame."""
    xs = np.broadcast_to(np.arange(w, dtype=np.float32), (h, w))
    ys = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w))
    return xs, ys


def read_at(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """`image` (h0, w0[, C]) read bilinearly at the (h, w, 2) coordinates `xy` -> (h, w, C); edges replicate."""
    out = cv2.remap(image, xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(*xy.shape[:2], -1)


def warp_back(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp `image` (h, w[, C]) by `flow` (h, w, 2+): out(x) = image(x + flow(x)), (h, w, C)."""
    xs, ys = pixel_grid(*flow.shape[:2])
    out = cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(*flow.shape[:2], -1)


def _sample(img: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Bilinear sample of img (h, w, C) float32 at pos (M, 2) working px -> (M, C); edges replicate.

    cv2.remap wants 2-D maps no wider than SHRT_MAX, so the points are laid out in rows of 4096.
    """
    m = pos.shape[0]
    cols = max(1, min(m, 4096))
    rows = -(-m // cols)
    maps = np.zeros((rows * cols, 2), np.float32)
    maps[:m] = pos
    maps = maps.reshape(rows, cols, 2)
    out = cv2.remap(img, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(rows * cols, -1)[:m]


def _inside(pos: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    x, y = pos[..., 0], pos[..., 1]
    return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


def consistency(flow: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Forward-backward test of `flow` (h, w, 2) against the reverse flow `back` (h, w, 2) -> (h, w) bool.

    True where x + flow(x) lies inside the frame and back(x + flow(x)) returns to x up to the tolerance.
    """
    h, w = flow.shape[:2]
    xs, ys = pixel_grid(h, w)
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    bw = cv2.remap(back, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fx, fy, bx, by = flow[..., 0], flow[..., 1], bw[..., 0], bw[..., 1]
    ex, ey = fx + bx, fy + by
    err = ex * ex + ey * ey
    tol = FB_REL * (fx * fx + fy * fy + bx * bx + by * by) + FB_ABS
    inside = (tx >= -0.5) & (tx <= w - 0.5) & (ty >= -0.5) & (ty <= h - 0.5)
    return (err < tol) & inside


def motion_boundary(flow: np.ndarray) -> np.ndarray:
    """(h, w) bool: True where flow (h, w, 2) changes steeply relative to its size (see MB_REL)."""
    gx = cv2.Sobel(flow, cv2.CV_32F, 1, 0, ksize=1) * 0.5
    gy = cv2.Sobel(flow, cv2.CV_32F, 0, 1, ksize=1) * 0.5
    g2 = gx * gx + gy * gy
    fx, fy = flow[..., 0], flow[..., 1]
    return g2[..., 0] + g2[..., 1] > MB_REL * (fx * fx + fy * fy) + MB_ABS


def flow_checks(forward: np.ndarray, backward: np.ndarray, boundary_test: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(fwd_ok, bwd_ok) (h, w) bool for one pair's flows (h, w, 2): forward-backward test, motion boundaries."""
    fwd_ok, bwd_ok = consistency(forward, backward), consistency(backward, forward)
    if boundary_test:
        fwd_ok &= ~motion_boundary(forward)
        bwd_ok &= ~motion_boundary(backward)
    return fwd_ok, bwd_ok


class _DisPool:
    """DIS on CV_THREADS threads: DIS runs single-threaded and releases the GIL, so one instance per
    worker computes pairs (or a pair's two directions) in parallel."""

    def __init__(self, preset: str) -> None:
        if preset not in PRESETS:
            raise BadInputError(f"unknown flow preset {preset!r}; expected one of {sorted(PRESETS)}")
        self.preset = preset
        self.pool = ThreadPoolExecutor(max_workers=CV_THREADS, thread_name_prefix="smite-dis")
        self._local = threading.local()

    def flow(self, pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """(h, w, 2) float32 DIS flow from grey frame pair[0] to pair[1]."""
        if not hasattr(self._local, "dis"):
            self._local.dis = cv2.DISOpticalFlow_create(PRESETS[self.preset])
        return self._local.dis.calc(pair[0], pair[1], None)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class PairFlows:
    """Flow both ways for one consecutive pair at a time, for callers that stream a clip.

    `packed(a, b)` -> (2, h, w, 3) float32: [0] the step a -> b and [1] the step b -> a, each
    [flow_x, flow_y, ok] exactly as `DenseFlows.packed` gives them for a whole clip; `checked(a, b)`
    -> [0] alone, for a direct match between frames far apart.
    """

    def __init__(self, preset: str = "medium", boundary_test: bool = True) -> None:
        self._dis = _DisPool(preset)
        self.boundary_test = boundary_test

    def packed(self, grey_a: np.ndarray, grey_b: np.ndarray) -> np.ndarray:
        return self._both_ways(grey_a, grey_b)

    def checked(self, grey_a: np.ndarray, grey_b: np.ndarray) -> np.ndarray:
        """(h, w, 3) [flow_x, flow_y, ok] from grey_a to grey_b alone, tested against the flow back.

        For a direct match between far frames: what one frame shows and the other hides (the ground
        a subject has walked off) still gets a DIS match, to whatever covered it, and only the flow
        back tells (issue 12). The same tests as a consecutive step's (`flow_checks`).
        """
        return self._both_ways(grey_a, grey_b)[0]

    # `packed` and `checked` both call this rather than each other, so that bench/propagate_speed.py
    # times consecutive steps and direct matches apart without counting one inside the other.
    def _both_ways(self, grey_a: np.ndarray, grey_b: np.ndarray) -> np.ndarray:
        with _cv_threads(CV_THREADS):
            forward, backward = self._dis.pool.map(self._dis.flow, [(grey_a, grey_b), (grey_b, grey_a)])
            fwd_ok, bwd_ok = flow_checks(forward, backward, self.boundary_test)
        return np.stack([pack(forward, fwd_ok), pack(backward, bwd_ok)])

    def close(self) -> None:
        self._dis.close()


def compute_flows(
    video: np.ndarray, *, max_side: int = 480, preset: str = "medium", boundary_test: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> DenseFlows:
    """DIS flow both ways between consecutive frames of video (T, H, W, 3) float32 [0, 1].

    progress: called as (pairs done, pairs) while the flows are computed.

    boundary_test: also mark motion boundaries as not ok (stops tracks sliding across object edges).
    """
    if video.ndim != 4 or video.shape[-1] != 3:
        raise BadInputError(f"video must be (T, H, W, 3), got shape {tuple(video.shape)}")
    t, hv, wv = video.shape[:3]
    h, w = working_size(hv, wv, max_side)
    n = max(t - 1, 0)
    forward = np.zeros((n, h, w, 2), np.float32)
    backward = np.zeros((n, h, w, 2), np.float32)
    fwd_ok = np.zeros((n, h, w), bool)
    bwd_ok = np.zeros((n, h, w), bool)
    dis = _DisPool(preset)
    try:
        with _cv_threads(CV_THREADS):
            grey = [grey_frame(frame, (h, w)) for frame in video]
            pairs = [p for i in range(n) for p in ((grey[i], grey[i + 1]), (grey[i + 1], grey[i]))]
            flows = []
            for k, result in enumerate(dis.pool.map(dis.flow, pairs)):
                flows.append(result)
                if progress is not None and k % 2:
                    progress(k // 2 + 1, n)
            for i in range(n):
                forward[i], backward[i] = flows[2 * i], flows[2 * i + 1]
                fwd_ok[i], bwd_ok[i] = flow_checks(forward[i], backward[i], boundary_test)
    finally:
        dis.close()
    return DenseFlows(forward, backward, fwd_ok, bwd_ok, w / wv, (h, w), (hv, wv))


def _step(pos: np.ndarray, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move points pos (M, 2) one frame along packed (h, w, [fx, fy, ok]); -> (new pos, still-trackable (M,) bool)."""
    s = _sample(packed, pos)
    new = pos + s[:, :2]
    return new, (s[:, 2] >= 0.5) & _inside(new, packed.shape[:2])


def chain(flows: StepFlows, pos: np.ndarray, frame: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Follow points pos (M, 2) working px at `frame` to every frame in [lo, hi].

    Returns (points (hi-lo+1, M, 2) working px, visible (hi-lo+1, M) bool). A point that fails the
    forward-backward (or motion-boundary) test or leaves the frame stays lost; its position is frozen where it was lost.
    """
    if not (0 <= lo <= frame <= hi < flows.num_frames):
        raise ValueError(f"frames [{lo}, {hi}] around {frame} outside clip of {flows.num_frames} frames")
    m = pos.shape[0]
    pts = np.empty((hi - lo + 1, m, 2), np.float32)
    vis = np.zeros((hi - lo + 1, m), bool)
    pos = np.asarray(pos, np.float32)
    pts[frame - lo], vis[frame - lo] = pos, True
    for direction, stop in ((1, hi), (-1, lo)):
        cur, alive = pos.copy(), np.ones(m, bool)
        for t in range(frame, stop, direction):
            new, ok = _step(cur, flows.packed(t, direction))
            alive &= ok
            np.copyto(cur, new, where=alive[:, None])
            pts[t + direction - lo], vis[t + direction - lo] = cur, alive
    return pts, vis


def weighted_chain(flows: StepFlows, pos: np.ndarray, frame: int, lo: int, hi: int,
                   fail_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Follow points pos (M, 2) working px at `frame` to every frame in [lo, hi], never dropping them.

    Unlike `chain`, a point keeps moving along the flow where a step fails the forward-backward (or
    motion-boundary) test; its weight is multiplied by `fail_weight` at each such step instead, and
    falls to 0 for good once it leaves the frame. Object edges are where the tests fail most, and
    where a hard cut leaves a pixel with no track at all. Returns (points (hi-lo+1, M, 2), weights
    (hi-lo+1, M) float32 in [0, 1], 1 at `frame` and along steps that all passed).
    """
    if not (0 <= lo <= frame <= hi < flows.num_frames):
        raise ValueError(f"frames [{lo}, {hi}] around {frame} outside clip of {flows.num_frames} frames")
    m = pos.shape[0]
    pts = np.empty((hi - lo + 1, m, 2), np.float32)
    weights = np.zeros((hi - lo + 1, m), np.float32)
    pos = np.asarray(pos, np.float32)
    pts[frame - lo], weights[frame - lo] = pos, 1.0
    for direction, stop in ((1, hi), (-1, lo)):
        cur, weight = pos.copy(), np.ones(m, np.float32)
        for t in range(frame, stop, direction):
            packed = flows.packed(t, direction)
            s = _sample(packed, cur)
            cur = cur + s[:, :2]
            weight = weight * np.where(s[:, 2] >= 0.5, np.float32(1.0), np.float32(fail_weight))
            weight *= _inside(cur, packed.shape[:2])
            pts[t + direction - lo], weights[t + direction - lo] = cur, weight
    return pts, weights


def dense_tracks(
    flows: DenseFlows, frame: int, frames: Sequence[int], stride: int = 1
) -> tuple[Tensor, Tensor]:
    """Track every working-grid pixel of `frame` to each frame in `frames`.

    Returns (points (len(frames), n, 2) float32 in video px, visible (len(frames), n) bool) with
    n = h*w for stride 1: query i is the working pixel (x, y) = (i % w, i // w). A stride s > 1 tracks
    every s-th pixel in both axes (n = ceil(h/s)*ceil(w/s), ~s² times cheaper); `DenseFlows.grid_points(s)`
    gives the queries' video-px positions in the same order.
    """
    frames = list(frames)
    lo, hi = min(frames + [frame]), max(frames + [frame])
    grid = _grid(flows.size, stride)
    pts, vis = chain(flows, grid, frame, lo, hi)
    idx = np.asarray(frames) - lo
    if not np.array_equal(idx, np.arange(len(idx))) or len(idx) != len(pts):
        pts, vis = pts[idx], vis[idx]
    return torch.from_numpy(flows.to_video(pts)), torch.from_numpy(vis)


class FlowTracker:
    """`Tracker` backed by chained DIS optical flow; no weights, CPU only.

    Flows are cached for the last video seen (by identity), so voting, propagation and
    `track` on the same array compute them once. Don't modify the array in place between calls.
    """

    name = "flow"

    def __init__(self, max_side: int = 480, preset: str = "medium", boundary_test: bool = True) -> None:
        if preset not in PRESETS:
            raise BadInputError(f"unknown flow preset {preset!r}; expected one of {sorted(PRESETS)}")
        self.max_side = max_side
        self.preset = preset
        self.boundary_test = boundary_test
        self._cached: tuple[np.ndarray, DenseFlows] | None = None

    def flows(self, video: np.ndarray) -> DenseFlows:
        """DenseFlows of video (T, H, W, 3) float32 [0, 1], computed once per video object."""
        if self._cached is not None and self._cached[0] is video:
            return self._cached[1]
        flows = compute_flows(
            video, max_side=self.max_side, preset=self.preset, boundary_test=self.boundary_test
        )
        self._cached = (video, flows)
        return flows

    def track(self, video: np.ndarray, queries: np.ndarray) -> Tracks:
        """Track queries (N, 3) rows (t, x, y) video px through video (T, H, W, 3); see `Tracker`."""
        queries = np.asarray(queries, np.float64).reshape(-1, 3)
        t_count = video.shape[0]
        qt = np.round(queries[:, 0]).astype(np.int64)
        if queries.size and (qt.min() < 0 or qt.max() >= t_count):
            raise BadInputError(f"query frame outside 0..{t_count - 1}: {int(qt.min())}..{int(qt.max())}")
        flows = self.flows(video)
        n = queries.shape[0]
        points = np.zeros((t_count, n, 2), np.float32)
        visible = np.zeros((t_count, n), bool)
        for t0 in np.unique(qt):
            idx = np.nonzero(qt == t0)[0]
            start = flows.to_working(queries[idx, 1:])
            pts, vis = chain(flows, start, int(t0), 0, t_count - 1)
            points[:, idx] = flows.to_video(pts)
            points[t0, idx] = queries[idx, 1:]
            visible[:, idx] = vis
        return Tracks(torch.from_numpy(points), torch.from_numpy(visible))
