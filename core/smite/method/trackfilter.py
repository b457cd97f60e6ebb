"""Reliability-weighted temporal filter of soft maps along flow tracks (the weight-free temporal module).

Why: what flickers in carried mattes is their edges. Hard track visibility (a point is dropped at
its first failed forward-backward step) leaves edge pixels, where the flow tests fail most, with
only their own frame, so voting and low-passing along such tracks cannot steady them; averaging
along every track without care, on the other hand, drags a fast small subject's edges onto the
background where tracks drift. Each neighbour's sample is therefore weighted by how much its track
is to be trusted:

- flow: a track keeps moving where a step fails the flow tests but its weight falls by
  `fail_weight` per failed step (`track.flow.weighted_chain`);
- colour: a track that slid onto another surface sees another colour, so the sample's weight is
  `exp(-|I_s(p_s) - I_t(x)|² / 2σ²)` from the plates' working frames (a bilateral range kernel
  along the track).

The frame's own sample always weighs 1, so where no neighbour is trusted the frame keeps its maps.

The samples are combined by their weighted median (`track_median`), or a blend of it with the
weighted mean: a few tracks that slid off a fast small part (the colour test cannot see it slide when
the part has the colour of what it crosses) pull the mean towards the background, while the median
follows the majority and keeps the part.
"""

from __future__ import annotations

import numpy as np


def colour_weights(track_rgb: np.ndarray, own_rgb: np.ndarray, sigma: float) -> np.ndarray:
    """exp(-|track_rgb - own_rgb|² / 2σ²) per point: (M, 3) and (M, 3) colours -> (M,) float32."""
    d2 = ((track_rgb - own_rgb) ** 2).sum(-1)
    return np.exp(-0.5 * d2 / (sigma * sigma)).astype(np.float32)


def track_mean(samples: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean `(K, N)` of samples `(S, K, N)` over S with weights `(S, N)` (some weight > 0 per point)."""
    w = weights[:, None, :]
    return (samples * w).sum(0) / np.maximum(w.sum(0), 1e-6)


def track_median(samples: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted median `(K, N)` of samples `(S, K, N)` over S with weights `(S, N)` (some weight > 0 per point).

    The smallest sample whose own weight plus that of every sample at or below it reaches half the
    total. Counted for each of the S candidates (S² compares, S is a window of about 15) instead of
    sorting: numpy sorts many short strided axes slowly; this is 2-4x quicker than argsort on a working frame.
    """
    half = np.float32(0.5) * weights.sum(0)
    best = np.full(samples.shape[1:], np.inf, np.float32)
    for candidate in samples:
        below = np.einsum("skn,sn->kn", (samples <= candidate[None]).astype(np.float32), weights)
        np.copyto(best, np.minimum(best, candidate), where=below >= half)
    return best
