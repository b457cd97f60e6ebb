"""Per-part colour models learned from the references (weight-free backend).

Flow carries labels well where it is reliable and badly where it is not (occlusions, motion blur,
fast motion). Where the carried label is uncertain, the colours the artist's keyframes show for each
part are the next best evidence. A joint colour histogram per class is fitted on the reference
frames; the likelihood of a pixel's colour under each class then reweights the carried prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-6


def colour_bins(rgb: np.ndarray, levels: int) -> np.ndarray:
    """Joint RGB bin index per pixel: `(h, w, 3)` float [0, 1] -> `(h, w)` int in [0, levels**3)."""
    q = np.clip((rgb * levels).astype(np.int32), 0, levels - 1)
    return (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]


@dataclass
class ColourModel:
    """Class-conditional colour likelihoods `p(colour | class)` as a `(levels**3, K)` table."""

    table: np.ndarray
    levels: int

    @classmethod
    def fit(cls, frames: list[np.ndarray], probs: list[np.ndarray], levels: int = 16, smoothing: float = 0.1) -> "ColourModel":
        """Fit from reference frames `(h, w, 3)` and their class maps `(h, w, K)`.

        Pseudo-counts keep unseen colours from being impossible: `smoothing` times each class's own
        mass, spread evenly over the bins. Proportional, not a fixed count per bin: a fixed count
        (4096 bins at 16 levels) outweighs a small part's few hundred pixels, flattens its colours
        into the background's and lets the model erase the part wherever the carry is unsure.
        """
        k = probs[0].shape[-1]
        bins_n = levels**3
        counts = np.zeros((bins_n, k), np.float64)
        for rgb, p in zip(frames, probs):
            bins = colour_bins(rgb, levels).ravel()
            for c in range(k):
                counts[:, c] += np.bincount(bins, weights=p[..., c].ravel(), minlength=bins_n)
        counts += smoothing * counts.sum(axis=0, keepdims=True) / bins_n + EPS  # EPS: a class with no pixels
        table = counts / counts.sum(axis=0, keepdims=True)
        return cls(table.astype(np.float32), levels)

    def likelihood(self, rgb: np.ndarray) -> np.ndarray:
        """`(h, w, 3)` frame -> `(h, w, K)` colour likelihood per class."""
        return self.table[colour_bins(rgb, self.levels)]


def reweight(prior: np.ndarray, likelihood: np.ndarray, weight: float) -> np.ndarray:
    """Posterior `prior * likelihood**weight`, normalised over classes; shapes `(h, w, K)`.

    `weight` 0 returns the prior; 1 is Bayes' rule with the colour model.
    """
    if weight <= 0:
        return prior
    post = prior * np.power(likelihood + EPS, weight)
    return post / np.maximum(post.sum(axis=-1, keepdims=True), EPS)
