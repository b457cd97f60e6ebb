"""Background-motion cue (weight-free backend): a pixel that moves like the background is not a moving part.

Why: behind a moving subject the carry leaves a trail. Ground the subject walks off has no match in
the frame before, its carried coordinates still point into the subject, and where the carry is unsure
the keyframe's colours are asked, which cannot tell white bollards from a white car or red-and-white
poles from a chestnut horse. Their motion can: on the DAVIS clips the step flow's distance from the
background's own motion separates subject from background with an AUC of 0.96-0.99 (issue 12).

Per frame and carry, from the flow of the step the carry just took:

1. a homography (RANSAC) is fitted to the flow of pixels the carry is sure are background: the
   camera's motion, pan and zoom included; a pixel's residual is its flow's distance from it;
2. the residual's distribution is measured on the pixels the carry is sure of, background and parts
   apart, in octave bins (`RESIDUAL_EDGES`), so the cue is calibrated on the shot itself: a subject
   that stands still, or a static chair filmed by a moving camera, moves like its background, the two
   distributions agree, the cue's separability (2 AUC - 1) is 0 and it changes nothing;
3. it only ever speaks for the background: each part's likelihood is p(r | parts) / p(r | background)
   clipped at 1 and the background's is 1. What moves with a subject is not always part of it: a car's
   shadow moves with the car, and letting motion add parts labelled it car (K=5 J -0.008 on
   car-shadow), while a pixel that moves like the ground is rarely part of a moving subject.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..track.flow import pixel_grid
from .appearance import smoothed_distribution

EPS = 1e-6
# Residual bins in working px (octaves): the background's residual is mostly under 1 px, a moving
# subject's 2-16 px on the DAVIS clips.
RESIDUAL_EDGES = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0], np.float32)
# A pixel calibrates the cue where the carry is this sure of it: its class's share of the map ...
SURE_SHARE = 0.9
# ... and the carry's confidence (no failed flow test since its keyframe or re-match).
SURE_CONFIDENCE = 0.8
MIN_PIXELS = 100  # sure background pixels needed to fit the homography (and sure part pixels: MIN_PIXELS // 4)
HOMOGRAPHY_POINTS = 2000  # background pixels the homography is fitted on, evenly spread
RANSAC_THRESHOLD = 1.0  # working px
SMOOTHING = 0.1  # pseudo-counts, as a fraction of each side's mass spread over the bins (as `appearance`)


@dataclass
class MotionCue:
    """One frame's background-motion evidence for a carry."""

    ratio: np.ndarray  # (h, w) p(residual | parts) / p(residual | background), clipped at 1; 1 where the flow failed
    separability: float  # 2 AUC - 1 of the residual between sure part and sure background pixels, in [0, 1]

    @classmethod
    def fit(cls, packed: np.ndarray, maps: np.ndarray, conf: np.ndarray) -> "MotionCue | None":
        """From the step's flow `(h, w, [fx, fy, ok])` and the carry's maps `(h, w, K)` and confidence `(h, w)`.

        None where the frame has too few sure pixels of either side to fit and calibrate it.
        """
        ok = packed[..., 2] >= 0.5
        sure = (conf > SURE_CONFIDENCE) & ok
        background = sure & (maps[..., 0] > SURE_SHARE)
        parts = sure & (maps[..., 0] < 1.0 - SURE_SHARE)
        if background.sum() < MIN_PIXELS or parts.sum() < MIN_PIXELS // 4:
            return None
        residual = background_residual(packed[..., :2], background)
        if residual is None:
            return None
        bins = residual_bins(residual)
        p_background = _distribution(bins[background])
        p_parts = _distribution(bins[parts])
        ratio = np.minimum(p_parts / p_background, 1.0).astype(np.float32)[bins]
        ratio[~ok] = 1.0
        return cls(ratio, _separability(p_parts, p_background))

    def likelihood(self, classes: int) -> np.ndarray:
        """`(h, w, K)` likelihood per class: 1 for the background (class 0), `ratio` for every part."""
        out = np.empty((*self.ratio.shape, classes), np.float32)
        out[..., 0] = 1.0
        out[..., 1:] = self.ratio[..., None]
        return out


def background_residual(flow: np.ndarray, background: np.ndarray) -> np.ndarray | None:
    """(h, w) distance of each pixel's flow `(h, w, 2)` from a homography fitted to the `background` pixels' flow."""
    h, w = background.shape
    ys, xs = np.nonzero(background)
    pick = np.linspace(0, len(xs) - 1, min(HOMOGRAPHY_POINTS, len(xs))).astype(np.int64)
    src = np.stack([xs[pick], ys[pick]], axis=-1).astype(np.float32)
    dst = src + flow[ys[pick], xs[pick]]
    homography, _ = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_THRESHOLD)
    if homography is None:
        return None
    grid = np.stack(pixel_grid(h, w), axis=-1)
    moved = cv2.perspectiveTransform(grid.reshape(-1, 1, 2), homography).reshape(h, w, 2)
    return np.linalg.norm(moved - grid - flow, axis=-1)


def residual_bins(residual: np.ndarray) -> np.ndarray:
    """Bin index per pixel (`RESIDUAL_EDGES`; the last bin is open-ended)."""
    return np.searchsorted(RESIDUAL_EDGES, residual, side="right").clip(1, len(RESIDUAL_EDGES)) - 1


def _distribution(bins: np.ndarray) -> np.ndarray:
    return smoothed_distribution(np.bincount(bins, minlength=len(RESIDUAL_EDGES)).astype(np.float64), SMOOTHING)


def _separability(p_parts: np.ndarray, p_background: np.ndarray) -> float:
    """2 AUC - 1, AUC = P(a part's residual > a background pixel's), ties counted half; 0 if not above chance."""
    below = np.cumsum(p_background) - p_background
    auc = float((p_parts * (below + 0.5 * p_background)).sum())
    return float(np.clip(2.0 * auc - 1.0, 0.0, 1.0))


def with_motion(maps: np.ndarray, conf: np.ndarray, cue: MotionCue, weight: float, trust_power: float) -> np.ndarray:
    """Maps `(h, w, K)` reweighted by the cue where the carry is unsure.

    Posterior maps * likelihood**(weight * separability), normalised; the carry keeps weight
    conf**`trust_power`: a carry straight from its keyframe or a re-match (confidence 1, or 0.995 per
    frame since) is believed over one frame's flow, one that has failed a flow test (0.6) mostly is not.
    """
    exponent = np.float32(weight * cue.separability)
    if exponent <= 0:
        return maps
    post = (maps + EPS) * np.power(cue.likelihood(maps.shape[-1]), exponent)  # EPS: a part's map at exactly 1
    post /= post.sum(axis=-1, keepdims=True)
    keep = np.power(conf, np.float32(trust_power))[..., None]
    return keep * maps + (1.0 - keep) * post
