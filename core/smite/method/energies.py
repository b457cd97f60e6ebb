"""SMITE's energies and losses (SMITE-METHOD §2-§3): what guidance minimises over the latents and
what learning minimises over the part vectors, as pure tensor functions with known-answer tests.

- class weights: background 1, part k = (#foreground px)/(#px of k), absent parts 0; both the
  learning CE and E_track use them;
- guidance, on maps S `(T, P, K)`: E = λ_reg·E_reg + λ_track·E_track, with
  E_reg the L1 of the low 3-D DCT frequencies of S against the reference maps S_ref (the
  authors' `dct_loss`, src/frequency_filter.py:77-83, 104) and
  E_track the class-weighted CE of S as logits against the argmax of the voted maps;
- learning, per step: L = CE(C, M; class weights) + (K+1)·MSE(W, onehot(M)) + 0.005·L_SD
  + 0.001·L_freq(W, onehot(M)) from epoch 6 (src/training.py:145-163), W the WAS map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.attention import was_map
from ..model.settings import DiffusionSettings
from .lowpass import lowpass_energy

FREQ_CUTOFF = 30  # src/frequency_filter.py:39-43: the "high-pass" zeroes the central (2·30)² shifted coefficients
FREQ_HIGH_WEIGHT = 10.0  # src/frequency_filter.py:61: high-pass terms count 10x


def class_weights(labels: Tensor, classes: int) -> Tensor:
    """SMITE's CE weights: background 1, part k = (#foreground px)/(#px of k), absent parts 0.

    labels: `(P,)` or any shape of class ids. Returns `(classes,)` float32.
    """
    counts = torch.bincount(labels.reshape(-1), minlength=classes)[:classes].float()
    fg = counts[1:].sum()
    weights = torch.where(counts > 0, fg / counts.clamp_min(1.0), torch.zeros_like(counts))
    weights[0] = 1.0
    return weights


# -- guidance: E = λ_reg·E_reg + λ_track·E_track ------------------------------------------------------

def smite_reg_energy(current: Tensor, reference: Tensor, tau: float) -> Tensor:
    """SMITE's E_reg as the authors compute it (src/frequency_filter.py `dct_loss`, lines 77-83 and 104).

    current, reference: `(K, T, H, W)` maps; the 3-D orthonormal DCT over (frames, rows, columns) keeps
    every temporal frequency and spatial `u, v < int(tau * n)`; the L1 is averaged over all K*T*H*W
    coefficients. At tau 0.4 on 64x64 that is 25x25 of 4096 per frame: a mean over the kept ones
    would be 4096/625 = 6.55x larger and silently re-weight lambda_reg against lambda_track.
    """
    return lowpass_energy(current, reference, tau, 1.0, rounding="floor", mean_over="all")


def track_energy(maps: Tensor, target: Tensor) -> Tensor:
    """E_track: class-weighted CE between maps `(T, P, K)` used as logits and target labels `(T, P)`."""
    classes = maps.shape[-1]
    weights = class_weights(target, classes).to(maps)
    return F.cross_entropy(maps.reshape(-1, classes), target.reshape(-1), weight=weights)


def guidance_energy(maps: Tensor, ref: Tensor, target: Tensor | None, h: int, w: int, tau: float,
                    lambda_reg: float, lambda_track: float) -> Tensor:
    """E = λ_reg·E_reg(S, S_ref) + λ_track·E_track(S, target) for maps/ref `(T, P, K)` on an (h, w) grid.

    E_reg runs per class over (frames, rows, columns) with cut-off `tau`; E_track counts only with a
    target (the argmax of the voted maps) and λ_track > 0.
    """
    classes = maps.shape[-1]
    cur = maps.permute(2, 0, 1).reshape(classes, -1, h, w)
    anchor = ref.permute(2, 0, 1).reshape(classes, -1, h, w)
    energy = lambda_reg * smite_reg_energy(cur, anchor, tau)
    if target is not None and lambda_track > 0:
        energy = energy + lambda_track * track_energy(maps, target)
    return energy


# -- learning ---------------------------------------------------------------------------------------

def part_losses(cross: Tensor, self_attn: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(class-weighted CE of the cross logits, MSE and FFT loss of the WAS map to one-hot labels).

    cross `(B, P, K+1)` raw logits, self_attn `(B, P, P)`, labels `(B, P)` long with P a square number.
    The caller scales the MSE by K+1 (the authors' `num_parts` counts background, src/training.py:145).
    """
    classes = cross.shape[-1]
    weights = class_weights(labels, classes).to(cross.device, cross.dtype)
    ce = F.cross_entropy(cross.reshape(-1, classes), labels.reshape(-1), weight=weights)
    target = F.one_hot(labels, classes).to(cross.dtype)
    was = was_map(cross, self_attn)
    mse = F.mse_loss(was, target)
    side = int(round(was.shape[1] ** 0.5))
    maps = was.reshape(-1, side, side, classes).permute(0, 3, 1, 2)
    truth = target.reshape(-1, side, side, classes).permute(0, 3, 1, 2)
    freq = sum(frequency_loss(m, g) for m, g in zip(maps, truth))
    return ce, mse, freq


