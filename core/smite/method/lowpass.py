"""3-D DCT low-pass over (frames, rows, columns): SMITE's E_reg and its closed-form counterpart.

SMITE keeps the segmentation close to the reference maps in the low frequencies (the overall
layout of the parts, which the reference pass gets right) while leaving the high frequencies (the
boundaries, which voting and tracking sharpen) free. Frequencies are those of the orthonormal
DCT-II along the last three dims `(T, H, W)`; "low" is a box: spatial indices `u < tau*H`,
`v < tau*W` and temporal index `< temporal_tau*T` (default 1.0 keeps every temporal frequency).

Two callers, two explicit rules (`rounding`, `mean_over`):
- `lowpass` / `lowpass_consistency` keep `ceil(tau*n)` frequencies per axis (the weight-free
  backend's rule until issue 12 replaced its low-pass step; `tests/test_lowpass.py` holds it);
- the diffusion backend's E_reg (`method.energies.smite_reg_energy`) follows the authors' `dct_loss`
  (src/frequency_filter.py:77-83, 104): `floor(tau*n)` frequencies (`int(n * percentage)`) and an
  L1 mean over *all* coefficients, the masked zeros included.

Because the box is separable, low-passing is one small matrix product per axis with the first
`m` rows of the DCT basis; no full 3-D transform is needed. Everything is a plain matrix multiply,
so it runs on any device and is differentiable.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor


@lru_cache(maxsize=64)
def _basis(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Orthonormal DCT-II matrix `(n, n)`: `coeffs = basis @ signal` (computed in float64)."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    c = torch.cos(math.pi * (2.0 * i + 1.0) * k / (2.0 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.to(dtype=dtype, device=device)


def dct_basis(n: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """The orthonormal DCT-II matrix `(n, n)`, cached per (n, dtype, device); row k is frequency k."""
    if n < 1:
        raise ValueError(f"DCT length must be at least 1, got {n}")
    return _basis(int(n), dtype, torch.device(device) if device is not None else torch.device("cpu"))


def _apply(x: Tensor, matrix: Tensor, dim: int) -> Tensor:
    """Multiply every 1-D slice of x along `dim` by `matrix` `(m, n)`; that dim becomes length m."""
    moved = x.movedim(dim, -1)
    return (moved @ matrix.transpose(0, 1)).movedim(-1, dim)


def dct(x: Tensor, dim: int = -1) -> Tensor:
    """Orthonormal DCT-II along `dim` (same as `scipy.fft.dct(x, type=2, norm="ortho", axis=dim)`)."""
    return _apply(x, dct_basis(x.shape[dim], x.dtype, x.device), dim)


def idct(x: Tensor, dim: int = -1) -> Tensor:
    """Inverse of `dct` along `dim` (the orthonormal DCT-III)."""
    return _apply(x, dct_basis(x.shape[dim], x.dtype, x.device).transpose(0, 1), dim)


def dct3(x: Tensor) -> Tensor:
    """Orthonormal DCT-II over the last three dims `(..., T, H, W)`."""
    _check3(x)
    return dct(dct(dct(x, -1), -2), -3)


def idct3(x: Tensor) -> Tensor:
    """Inverse of `dct3` over the last three dims `(..., T, H, W)`."""
    _check3(x)
    return idct(idct(idct(x, -3), -2), -1)


def _check3(x: Tensor) -> None:
    if x.dim() < 3:
        raise ValueError(f"expected a tensor (..., T, H, W), got shape {tuple(x.shape)}")


ROUNDINGS = ("ceil", "floor")
MEANS = ("kept", "all")


def _kept(n: int, frac: float, rounding: str = "ceil") -> int:
    """How many low frequencies of an axis of length n are kept.

    "ceil": every index `< frac * n`, the product rounded to 1e-9 first so that e.g. 0.3 * 10 keeps 3,
    not 4 (the weight-free backend). "floor": `int(frac * n)` exactly as the authors' `dct_low_pass_filter`
    computes it (src/frequency_filter.py:77-78), so 0.4 * 64 keeps 25 and 0.999 * 64 keeps 63.
    """
    if not frac >= 0.0:
        raise ValueError(f"cut-off fraction must be >= 0, got {frac}")
    if rounding == "ceil":
        kept = math.ceil(round(frac * n, 9))
    elif rounding == "floor":
        kept = math.floor(frac * n)
    else:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
    return min(n, max(0, kept))


def lowfreq_mask(
    t: int, h: int, w: int, tau: float, temporal_tau: float = 1.0, device: torch.device | str | None = None,
    rounding: str = "ceil",
) -> Tensor:
    """Bool mask `(T, H, W)` of the kept DCT coefficients: `f < temporal_tau*T, u < tau*H, v < tau*W`."""
    mt, mh, mw = _kept(t, temporal_tau, rounding), _kept(h, tau, rounding), _kept(w, tau, rounding)
    mask = torch.zeros(t, h, w, dtype=torch.bool, device=device)
    mask[:mt, :mh, :mw] = True
    return mask


def _low_bases(x: Tensor, tau: float, temporal_tau: float, rounding: str = "ceil") -> list[Tensor]:
    """The first m rows of each axis' DCT basis, for axes (T, H, W) of x."""
    _check3(x)
    t, h, w = x.shape[-3:]
    kept = (_kept(t, temporal_tau, rounding), _kept(h, tau, rounding), _kept(w, tau, rounding))
    return [dct_basis(n, x.dtype, x.device)[:m] for n, m in zip((t, h, w), kept)]


