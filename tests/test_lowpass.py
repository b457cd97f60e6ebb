"""3-D DCT low-pass: transforms, mask, E_reg and the closed-form consistency step."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from smite.method.lowpass import (
    dct,
    dct3,
    idct,
    idct3,
    lowfreq_mask,
    lowpass,
    lowpass_consistency,
    lowpass_energy,
)
from smite.method.energies import smite_reg_energy


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_dct_matches_scipy_and_round_trips(gen, dim):
    x = torch.randn(5, 8, 7, generator=gen)
    ours = dct(x, dim)
    ref = scipy.fft.dct(x.numpy().astype(np.float64), type=2, norm="ortho", axis=dim)
    assert np.allclose(ours.numpy(), ref, atol=1e-5)
    assert torch.allclose(idct(ours, dim), x, atol=1e-5)


def test_dct3_matches_scipy_dctn_and_round_trips(gen):
    x = torch.randn(2, 4, 6, 5, generator=gen)
    ref = scipy.fft.dctn(x.numpy().astype(np.float64), type=2, norm="ortho", axes=(-3, -2, -1))
    assert np.allclose(dct3(x).numpy(), ref, atol=1e-5)
    assert torch.allclose(idct3(dct3(x)), x, atol=1e-5)


def test_lowfreq_mask_counts():
    m = lowfreq_mask(4, 64, 64, tau=0.4)
    assert m.shape == (4, 64, 64)
    # u, v < 25.6 keeps indices 0..25 on each spatial axis, every temporal index.
    assert m.sum().item() == 4 * 26 * 26
    assert m[:, 25, 25].all() and not m[:, 26, 0].any() and not m[:, 0, 26].any()
    m2 = lowfreq_mask(10, 10, 10, tau=0.3, temporal_tau=0.5)
    assert m2.sum().item() == 5 * 3 * 3  # 0.3 * 10 keeps 3 despite float rounding
    assert lowfreq_mask(3, 8, 8, tau=0.0).sum().item() == 0


def test_lowpass_equals_masked_dct(gen):
    x = torch.randn(3, 4, 16, 12, generator=gen)
    mask = lowfreq_mask(4, 16, 12, tau=0.4, temporal_tau=0.5)
    expected = idct3(dct3(x) * mask)
    assert torch.allclose(lowpass(x, 0.4, 0.5), expected, atol=1e-5)
    assert torch.allclose(lowpass(x, 1.0), x, atol=1e-5)


def _high_pattern(t, h, w, tau):
    """A pattern made of spatial frequencies all above the cut-off."""
    coeffs = torch.zeros(t, h, w)
    coeffs[:, int(tau * h) + 2, int(tau * w) + 3] = 3.0
    coeffs[0, h - 1, 1 + int(tau * w)] = -2.0
    return idct3(coeffs)


def test_energy_ignores_high_frequencies_and_sees_low_ones(gen):
    t, h, w, tau = 4, 32, 32, 0.4
    ref = torch.rand(3, t, h, w, generator=gen)
    assert lowpass_energy(ref, ref, tau).item() == 0.0
    high = _high_pattern(t, h, w, tau)
    assert lowpass_energy(ref + high, ref, tau).item() < 1e-6
    coeffs = torch.zeros(t, h, w)
    coeffs[1, 2, 3] = 0.5
    energies = [lowpass_energy(ref + a * idct3(coeffs), ref, tau).item() for a in (1.0, 2.0, 4.0)]
    assert energies[0] > 1e-4
    assert energies[0] < energies[1] < energies[2]
    # One coefficient of 0.5*a among 4*13*13 kept, three leading maps: exact mean L1.
    kept = t * 13 * 13
    assert energies[0] == pytest.approx(0.5 / kept, rel=1e-3)


def test_energy_gradient_reaches_current(gen):
    ref = torch.rand(2, 3, 16, 16, generator=gen)
    cur = (ref + 0.1 * torch.randn(2, 3, 16, 16, generator=gen)).requires_grad_(True)
    lowpass_energy(cur, ref, 0.4).backward()
    assert cur.grad is not None and torch.isfinite(cur.grad).all() and cur.grad.abs().sum() > 0


def test_energy_with_empty_box_is_zero_and_differentiable(gen):
    cur = torch.rand(2, 8, 8, generator=gen, requires_grad=True)
    e = lowpass_energy(cur, torch.zeros(2, 8, 8), tau=0.0)
    assert e.item() == 0.0
    e.backward()
    assert cur.grad is not None


def test_consistency_strength_one_swaps_low_frequencies(gen):
    t, h, w, tau = 4, 16, 16, 0.4
    cur = torch.rand(2, t, h, w, generator=gen)
    ref = torch.rand(2, t, h, w, generator=gen)
    out = lowpass_consistency(cur, ref, tau, strength=1.0)
    mask = lowfreq_mask(t, h, w, tau)
    d_out, d_cur, d_ref = dct3(out), dct3(cur), dct3(ref)
    assert torch.allclose(d_out[..., mask], d_ref[..., mask], atol=1e-5)
    assert torch.allclose(d_out[..., ~mask], d_cur[..., ~mask], atol=1e-5)
    assert lowpass_energy(out, ref, tau).item() < 1e-5


def test_consistency_blends_and_validates(gen):
    cur = torch.rand(3, 8, 8, generator=gen)
    ref = torch.rand(3, 8, 8, generator=gen)
    assert torch.equal(lowpass_consistency(cur, ref, 0.5, strength=0.0), cur)
    half = lowpass_consistency(cur, ref, 0.5, strength=0.5)
    full = lowpass_consistency(cur, ref, 0.5, strength=1.0)
    assert torch.allclose(half, 0.5 * (cur + full), atol=1e-6)
    with pytest.raises(ValueError):
        lowpass_consistency(cur, ref, 0.5, strength=1.5)


def test_temporal_tau_limits_temporal_frequencies(gen):
    ref = torch.zeros(8, 8, 8)
    coeffs = torch.zeros(8, 8, 8)
    coeffs[6, 0, 0] = 1.0  # fast flicker of the whole frame
    flicker = idct3(coeffs)
    assert lowpass_energy(flicker, ref, tau=0.5).item() > 0.0
    assert lowpass_energy(flicker, ref, tau=0.5, temporal_tau=0.5).item() < 1e-7


def test_float64_and_batched_shapes(gen):
    x = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64, generator=gen)
    assert lowpass(x, 0.5).dtype == torch.float64
    assert lowpass(x, 0.5).shape == x.shape
    with pytest.raises(ValueError):
        lowpass(torch.zeros(4, 4), 0.5)


def test_floor_rounding_keeps_the_authors_box():
    """The authors keep `u, v < int(n * tau)` (src/frequency_filter.py:77-78): 25 of 64 at tau 0.4 and
    63 at tau 0.999 (their first guided step, src/latent_optimization.py:157); the weight-free backend's
    ceil rounding keeps 26 and 64."""
    for tau, floor_kept, ceil_kept in ((0.4, 25, 26), (0.999, 63, 64)):
        assert lowfreq_mask(4, 64, 64, tau, rounding="floor").sum().item() == 4 * floor_kept**2
        assert lowfreq_mask(4, 64, 64, tau).sum().item() == 4 * ceil_kept**2
    # the authors' plain int(): 0.29 * 100 = 28.999999999999996 keeps 28 (ceil's 1e-9 guard says 29)
    assert lowfreq_mask(1, 100, 100, 0.29, rounding="floor").sum().item() == 28 * 28
    with pytest.raises(ValueError):
        lowfreq_mask(1, 8, 8, 0.5, rounding="round")


def test_smite_reg_energy_is_the_authors_masked_l1(gen):
    """`dct_loss` (src/frequency_filter.py:88-104): dct_3d over (frames, rows, columns), the mask
    `[:, :, :, :int(h*tau), :int(w*tau)] = 1` over every frame, then `F.l1_loss` of the masked spectra:
    a mean over all coefficients, the masked zeros included."""
    k, t, h, w = 3, 4, 64, 64
    cur, ref = torch.rand(k, t, h, w, generator=gen), torch.rand(k, t, h, w, generator=gen)
    for tau in (0.999, 0.4):
        mask = torch.zeros(k, t, h, w)
        mask[:, :, : int(h * tau), : int(w * tau)] = 1
        expected = torch.nn.functional.l1_loss(dct3(cur) * mask, dct3(ref) * mask)
        assert smite_reg_energy(cur, ref, tau).item() == pytest.approx(expected.item(), rel=1e-4)


def test_mean_over_kept_coefficients_is_655_times_the_authors(gen):
    """At tau 0.4 on 64x64 the authors keep 25x25 of 4096 coefficients per frame and average over all
    4096 (src/frequency_filter.py:77-78, 104); a mean over the kept ones is 4096/625 = 6.5536x larger."""
    cur, ref = torch.rand(3, 4, 64, 64, generator=gen), torch.rand(3, 4, 64, 64, generator=gen)
    kept = lowpass_energy(cur, ref, 0.4, rounding="floor", mean_over="kept")
    assert (kept / smite_reg_energy(cur, ref, 0.4)).item() == pytest.approx(4096 / 625, rel=1e-5)
    with pytest.raises(ValueError):
        lowpass_energy(cur, ref, 0.4, mean_over="some")