def frequency_loss(pred: Tensor, target: Tensor, cutoff: int = FREQ_CUTOFF) -> Tensor:
    """The authors' FFT loss (src/frequency_filter.py:10-65): amplitude and phase MSE of the spectra.

    pred, target `(C, H, W)`. Per class c, with S = fftshift(fft2(x_c)) and S_hi = S with the central
    `[H/2 - cutoff, H/2 + cutoff)` x `[W/2 - cutoff, W/2 + cutoff)` block set to 0:

        L = sum_c  mse(|S_p|, |S_t|) + mse(arg S_p, arg S_t) + 10·(mse(|S_hi_p|, |S_hi_t|) + mse(arg ..., arg ...))

    Their "low-pass" mask is all ones (it sets a block of a ones-mask to 1), so the first pair is the
    full spectrum. The zeroed coefficients count as 0 in every mean (amplitude and phase). Their complex
    multiply by the 0 mask leaves signed zeros whose angle can read π; that adds a constant with no
    gradient to their loss value, which we leave out: the gradients are the same.
    """
    spec_p = torch.fft.fftshift(torch.fft.fft2(pred), dim=(-2, -1))
    spec_t = torch.fft.fftshift(torch.fft.fft2(target), dim=(-2, -1))
    h, w = pred.shape[-2:]
    high = torch.ones((h, w), dtype=torch.bool, device=pred.device)
    high[max(h // 2 - cutoff, 0) : h // 2 + cutoff, max(w // 2 - cutoff, 0) : w // 2 + cutoff] = False

    def pair(a: Tensor, b: Tensor, keep: Tensor | None = None) -> Tensor:
        amp_a, amp_b, ph_a, ph_b = a.abs(), b.abs(), torch.angle(a), torch.angle(b)
        if keep is not None:
            amp_a, amp_b, ph_a, ph_b = (x * keep for x in (amp_a, amp_b, ph_a, ph_b))
        per_class = ((amp_a - amp_b) ** 2).mean((-2, -1)) + ((ph_a - ph_b) ** 2).mean((-2, -1))
        return per_class.sum()

    return pair(spec_p, spec_t) + FREQ_HIGH_WEIGHT * pair(spec_p, spec_t, high)


def learning_loss(ce: Tensor, mse: Tensor, freq: Tensor, eps: Tensor, noise: Tensor, classes: int, epoch: int,
                  settings: DiffusionSettings) -> Tensor:
    """One step's L from `part_losses` and the (guided) noise prediction `eps` of the true `noise`.

    The WAS MSE counts K+1 times (`classes`, src/training.py:145); the FFT term from `freq_start_epoch`
    (src/training.py:154: epoch > 5).
    """
    s = settings
    loss = s.ce_weight * ce + s.was_weight * classes * mse + s.sd_weight * F.mse_loss(eps, noise)
    if epoch >= s.freq_start_epoch and s.freq_weight:
        loss = loss + s.freq_weight * freq
    return loss