def _low_coefficients(x: Tensor, tau: float, temporal_tau: float, rounding: str = "ceil") -> Tensor:
    """The kept DCT coefficients of x: `(..., mt, mh, mw)` (the box `lowfreq_mask` selects)."""
    bt, bh, bw = _low_bases(x, tau, temporal_tau, rounding)
    return _apply(_apply(_apply(x, bw, -1), bh, -2), bt, -3)


def lowpass(x: Tensor, tau: float, temporal_tau: float = 1.0) -> Tensor:
    """Keep only the low 3-D DCT frequencies of x `(..., T, H, W)`; returns the same shape.

    Equal to `idct3(dct3(x) * lowfreq_mask(...))` (ceil rounding), computed as one projection per axis.
    """
    bt, bh, bw = _low_bases(x, tau, temporal_tau)
    coeffs = _apply(_apply(_apply(x, bw, -1), bh, -2), bt, -3)
    return _apply(_apply(_apply(coeffs, bt.transpose(0, 1), -3), bh.transpose(0, 1), -2), bw.transpose(0, 1), -1)


def lowpass_energy(current: Tensor, reference: Tensor, tau: float, temporal_tau: float = 1.0, *,
                   rounding: str = "ceil", mean_over: str = "kept") -> Tensor:
    """Mean L1 distance between the low-frequency 3-D DCT coefficients of two maps.

    current, reference: `(..., T, H, W)`, broadcastable (e.g. WAS maps `(K, T, 64, 64)`).
    Returns a scalar, differentiable with respect to both; by linearity it transforms the difference once.
    `rounding` picks how many frequencies per axis are kept (see `_kept`); `mean_over` "kept" divides
    the L1 sum by the number of kept coefficients (0 when nothing is kept), "all" by the number of
    all coefficients, the masked zeros included (the authors' `F.l1_loss` of the masked spectra).
    SMITE's E_reg is `method.energies.smite_reg_energy`.
    """
    if mean_over not in MEANS:
        raise ValueError(f"mean_over must be one of {', '.join(MEANS)}, got {mean_over!r}")
    diff = current - reference
    coeffs = _low_coefficients(diff, tau, temporal_tau, rounding)
    if coeffs.numel() == 0:
        return diff.sum() * 0.0
    if mean_over == "kept":
        return coeffs.abs().mean()
    return coeffs.abs().sum() / diff.numel()


def lowpass_consistency(
    current: Tensor, reference: Tensor, tau: float, strength: float = 1.0, temporal_tau: float = 1.0
) -> Tensor:
    """Closed-form E_reg step: pull current's low frequencies towards reference's, keep its high ones.

    current, reference: `(..., T, H, W)`, broadcastable; returns the broadcast shape.
    `strength` 1 replaces current's low frequencies with reference's (the minimiser of E_reg that
    leaves the high frequencies alone); 0 returns current; values between blend linearly. This is
    what a weight-free backend uses instead of gradient steps on E_reg.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"lowpass consistency strength must be in [0, 1], got {strength}")
    return current + strength * lowpass(reference - current, tau, temporal_tau)
