"""Settings of the SMITE diffusion backend: learning and segmenting, the paper's values as defaults.

One frozen dataclass, one home per tunable number, each with a one-line why (SMITE-METHOD.md is the
reference). It nests under ``diffusion`` in `config.Settings`, so it decides only this backend's
mattes; it saves as sorted JSON with a version and validates on construction, so a bad value fails
before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import BadInputError
from ..settings_json import fields_from_dict

# 2: the authors' guided schedule (guide_t_start gone), map readout, GroupNorm, augmentation;
# 3: no seed of its own (the one seed is `config.Settings.seed`, passed to learning and segmenting)
DIFFUSION_SETTINGS_VERSION = 3
INVERSIONS = ("noise", "ddim")
MAP_READOUTS = ("official", "softmax_was")
GROUPNORMS = ("window", "frame")


@dataclass(frozen=True)
class DiffusionSettings:
    """How the diffusion backend learns parts and segments. Defaults follow SMITE (ICLR 2025)."""

    model: str = ""  # SD folder or single file; empty: $SMITE_MODEL
    resolution: int = 512  # model-space side: SD 2.1-base works at 512² (latents 64²)
    # -- learning (§2) --
    learn_epochs: int = 300  # official schedule: 300 epochs x #references, one reference per step
    learn_steps: int = 0  # > 0 overrides epochs x references (quick runs, tests)
    learn_lr: float = 0.1  # Adam learning rate of the part vectors
    learn_t_min: int = 5  # timesteps drawn from U{t_min..t_max}: low noise keeps the image readable
    learn_t_max: int = 100
    ce_weight: float = 1.0  # class-weighted CE on the raw cross-attention logits
    was_weight: float = 1.0  # times K+1 (classes incl. background): MSE between the WAS map and the one-hot labels
    sd_weight: float = 0.005  # noise-prediction loss keeps the vectors in the text manifold
    sd_guidance: float = 100.0  # official: classifier-free guidance scale inside the SD loss (1 = no extra pass)
    freq_weight: float = 0.001  # official: FFT amplitude/phase loss between the WAS map and the one-hot labels
    freq_start_epoch: int = 6  # official: the FFT loss counts from this (0-based) epoch on
    kv_phase: bool = True  # official default: second phase fine-tunes attn2 to_k/to_v with the vectors frozen
    kv_start_epoch: int = 51  # official: vectors learn in epochs 0..50, the k/v phase from epoch 51
    kv_lr: float = 1e-6  # Adam learning rate of the k/v phase
    loss_scale: float = 0.01  # official: back-propagates 0.01·L, so Adam's eps 1e-8 acts as 1e-6 on the unscaled loss
    val_every: int = 50  # steps between validations when a held-out reference is given (best state kept)
    # augmentation, in model space (official values; faces: min_crop 0.6, rotate 10, 4 holes of <= 64 px, no zoom-out)
    aug_crop: float = 1.0  # probability of the square crop that keeps a class (official: every step)
    aug_min_crop: float = 0.8  # crop side ~ U(min_crop, 1) x model side (official default; cars 0.6)
    aug_crop_keep: float = 0.3  # the crop keeps more than this fraction of the step's class
    aug_rotate: float = 30.0  # max rotation in degrees, padded with black / background (0: off)
    aug_rotate_p: float = 0.5  # probability of a rotation
    aug_flip: float = 0.5  # probability of a horizontal flip
    aug_blur: float = 0.5  # probability of a Gaussian blur at model resolution
    aug_blur_max: int = 5  # largest (odd) blur kernel: k in {1, 3, 5} with P 1/5, 2/5, 2/5
    aug_dropout: float = 0.3  # probability of coarse dropout (image black, labels background in the holes)
    aug_dropout_holes: int = 8  # dropout draws 1..this many holes
    aug_dropout_min: int = 16  # hole sides in [min, max] px of a 512² model space (scaled with resolution)
    aug_dropout_max: int = 128
    aug_zoom_out: float = 0.1  # probability of shrinking the view onto a black canvas of the same size
    aug_zoom_min: float = 0.5  # zoom-out scale ~ U(zoom_min, zoom_max)
    aug_zoom_max: float = 0.8
    # -- segmenting (§3) --
    window: int = 16  # frames per inflated-attention window
    overlap: int = 8  # frames shared by consecutive windows; their results seed the next window
    map_readout: str = "official"  # S = the authors' logit-scale calculate_was_mask; "softmax_was": learning's WAS
    groupnorm: str = "window"  # ResNet GroupNorms pool over the window's frames (authors' 5-D UNet); "frame": per frame
    ref_t: int = 100  # timestep of the reference pass, centre of its per-window draw (see ref_t_jitter)
    ref_t_jitter: int = 5  # official: t drawn per window from U{ref_t-5..ref_t+4} = torch.randint(95, 105); 0: fixed
    inversion: str = "noise"  # reference latents: "noise" (official one-shot add_noise) or "ddim" (paper)
    inversion_steps: int = 10  # DDIM inversion steps from the clean latent to ref_t (inversion="ddim")
    guide_schedule_steps: int = 1000  # official: scheduler.set_timesteps(1000) lays out the guided timesteps
    guide_steps: int = 4  # official: the last 4 of those timesteps ([4, 3, 2, 1] for SD 2.1)
    guide_t_shift: int = 100  # official: added to them, so SD 2.1 denoises at [104, 103, 102, 101]
    guided_steps: int = 3  # official: optimise the latents after every DDIM step but the last
    guide_iters: int = 15  # Adam-style latent updates per guided step
    guide_chunk: int = 4  # frames per latent-optimisation chunk (memory)
    guide_lr_scale: float = 10.0  # step size = scale * sigma_t, sigma_t = (1 - alpha_t) / alpha_t, per-step alpha_t
    reg_tau: tuple[float, ...] = (0.999, 0.4, 0.4)  # E_reg DCT cut-off per guided step, last repeats (official)
    lambda_track: float = 1.0  # weight of E_track (CE to the voted maps); published 1-2
    lambda_reg: float = 8.0  # weight of E_reg (3-D DCT low-pass L1 to the reference WAS); published 8
    hierarchical: bool = True  # official: a reference-only coarse pass finds the subject; the main pass runs on crops
    coarse_window: int = 18  # frames per window of the coarse pass, no overlap (official src/inference.py:84)
    high_aspect: bool = True  # official: plates over 1.5:1 get a second coarse pass on a square crop per frame
    crop_margin: float = 0.04  # margin of the crop around the subject, a fraction of the box's own size (official)
    tiles: int = 1  # tiles per side of the model frame, maps averaged over overlaps; the authors use 2 for faces
    tile_side: int = 450  # tile side in px of a 512 model frame (official faces: 450, utils/setup.py / run.py:92)
    tracker: str = "flow"  # point tracker for voting: weight-free "flow" or "cotracker"
    tracker_checkpoint: str = ""  # tracker="cotracker": CoTracker3 .pth or torch.hub folder (CC BY-NC, user-supplied)
    part_model: str = ""  # .smite file from `smite learn`; empty: learn from the shot's references first

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise BadInputError(f"diffusion setting {message}")

        need(self.resolution >= 32 and self.resolution % 32 == 0,
             f"resolution must be a multiple of 32, got {self.resolution}")
        need(self.learn_epochs >= 1 and self.learn_steps >= 0, "learn_epochs must be >= 1 and learn_steps >= 0")
        need(1 <= self.learn_t_min <= self.learn_t_max <= 999, "need 1 <= learn_t_min <= learn_t_max <= 999")
        need(self.window >= 1 and 0 <= self.overlap < self.window, "need window >= 1 and 0 <= overlap < window")
        need(self.inversion in INVERSIONS, f"inversion must be one of {', '.join(INVERSIONS)}, got {self.inversion!r}")
        need(self.map_readout in MAP_READOUTS,
             f"map_readout must be one of {', '.join(MAP_READOUTS)}, got {self.map_readout!r}")
        need(self.groupnorm in GROUPNORMS, f"groupnorm must be one of {', '.join(GROUPNORMS)}, got {self.groupnorm!r}")
        need(1 <= self.ref_t <= 999, f"ref_t must be in 1..999, got {self.ref_t}")
        need(self.ref_t_jitter >= 0 and 1 <= self.ref_t - self.ref_t_jitter
             and self.ref_t + max(self.ref_t_jitter - 1, 0) <= 999,
             f"ref_t_jitter must keep the reference timesteps in 1..999, got ref_t {self.ref_t} ± {self.ref_t_jitter}")
        need(1 <= self.guide_steps <= self.guide_schedule_steps, "need 1 <= guide_steps <= guide_schedule_steps")
        need(self.guide_t_shift >= 0, f"guide_t_shift must be >= 0, got {self.guide_t_shift}")
        need(0 <= self.guided_steps < self.guide_steps,
             "need 0 <= guided_steps < guide_steps (the last step's maps are the output)")
        need(isinstance(self.reg_tau, (tuple, list)), f"reg_tau must be a list of cut-offs, got {self.reg_tau!r}")
        object.__setattr__(self, "reg_tau", tuple(self.reg_tau))
        need(len(self.reg_tau) >= 1 and all(0.0 < tau <= 1.0 for tau in self.reg_tau),
             f"reg_tau must be one or more cut-offs in (0, 1], got {self.reg_tau}")
        need(self.guide_chunk >= 1 and self.guide_iters >= 0, "need guide_chunk >= 1 and guide_iters >= 0")
        need(0.0 <= self.crop_margin <= 0.5, f"crop_margin must be in [0, 0.5], got {self.crop_margin}")
        need(self.coarse_window >= 1, f"coarse_window must be >= 1, got {self.coarse_window}")
        need(self.tiles >= 1 and 0 < self.tile_side <= 512, "need tiles >= 1 and 0 < tile_side <= 512")
        need(self.tracker in ("flow", "cotracker"), f"tracker must be flow or cotracker, got {self.tracker!r}")
        for name in ("aug_crop", "aug_crop_keep", "aug_rotate_p", "aug_flip", "aug_blur", "aug_dropout",
                     "aug_zoom_out"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name} is a probability in [0, 1]")
        need(0.0 < self.aug_min_crop <= 1.0, f"aug_min_crop must be in (0, 1], got {self.aug_min_crop}")
        need(self.aug_blur_max >= 1 and self.aug_blur_max % 2 == 1, "aug_blur_max must be an odd kernel size >= 1")
        need(1 <= self.aug_dropout_holes and 1 <= self.aug_dropout_min <= self.aug_dropout_max,
             "need aug_dropout_holes >= 1 and 1 <= aug_dropout_min <= aug_dropout_max")
        need(0.0 < self.aug_zoom_min <= self.aug_zoom_max <= 1.0, "need 0 < aug_zoom_min <= aug_zoom_max <= 1")
        need(self.loss_scale > 0, f"loss_scale must be > 0, got {self.loss_scale}")
        need(self.freq_start_epoch >= 0 and self.kv_start_epoch >= 0,
             "freq_start_epoch and kv_start_epoch must be >= 0")

    @property
    def latent_side(self) -> int:
        return self.resolution // 8

    @property
    def tile_px(self) -> int:
        """Tile side in px of this model resolution (tile_side is given for a 512 frame)."""
        return max(1, round(self.tile_side * self.resolution / 512))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DiffusionSettings":
        """Settings from JSON; a "preset" key (see PRESETS) fills every field the data leaves out."""
        data = dict(data)
        preset = data.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise BadInputError(f"unknown diffusion preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
            data = {**PRESETS[preset], **data}
        return cls(**fields_from_dict(cls, data, "diffusion setting"))

    def to_dict(self) -> dict[str, Any]:
        return {"version": DIFFUSION_SETTINGS_VERSION, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> "DiffusionSettings":
        return dataclasses.replace(self, **changes)


# Named sets of settings; `{"preset": NAME}` in the diffusion settings (or `smite segment --preset NAME`)
# applies one under any explicit values. One home for each set's numbers.
PRESETS: dict[str, dict[str, Any]] = {
    # The authors' shipped inference (alimohammadiamirhossein/smite @7ecfff7): every scripts/configs/*.sh
    # sets regularization_weight and track_weight to 0, so src/inference.py:203-204 returns the reference
    # pass and l.84 cuts 18-frame windows without overlap; scripts/parser/parse_args_inference.sh:13
    # turns hierarchical segmentation on.
    "official": {"lambda_track": 0.0, "lambda_reg": 0.0, "window": 18, "overlap": 0, "hierarchical": True},
}
# ... and for faces, where utils/setup.py:134-135 (with run.py:92) adds 2x2 tiles of 450 px of the 512² frame.
PRESETS["official-face"] = {**PRESETS["official"], "tiles": 2, "tile_side": 450}
