"""Temporal voting over point tracks (SMITE §3, "S_vote").

A pixel's label should not flicker while the surface under it stays the same. Voting follows each
query point along its track through a window of frames, takes the majority label among the frames
where the point is visible, and averages the probability vectors that agree with that majority.
The result is the target of SMITE's tracking energy E_track and, in the weight-free backend, a
direct temporal smoothing step.

Conventions shared by every function here:
- probability maps are `(T, K, H, W)`: frames, classes (background included), rows, columns;
- track positions are pixel coordinates `(x, y)` of that map grid, pixel centres at integer
  coordinates (so the map covers `[-0.5, W - 0.5) x [-0.5, H - 0.5)`);
- all functions are pure tensor functions, work on any device and are differentiable with
  respect to the probabilities (not the positions' visibility).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def inside_mask(tracks: Tensor, height: int, width: int) -> Tensor:
    """Which track positions fall on the map (finite and within half a pixel of the grid).

    tracks: `(..., 2)` pixel coordinates `(x, y)`. Returns a bool tensor of shape `(...)`.
    """
    x, y = tracks[..., 0], tracks[..., 1]
    finite = torch.isfinite(x) & torch.isfinite(y)
    return finite & (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)


def sample_along_tracks(probs: Tensor, tracks: Tensor) -> Tensor:
    """Bilinearly sample each frame's map at that frame's track positions.

    probs: `(T, K, H, W)`; tracks: `(T, N, 2)` pixel coordinates `(x, y)`, frame `s` of the tracks
    being sampled from frame `s` of the maps. Returns `(T, K, N)`.

    Pixel centres sit at integer coordinates (`grid_sample(align_corners=True)`). Points off the map
    (see `inside_mask`) give all-zero vectors; points in the outer half-pixel rim read the edge pixel
    rather than fading towards zero, so a probability vector never loses mass by being near a border.
    """
    if probs.dim() != 4 or tracks.dim() != 3 or tracks.shape[-1] != 2:
        raise ValueError(
            f"expected probs (T,K,H,W) and tracks (T,N,2), got {tuple(probs.shape)} and {tuple(tracks.shape)}"
        )
    if tracks.shape[0] != probs.shape[0]:
        raise ValueError(f"tracks cover {tracks.shape[0]} frames but probs has {probs.shape[0]}")
    t, _, h, w = probs.shape
    tracks = tracks.to(device=probs.device, dtype=probs.dtype)
    inside = inside_mask(tracks, h, w)  # (T, N)
    safe = torch.where(inside.unsqueeze(-1), tracks, torch.zeros_like(tracks))
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], dtype=probs.dtype, device=probs.device)
    grid = (safe * scale - 1.0).unsqueeze(1)  # (T, 1, N, 2)
    sampled = F.grid_sample(probs, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return sampled.squeeze(2) * inside.unsqueeze(1).to(probs.dtype)  # (T, K, N)


def vote(samples: Tensor, visible: Tensor) -> Tensor:
    """Majority vote over a point's visible samples; returns the mean of the agreeing vectors.

    samples: `(S, K, N)` probability vectors of N points in S frames; visible: `(S, N)` bool.
    Returns `(K, N)`.

    - The winning label P of a point is the most frequent argmax among its visible samples.
    - Ties between labels with the same count go to the label with the larger summed probability
      over the point's visible samples (a confident minority beats a hesitant one); an exact tie
      after that goes to the lower label index.
    - The result is the mean of the visible samples whose argmax is P.
    - A point with no visible sample gets the mean of all its S samples (nothing better is known;
      callers that need to tell such points apart can check `visible.any(0)`).
    """
    if samples.dim() != 3 or visible.shape != (samples.shape[0], samples.shape[2]):
        raise ValueError(
            f"expected samples (S,K,N) and visible (S,N), got {tuple(samples.shape)} and {tuple(visible.shape)}"
        )
    _, k, _ = samples.shape
    vis = visible.to(device=samples.device, dtype=torch.bool)
    visf = vis.to(samples.dtype)
    with torch.no_grad():
        # max(dim).indices, not argmax: torch's argmax over a strided dim is ~15x slower on CPU;
        # both return the first maximal index.
        labels = samples.max(dim=1).indices  # (S, N)
        counts = torch.stack([((labels == c) & vis).sum(0) for c in range(k)]).to(samples.dtype)  # (K, N)
        mass = (samples * visf.unsqueeze(1)).sum(0)  # (K, N)
        top = counts.max(dim=0, keepdim=True).values
        tie_score = torch.where(counts == top, mass, torch.full_like(mass, float("-inf")))
        winner = tie_score.max(dim=0).indices  # (N,)
        agree = vis & (labels == winner.unsqueeze(0))  # (S, N)
        any_visible = vis.any(dim=0)  # (N,)
        # Points without any visible sample average every sample instead.
        weights = torch.where(any_visible.unsqueeze(0), agree, torch.ones_like(agree)).to(samples.dtype)
        weights = weights / weights.sum(0, keepdim=True).clamp_min(1.0)
    return (samples * weights.unsqueeze(1)).sum(0)


WINDOW_RULES = ("centred", "shifted")


def window_frames(t: int, num_frames: int, window: int, rule: str = "centred") -> range:
    """Frames that vote for query frame t.

    "centred" (the weight-free backend's rule; its output depends on it): `|s - t| <= window // 2`,
    truncated at the clip ends, so frame 0 of a 16-frame clip votes over 8 frames.
    "shifted" (the authors' `determine_window`, src/tracking.py:88-99, used by the diffusion backend):
    `window` consecutive frames starting at `t - window // 2`, shifted to stay inside the clip, so every
    frame votes over `window` frames when the clip has them; a clip shorter than `window` votes over
    all its frames (the authors' code indexes past the end there).
    """
    if window < 1:
        raise ValueError(f"voting window must be at least 1 frame, got {window}")
    half = window // 2
    if rule == "centred":
        return range(max(0, t - half), min(num_frames, t + half + 1))
    if rule == "shifted":
        start = min(max(0, t - half), max(0, num_frames - window))
        return range(start, min(num_frames, start + window))
    raise ValueError(f"voting window rule must be one of {', '.join(WINDOW_RULES)}, got {rule!r}")


def vote_window(
    probs: Tensor,
    tracks: Tensor,
    visible: Tensor,
    query_frames: Sequence[int],
    window: int = 15,
    rule: str = "centred",
) -> Tensor:
    """Temporal vote for the query points of several frames.

    probs: `(T, K, H, W)` per-frame class probabilities.
    tracks: `(Q, T, N, 2)` with `Q = len(query_frames)`: `tracks[i, s, n]` is where query point n of
      frame `query_frames[i]` lies in frame s (pixel coordinates `(x, y)` of the probs grid).
    visible: `(Q, T, N)` bool, the tracker's visibility of those positions.
    query_frames: the frame index t of each of the Q query sets.
    window: how many frames vote (SMITE: 15); rule: "centred" or "shifted" (see `window_frames`).

    Returns `(Q, K, N)`: the voted probability vector of every query point (see `vote`). A sample
    only counts if the tracker says visible *and* the position lies on the map.
    """
    if probs.dim() != 4:
        raise ValueError(f"expected probs (T,K,H,W), got {tuple(probs.shape)}")
    t_all, k, h, w = probs.shape
    q = len(query_frames)
    if tracks.dim() != 4 or tracks.shape[:2] != (q, t_all) or tracks.shape[-1] != 2:
        raise ValueError(f"expected tracks ({q},{t_all},N,2), got {tuple(tracks.shape)}")
    if visible.shape != tracks.shape[:3]:
        raise ValueError(f"expected visible {tuple(tracks.shape[:3])}, got {tuple(visible.shape)}")
    if q == 0:
        return probs.new_zeros((0, k, tracks.shape[2]))
    out = []
    vis_all = visible.to(device=probs.device, dtype=torch.bool)
    for i, t in enumerate(query_frames):
        if not 0 <= t < t_all:
            raise ValueError(f"query frame {t} is outside the clip of {t_all} frames")
        frames = window_frames(int(t), t_all, window, rule)
        sl = slice(frames.start, frames.stop)
        pos = tracks[i, sl].to(device=probs.device, dtype=probs.dtype)
        samples = sample_along_tracks(probs[sl], pos)  # (S, K, N)
        vis = vis_all[i, sl] & inside_mask(pos, h, w)
        out.append(vote(samples, vis))
    return torch.stack(out)
