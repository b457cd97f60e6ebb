"""Soft mattes at plate resolution, with edges taken from the plate.

The model's probabilities come at a low resolution (64² latents, a 480-px working grid), so plain
upsampling gives blocky or blurry edges. A guided filter (He, Sun, Tang 2010/2013) fits, in every
small window, the matte as a linear function of the plate colour; the matte then switches where the
plate switches, following hair and hard edges. We run the "fast guided filter" variant (He & Sun 2015):
the linear coefficients are fitted on a subsampled guide and only the cheap final `a·I + b` runs at
plate resolution, so a 2K/4K frame costs a few milliseconds per part.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .errors import BadInputError

# Plate pixels per working pixel of the coefficient fit: ~1 at HD, more for 2K/4K plates.
WORK_LONG_SIDE = 480


def _box(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over (2r+1)² windows of x (h, w, C) float32, edge pixels reflected; one cv2 call for all C."""
    k = (2 * r + 1, 2 * r + 1)
    y = cv2.boxFilter(np.ascontiguousarray(x), -1, k, normalize=True, borderType=cv2.BORDER_REFLECT)
    return y.reshape(x.shape)


def _resize(x: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """cv2.resize of x (h, w, C) to size (H, W), keeping the channel axis even when C == 1."""
    y = cv2.resize(np.ascontiguousarray(x), (size[1], size[0]), interpolation=interpolation)
    return y.reshape(size[0], size[1], x.shape[-1])


def _coefficients(guide: np.ndarray, p: np.ndarray, r: int, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour guided-filter coefficients, box-averaged, and the guide's local variance.

    guide (h, w, 3), p (h, w, K) float32 -> a (h, w, K, 3), b (h, w, K) such that the filtered
    p is sum_c a[..., c] * guide[..., c] + b (evaluated on the full-resolution guide by the caller),
    and (h, w) the mean over channels of the guide's variance in each window.
    """
    h, w, k = p.shape
    ch = [guide[..., c] for c in range(3)]
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    stack = ch + [ch[u] * ch[v] for u, v in pairs] + [p[..., j] for j in range(k)]
    stack += [ch[c] * p[..., j] for j in range(k) for c in range(3)]
    means = _box(np.stack(stack, axis=-1), r)
    mi = [means[..., c] for c in range(3)]
    var = [means[..., 3 + n] - mi[u] * mi[v] for n, (u, v) in enumerate(pairs)]
    sxx, sxy, sxz, syy, syz, szz = var
    sxx, syy, szz = sxx + eps, syy + eps, szz + eps
    # Inverse of the symmetric 3x3 (Sigma + eps I) from its cofactors.
    c00 = syy * szz - syz * syz
    c01 = sxz * syz - sxy * szz
    c02 = sxy * syz - sxz * syy
    c11 = sxx * szz - sxz * sxz
    c12 = sxy * sxz - sxx * syz
    c22 = sxx * syy - sxy * sxy
    inv_det = 1.0 / (sxx * c00 + sxy * c01 + sxz * c02)
    rows = [(c00, c01, c02), (c01, c11, c12), (c02, c12, c22)]
    coef = []
    for j in range(k):
        mp = means[..., 9 + j]
        cov = [means[..., 9 + k + 3 * j + c] - mi[c] * mp for c in range(3)]
        a = [(row[0] * cov[0] + row[1] * cov[1] + row[2] * cov[2]) * inv_det for row in rows]
        b = mp - a[0] * mi[0] - a[1] * mi[1] - a[2] * mi[2]
        coef += a + [b]
    ab = _box(np.stack(coef, axis=-1), r).reshape(h, w, k, 4)
    return ab[..., :3], ab[..., 3], (var[0] + var[3] + var[5]) / 3.0


def refine_to_plate(
    probs: np.ndarray,
    plate: np.ndarray,
    *,
    radius: int = 4,
    eps: float = 1e-3,
    subsample: int | None = None,
    edge_gate: float = 0.0,
) -> np.ndarray:
    """Upsample class probabilities to plate resolution along the plate's edges.

    probs: (K, h, w) float, per-class probabilities (background at 0) summing to 1 over K.
    plate: (H, W, 3) float32 in [0, 1], the guide (display-referred; the filter assumes values ~[0, 1]).
    radius: window radius in plate pixels; eps: regularisation (larger = smoother, less edge-following).
    subsample: plate pixels per fitting pixel (fast guided filter); None picks ~WORK_LONG_SIDE px long side.
    edge_gate: where the plate is flat the filter has no edge to follow and only box-blurs, which erodes
    what is narrower than its window (a chair's reflection in a glass wall). The filtered map then weighs
    v / (v + edge_gate * eps) against the plainly (bilinearly) upsampled one, v the guide's local variance
    (mean over channels, box-averaged like the coefficients); 0 = the filter everywhere.
    Returns (K, H, W) float32 in [0, 1], summing to 1 over K.
    """
    if probs.ndim != 3:
        raise BadInputError(f"probs must be (K, h, w), got shape {tuple(probs.shape)}")
    if plate.ndim != 3 or plate.shape[-1] != 3:
        raise BadInputError(f"plate must be (H, W, 3), got shape {tuple(plate.shape)}")
    k = probs.shape[0]
    if k < 2:
        return np.ones((k,) + plate.shape[:2], np.float32)
    hp, wp = plate.shape[:2]
    s = subsample if subsample is not None else max(1, math.ceil(max(hp, wp) / WORK_LONG_SIDE))
    s = max(1, min(int(s), radius)) if radius > 0 else 1
    hs, ws = max(1, round(hp / s)), max(1, round(wp / s))
    r = max(1, round(radius / s))

    plate = np.ascontiguousarray(plate, dtype=np.float32)
    guide = plate if (hs, ws) == (hp, wp) else _resize(plate, (hs, ws), cv2.INTER_AREA)
    p = _resize(np.moveaxis(np.asarray(probs, np.float32), 0, -1), (hs, ws), cv2.INTER_LINEAR)
    # The filter is linear and the classes sum to 1, so the background (index 0) is 1 - the rest.
    a, b, variance = _coefficients(guide, p[..., 1:], r, eps)
    ab = np.concatenate([a, b[..., None]], axis=-1).reshape(hs, ws, (k - 1) * 4)
    if (hs, ws) != (hp, wp):
        ab = _resize(ab, (hp, wp), cv2.INTER_LINEAR)
    ab = ab.reshape(hp, wp, k - 1, 4)
    q = np.empty((k, hp, wp), np.float32)
    for j in range(k - 1):
        a0, a1, a2, b = (ab[..., j, c] for c in range(4))
        q[j + 1] = b + a0 * plate[..., 0] + a1 * plate[..., 1] + a2 * plate[..., 2]
    if edge_gate > 0:
        q[1:] = _gate_flat(q[1:], probs, variance, r, eps * edge_gate)
    q[0] = 1.0 - q[1:].sum(axis=0)
    np.clip(q, 0.0, 1.0, out=q)
    total = q.sum(axis=0, keepdims=True)
    # Where every class clipped to 0 (can't happen for exact sums, guards float noise) fall back to uniform.
    q = np.where(total > 1e-6, q / np.maximum(total, 1e-6), 1.0 / k)
    return q.astype(np.float32)


def _gate_flat(filtered: np.ndarray, probs: np.ndarray, variance: np.ndarray, r: int, scale: float) -> np.ndarray:
    """`filtered` (K-1, H, W) where the guide has edges, the bilinear upsampling of `probs` where it is flat.

    variance: (h, w) the guide's local variance at the fitting grid; the filtered map weighs
    v / (v + scale), v its box average over the filter's window (`refine_to_plate`'s edge_gate).
    """
    hp, wp = filtered.shape[1:]
    strength = _box(np.maximum(variance, 0.0)[..., None], r)[..., 0]
    weight = strength / (strength + np.float32(scale))
    if weight.shape != (hp, wp):
        weight = _resize(weight[..., None], (hp, wp), cv2.INTER_LINEAR)[..., 0]
    plain = _resize(np.moveaxis(np.asarray(probs, np.float32), 0, -1), (hp, wp), cv2.INTER_LINEAR)
    return weight * filtered + (1.0 - weight) * np.moveaxis(plain[..., 1:], -1, 0)
