"""Per-part colour models learned from the references (weight-free backend).

Flow carries labels well where it is reliable and badly where it is not (occlusions, motion blur,
fast motion). Where the carried label is uncertain, the colours the artist's keyframes show for each
part are the next best evidence. A joint colour histogram per class is fitted on the reference
frames; the likelihood of a pixel's colour under each class then reweights the carried prior.

How far that evidence is worth anything depends on the shot: a brown dog on green grass is told
apart by colour alone, a silver car on grey asphalt with its own dark shadow is not. The model
therefore also measures, on its own keyframes, how well its colours separate the parts from what
surrounds them (`separability`), and the backend lets it override the carry only that far.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

EPS = 1e-6
# Separability is measured in a band this fraction of the long side around the parts: the colour
# model acts where the carry is unsure, next to the parts, not in the far background.
SEPARABILITY_BAND = 0.05
# ... and with a model of at most this many levels per channel. It is measured on the very keyframes the
# model was fitted on, and there agreement rises with the number of bins whatever the colours are worth
# (car-shadow 0.45 at 16 levels, 0.53 at 32; a 400-pixel cap 0.01 -> 0.20): a fixed coarse model keeps
# the measure comparable between shots and between settings of `levels` (issue 12).
SEPARABILITY_LEVELS = 16


def colour_bins(rgb: np.ndarray, levels: int) -> np.ndarray:
    """Joint RGB bin index per pixel: `(h, w, 3)` float [0, 1] -> `(h, w)` int in [0, levels**3)."""
    q = np.clip((rgb * levels).astype(np.int32), 0, levels - 1)
    return (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]


@dataclass
class ColourModel:
    """Class-conditional colour likelihoods `p(colour | class)` as a `(levels**3, K)` table."""

    table: np.ndarray
    levels: int
    separability: float = 1.0  # 0: colours tell the keyframes' classes apart no better than chance; 1: perfectly

    @classmethod
    def fit(cls, frames: list[np.ndarray], probs: list[np.ndarray], levels: int = 16, smoothing: float = 0.1) -> "ColourModel":
        """Fit from reference frames `(h, w, 3)` and their class maps `(h, w, K)`.

        Pseudo-counts keep unseen colours from being impossible: `smoothing` times each class's own
        mass, spread evenly over the bins. Proportional, not a fixed count per bin: a fixed count
        (4096 bins at 16 levels) outweighs a small part's few hundred pixels, flattens its colours
        into the background's and lets the model erase the part wherever the carry is unsure.
        """
        model = cls(_likelihood_table(frames, probs, levels, smoothing), levels)
        coarse = min(levels, SEPARABILITY_LEVELS)
        judge = model if coarse == levels else cls(_likelihood_table(frames, probs, coarse, smoothing), coarse)
        model.separability = keyframe_separability(judge, frames, probs)
        return model

    def likelihood(self, rgb: np.ndarray) -> np.ndarray:
        """`(h, w, 3)` frame -> `(h, w, K)` colour likelihood per class."""
        return self.table[colour_bins(rgb, self.levels)]


def _likelihood_table(frames: list[np.ndarray], probs: list[np.ndarray], levels: int, smoothing: float) -> np.ndarray:
    """`(levels**3, K)` float32 p(colour bin | class) from frames and class maps (`ColourModel.fit`)."""
    k = probs[0].shape[-1]
    bins_n = levels**3
    counts = np.zeros((bins_n, k), np.float64)
    for rgb, p in zip(frames, probs):
        bins = colour_bins(rgb, levels).ravel()
        for c in range(k):
            counts[:, c] += np.bincount(bins, weights=p[..., c].ravel(), minlength=bins_n)
    return smoothed_distribution(counts, smoothing).astype(np.float32)


def smoothed_distribution(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """Counts `(bins, ...)` -> distributions over the bins, each column given pseudo-counts of `smoothing`
    times its own mass spread evenly over them (`ColourModel.fit` says why proportional); EPS: an empty column."""
    counts = counts + (smoothing * counts.sum(axis=0, keepdims=True) / counts.shape[0] + EPS)
    return counts / counts.sum(axis=0, keepdims=True)


def keyframe_separability(model: ColourModel, frames: list[np.ndarray], probs: list[np.ndarray]) -> float:
    """How well `model`'s colours alone label its keyframes near the parts, in [0, 1] (0: chance).

    In a band `SEPARABILITY_BAND` around the parts (every class but background, 0), each pixel's
    colour posterior under the band's class frequencies is compared with its keyframe label: the
    expected agreement `acc`, against the agreement `chance` of guessing by frequency alone, gives
    (acc - chance) / (1 - chance). Measured on the data the model was fitted on, so it is optimistic;
    what matters is the order between shots (dog on grass 0.70, car on asphalt 0.45, chair 0.37, at 16
    levels: `ColourModel.fit` judges with a model of at most `SEPARABILITY_LEVELS`).
    """
    bands = [_band(p) for p in probs]
    totals = sum(p[band].sum(axis=0) for p, band in zip(probs, bands))
    n = float(totals.sum())
    if n <= 0:
        return 0.0
    freq = totals / n
    agree = 0.0
    for rgb, p, band in zip(frames, probs, bands):
        post = model.likelihood(rgb)[band] * freq
        post /= np.maximum(post.sum(axis=-1, keepdims=True), EPS)
        agree += float((post * p[band]).sum())
    chance = float((freq**2).sum())
    return float(np.clip((agree / n - chance) / max(1.0 - chance, EPS), 0.0, 1.0))


def _band(probs: np.ndarray) -> np.ndarray:
    """(h, w) bool: within `SEPARABILITY_BAND` of the long side of any part (every class but background)."""
    h, w = probs.shape[:2]
    r = max(1, int(SEPARABILITY_BAND * max(h, w)))
    parts = (probs[..., 1:].sum(axis=-1) > 0.5).astype(np.uint8)
    return cv2.dilate(parts, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0


def reweight(prior: np.ndarray, likelihood: np.ndarray, weight: float) -> np.ndarray:
    """Posterior `prior * likelihood**weight`, normalised over classes; shapes `(h, w, K)`.

    `weight` 0 returns the prior; 1 is Bayes' rule with the colour model.
    """
    if weight <= 0:
        return prior
    post = prior * np.power(likelihood + EPS, weight)
    return post / np.maximum(post.sum(axis=-1, keepdims=True), EPS)
