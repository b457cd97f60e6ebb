"""Segmenting one window of frames with learned parts (SMITE-METHOD §3).

Reads like the paper, per window of up to 16 frames in model space:

1. encode the frames to latents; one noise draw per window from a seed derived from the shot, the
   window's first frame and the user's seed (so a farm chunk redoes a window exactly);
2. reference pass: noise (or DDIM-invert) the latents to a timestep drawn per window around ref_t
   (`reference_timestep`) and run the inflated UNet once;
   its maps S (the authors' logit-scale `calculate_was_mask` readout, `map_readout`) are S_ref
   (frames carried over from the previous window replace theirs);
3. guided denoising (the temporal module, on by default), as the authors' `_inference`
   (src/inference.py:173-233): the timesteps are the last `guide_steps` of
   `set_timesteps(guide_schedule_steps)` plus `guide_t_shift` ([104, 103, 102, 101] for SD 2.1);
   the clean latents get a fresh noise draw at the first of them; at each timestep t the UNet gives
   the current maps S and the noise, DDIM moves the latents to the next level, and (all but the
   last step) the moved latents get `guide_iters` Adam updates on chunks of frames, the UNet run at
   t, minimising E = λ_reg·E_reg(S, S_ref) + λ_track·CE(S, argmax S_vote), S_vote the maps voted
   along point tracks;
4. the softmax over classes of the last timestep's S gives the per-frame class probabilities.

Pure tensor helpers (`ddim_move`, `adam_update`, `guide_step_size`, `guided_timesteps`, and the
energies in `method.energies`) are separate so they can be tested on hand-made inputs; the networks
and the tracker come in through `WindowSegmenter`. The loop over a video's windows is `method.pipeline`.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError
from ..method.voting import vote_window
from ..model.attention import was_map, was_readout
from ..model.backbone import Backbone
from ..model.encode import encode_latents, to_model_images, unet_with_maps
from ..model.settings import DiffusionSettings
from ..track.base import Tracker
from .energies import guidance_energy

ADAM_BETAS = (0.9, 0.999)  # SMITE's Adam-style latent updates (src/latent_optimization.py:233)
ADAM_EPS = 1e-5  # src/latent_optimization.py:224
VOTE_RULE = "shifted"  # the authors' voting window (src/tracking.py:88-99, 126), see voting.window_frames


def window_seed(shot_key: str, first_frame: int, seed: int) -> int:
    """A 63-bit seed from the shot's identity, the window's first frame number and the user's seed."""
    digest = hashlib.sha256(f"{shot_key}|{first_frame}|{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def plan_windows(frame_numbers: list[int], window: int, overlap: int) -> list[list[int]]:
    """Split frames into windows of `window` frames, consecutive windows sharing `overlap` frames.

    Window starts are anchored to absolute frame numbers (multiples of window - overlap), so a farm
    chunk with context frames lays its windows on the same grid as a whole-shot run. Windows at the
    ends are clipped to the frames given; every frame lands in at least one window.
    """
    if not frame_numbers:
        return []
    step = window - overlap
    lo, hi = frame_numbers[0], frame_numbers[-1]
    first = lo - (lo % step)
    windows = []
    for start in range(first, hi + 1, step):
        frames = [f for f in frame_numbers if start <= f < start + window]
        if frames and (not windows or frames[-1] > windows[-1][-1]):
            windows.append(frames)
        if start + window > hi:
            break
    return windows


def ddim_move(z: Tensor, eps: Tensor, alpha_from: float, alpha_to: float) -> Tensor:
    """Deterministic DDIM move of latents between noise levels (down = denoise, up = inversion).

    z, eps: `(N, 4, h, w)`; alpha_*: cumulative alphas ᾱ of the two timesteps.
    x0 = (z - √(1-ᾱ_from)·eps)/√ᾱ_from, result = √ᾱ_to·x0 + √(1-ᾱ_to)·eps.
    """
    x0 = (z - (1 - alpha_from) ** 0.5 * eps) / alpha_from**0.5
    return alpha_to**0.5 * x0 + (1 - alpha_to) ** 0.5 * eps


def guide_step_size(scheduler, t: int, scale: float) -> float:
    """SMITE's latent step `scale·σ_t`, σ_t = (1 - α_t)/α_t with the per-step α_t = 1 - β_t.

    `scheduler.alphas[t]`, not the cumulative ᾱ_t (src/latent_optimization.py:219-220): for SD 2.1
    at t = 103 the step is 0.0140; with ᾱ it would be 1.23 and throw the latents off the data manifold.
    """
    alpha = float(scheduler.alphas[int(t)])
    return scale * (1 - alpha) / alpha


def guided_timesteps(scheduler, schedule_steps: int, final_steps: int, shift: int) -> tuple[list[int], int]:
    """(timesteps, DDIM stride) of guided denoising: the last `final_steps` of `set_timesteps(schedule_steps)`
    plus `shift` (src/inference.py:441-462 and 175).

    The stride is how far one DDIM step moves (the scheduler's `num_train_timesteps // num_inference_steps`),
    so SD 2.1 (steps_offset 1) gives ([104, 103, 102, 101], 1). A copy of the scheduler is laid out, so the
    backbone's own scheduler keeps its state.
    """
    layout = type(scheduler).from_config(scheduler.config)
    layout.set_timesteps(schedule_steps)
    ts = [int(t) + shift for t in layout.timesteps[-final_steps:]]
    train = layout.config.num_train_timesteps
    stride = train // schedule_steps
    if min(ts) - stride < 0 or max(ts) >= train:
        raise BadInputError(f"guided timesteps {ts} leave the scheduler's range 0..{train - 1}")
    return ts, stride


def reference_timestep(ref_t: int, jitter: int, seed: int) -> int:
    """The reference pass's timestep for one window: uniform on {ref_t - jitter, ..., ref_t + jitter - 1}.

    The authors draw `torch.randint(95, 105)` per call (src/inference.py:602), i.e. 100 - 5 .. 100 + 4;
    jitter 0 keeps ref_t. Drawn from the window's seed on a stream of its own (the window's noise
    draws stay as they are), so a farm chunk redraws the same t.
    """
    if jitter == 0:
        return int(ref_t)
    return int(ref_t) - jitter + random.Random(seed).randrange(2 * jitter)


def reg_tau_at(taus: tuple[float, ...], step: int) -> float:
    """E_reg cut-off of guided step `step` (0-based); the last one repeats (official: 0.999, then 0.4)."""
    return taus[min(step, len(taus) - 1)]


def adam_update(z: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: int, lr: float) -> Tensor:
    """One Adam step on z (in place on m, v); `step` counts from 1. Returns the new z."""
    b1, b2 = ADAM_BETAS
    m.mul_(b1).add_(grad, alpha=1 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    m_hat = m / (1 - b1**step)
    v_hat = v / (1 - b2**step)
    return z - lr * m_hat / (v_hat.sqrt() + ADAM_EPS)


def voted_labels(maps: Tensor, tracks: Tensor, visible: Tensor, vote_frames: int) -> Tensor:
    """argmax of S_vote: maps `(T, P, K)` on an `(h, w)` grid voted along tracks `(T, T, P, 2)` -> `(T, P)`.

    Each frame votes over `vote_frames` frames shifted to stay inside the window (the authors' rule).
    """
    t, p, k = maps.shape
    side = tracks.shape  # (Q=T, T, N=P, 2)
    h = w = int(round(p**0.5))
    if h * w != p or side[2] != p:
        raise ValueError(f"maps of {p} pixels are not on the square grid the tracks cover")
    grid = maps.transpose(1, 2).reshape(t, k, h, w)
    voted = vote_window(grid, tracks, visible, list(range(t)), vote_frames, VOTE_RULE)  # (T, K, P)
    return voted.argmax(dim=1)


@dataclass
class WindowResult:
    """Class probabilities `(T, K+1, h, w)` on the latent grid, and the maps S `(T, P, K+1)` to carry."""

    probs: Tensor
    maps: Tensor


class WindowSegmenter:
    """Runs steps 1-4 of the module doc on one window; holds the networks, context and settings."""

    def __init__(self, backbone: Backbone, context: Tensor, num_classes: int, settings: DiffusionSettings, *,
                 tracker: Tracker | None, temporal: bool = True, vote_frames: int = 15,
                 report: Callable[[str], None] | None = None) -> None:
        self.bb = backbone
        self.context = context.unsqueeze(0) if context.dim() == 2 else context
        self.classes = num_classes
        self.s = settings
        self.tracker = tracker
        self.temporal = temporal
        self.vote_frames = vote_frames
        self.report = report or (lambda message: None)
        self.alpha_bars = backbone.scheduler.alphas_cumprod
        self.device = next(backbone.unet.parameters()).device

    def _alpha_bar(self, t: int) -> float:
        """Cumulative ᾱ_t (DDIM moves); the guided step size uses the per-step α_t (`guide_step_size`)."""
        return float(self.alpha_bars[int(t)])

    def _maps(self, z: Tensor, t: int, *, grad: bool = False) -> tuple[Tensor, Tensor]:
        """(noise prediction, maps S `(T, P, K)`) of latents z at timestep t, the UNet inflated over z's frames.

        S is what S_ref, voting, E_track and the output read: `was_readout` (the authors' logit-scale map)
        or, with map_readout="softmax_was", learning's softmax WAS in [0, 1].
        """
        with torch.set_grad_enabled(grad):
            tt = torch.full((z.shape[0],), int(t), device=self.device)
            eps, cross, attn = unet_with_maps(self.bb, z, tt, self.context, self.classes, frames=z.shape[0],
                                              groupnorm=self.s.groupnorm)
            readout = was_readout if self.s.map_readout == "official" else was_map
            return eps, readout(cross, attn)

    def _invert(self, z0: Tensor, t_ref: int) -> Tensor:
        """DDIM inversion of clean latents z0 up to t_ref in `inversion_steps` steps (the paper's reference)."""
        ts = np.linspace(0, t_ref, self.s.inversion_steps + 1).round().astype(int)
        z, alpha_prev = z0, 1.0
        for t_from, t_to in zip(ts[:-1], ts[1:]):
            eps, _ = self._maps(z, int(t_from))
            z = ddim_move(z, eps, alpha_prev if t_from == 0 else self._alpha_bar(t_from), self._alpha_bar(t_to))
            alpha_prev = self._alpha_bar(t_to)
        return z

    def _tracks(self, frames_model: np.ndarray, side: int) -> tuple[Tensor, Tensor]:
        """Tracks `(T, T, P, 2)` in latent-grid px of every latent cell of every frame, and visibility."""
        t, res = frames_model.shape[0], frames_model.shape[1]
        scale = res / side
        ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
        cells = np.stack([xs.ravel(), ys.ravel()], -1)
        video_xy = (cells + 0.5) * scale - 0.5
        queries = np.concatenate([np.column_stack([np.full(len(cells), q, np.float32), video_xy]) for q in range(t)])
        tracks = self.tracker.track(frames_model, queries)
        pts = (tracks.points.reshape(t, t, -1, 2).permute(1, 0, 2, 3) + 0.5) / scale - 0.5
        return pts.float(), tracks.visible.reshape(t, t, -1).permute(1, 0, 2)

    def __call__(self, frames: list[np.ndarray], noise_seed: int, carried: dict[int, Tensor] | None = None
                 ) -> WindowResult:
        """frames: model-space `(H, W, 3)` [0, 1] images of one window; carried: {index: WAS `(P, K)`}."""
        s = self.s
        # 1. latents and this window's noise
        images = to_model_images(frames, s.resolution)
        z0 = encode_latents(self.bb, images).to(self.device)
        gen = torch.Generator().manual_seed(noise_seed)
        noise = torch.randn(z0.shape, generator=gen).to(z0)
        t_count, _, h, w = z0.shape
        # 2. reference pass
        t_ref = reference_timestep(s.ref_t, s.ref_t_jitter, noise_seed)
        if s.inversion == "ddim":
            z_ref = self._invert(z0, t_ref)
        else:
            z_ref = self.bb.scheduler.add_noise(z0, noise, torch.tensor([t_ref]))
        _, s_ref = self._maps(z_ref, t_ref)
        for i, maps in (carried or {}).items():
            s_ref[i] = maps.to(s_ref)
        if not self.temporal:
            return self._result(s_ref, h, w)
        # 3. guided denoising
        model_frames = np.stack([np.asarray((im.permute(1, 2, 0) + 1) / 2) for im in images]).clip(0, 1)
        tracks, visible = self._tracks(model_frames.astype(np.float32), h) if s.lambda_track > 0 else (None, None)
        ts, stride = guided_timesteps(self.bb.scheduler, s.guide_schedule_steps, s.guide_steps, s.guide_t_shift)
        guide_noise = torch.randn(z0.shape, generator=gen).to(z0)  # official: a fresh draw, not the reference's
        z = self.bb.scheduler.add_noise(z0, guide_noise, torch.tensor([ts[0]]))
        for step, t in enumerate(ts):
            eps, maps = self._maps(z, t)
            if step == len(ts) - 1:
                break  # the last step's maps are the output; its DDIM move would be discarded
            z = ddim_move(z, eps, self._alpha_bar(t), self._alpha_bar(t - stride))
            if step < s.guided_steps:
                target = voted_labels(maps, tracks, visible, self.vote_frames) if tracks is not None else None
                z = self._optimise(z, t, s_ref, target, h, w, step)
        return self._result(maps, h, w)

    def energy(self, maps: Tensor, ref: Tensor, target: Tensor | None, h: int, w: int, step: int = 0) -> Tensor:
        """E = λ_reg·E_reg + λ_track·E_track for maps/ref `(T, P, K)` on an (h, w) grid at guided step `step`."""
        s = self.s
        return guidance_energy(maps, ref, target, h, w, reg_tau_at(s.reg_tau, step), s.lambda_reg, s.lambda_track)

    def _optimise(self, z: Tensor, t: int, s_ref: Tensor, target: Tensor | None, h: int, w: int,
                  step: int = 0) -> Tensor:
        """`guide_iters` Adam-style updates of z on chunks of `guide_chunk` frames (step 10·σ_t), UNet at t."""
        s = self.s
        lr = guide_step_size(self.bb.scheduler, t, s.guide_lr_scale)
        out = z.detach().clone()
        for lo in range(0, z.shape[0], s.guide_chunk):
            sl = slice(lo, lo + s.guide_chunk)
            zc = out[sl].clone()
            m, v = torch.zeros_like(zc), torch.zeros_like(zc)
            for it in range(1, s.guide_iters + 1):
                zc.requires_grad_(True)
                _, maps = self._maps(zc, t, grad=True)
                energy = self.energy(maps, s_ref[sl], None if target is None else target[sl], h, w, step)
                (grad,) = torch.autograd.grad(energy, zc)
                zc = adam_update(zc.detach(), grad, m, v, it, lr)
            out[sl] = zc
            self.report(f"t={t} frames {lo}-{min(lo + s.guide_chunk, z.shape[0]) - 1} E={float(energy.detach()):.4f}")
        return out

    def _result(self, maps: Tensor, h: int, w: int) -> WindowResult:
        """Probabilities from the final S: softmax over classes of the logit-scale S (official readout),
        or the softmax WAS clipped and renormalised (its rows already sum to 1)."""
        maps = maps.detach()
        grid = maps.transpose(1, 2).reshape(maps.shape[0], self.classes, h, w)
        if self.s.map_readout == "official":
            probs = grid.softmax(dim=1)
        else:
            probs = grid.clamp_min(0) / grid.clamp_min(0).sum(1, keepdim=True).clamp_min(1e-8)
        return WindowResult(probs=probs, maps=maps)
