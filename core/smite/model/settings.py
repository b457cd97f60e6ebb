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
from ..settings_json import check_ranges, fields_from_dict, ranged

# 2: the authors' guided schedule (guide_t_start gone), map readout, GroupNorm, augmentation;
# 3: no seed of its own (the one seed is `config.Settings.seed`, passed to learning and segmenting)
DIFFUSION_SETTINGS_VERSION = 3
INVERSIONS = ("noise", "ddim")
MAP_READOUTS = ("official", "softmax_was")
GROUPNORMS = ("window", "frame")
TRACKERS = ("flow", "cotracker")


@dataclass(frozen=True)
class DiffusionSettings:
    """How the diffusion backend learns parts and segments. Defaults follow SMITE (ICLR 2025)."""

    model: str = ""  # SD folder or single file; empty: $SMITE_MODEL
    resolution: int = ranged(512, 32, 2048, multiple=32)  # model-space side: SD 2.1-base works at 512² (latents 64²)
    # -- learning (§2) --
    learn_epochs: int = ranged(300, 1)  # official schedule: 300 epochs x #references, one reference per step
    learn_steps: int = ranged(0, 0)  # > 0 overrides epochs x references (quick runs, tests)
    learn_lr: float = 0.1  # Adam learning rate of the part vectors
    learn_t_min: int = ranged(5, 1, 999)  # timesteps drawn from U{t_min..t_max}: low noise keeps the image readable
    learn_t_max: int = ranged(100, 1, 999)
    ce_weight: float = 1.0  # class-weighted CE on the raw cross-attention logits
    was_weight: float = 1.0  # times K+1 (classes incl. background): MSE between the WAS map and the one-hot labels
    sd_weight: float = 0.005  # noise-prediction loss keeps the vectors in the text manifold
    sd_guidance: float = 100.0  # official: classifier-free guidance scale inside the SD loss (1 = no extra pass)
    freq_weight: float = 0.001  # official: FFT amplitude/phase loss between the WAS map and the one-hot labels
    freq_start_epoch: int = ranged(6, 0)  # official: the FFT loss counts from this (0-based) epoch on
    kv_phase: bool = True  # official default: second phase fine-tunes attn2 to_k/to_v with the vectors frozen
    kv_start_epoch: int = ranged(51, 0)  # official: vectors learn in epochs 0..50, the k/v phase from epoch 51
    kv_lr: float = 1e-6  # Adam learning rate of the k/v phase
    # official: back-propagates 0.01·L, so Adam's eps 1e-8 acts as 1e-6 on the unscaled loss
    loss_scale: float = ranged(0.01, 0, lo_open=True)
    val_every: int = 50  # steps between validations when a held-out reference is given (best state kept)
    # augmentation, in model space (official values; faces: min_crop 0.6, rotate 10, 4 holes of <= 64 px, no zoom-out)
    aug_crop: float = ranged(1.0, 0, 1)  # probability of the square crop that keeps a class (official: every step)
    # crop side ~ U(min_crop, 1) x model side (official default; cars 0.6)
    aug_min_crop: float = ranged(0.8, 0, 1, lo_open=True)
    aug_crop_keep: float = ranged(0.3, 0, 1)  # the crop keeps more than this fraction of the step's class
    aug_rotate: float = 30.0  # max rotation in degrees, padded with black / background (0: off)
    aug_rotate_p: float = ranged(0.5, 0, 1)  # probability of a rotation
    aug_flip: float = ranged(0.5, 0, 1)  # probability of a horizontal flip
    aug_blur: float = ranged(0.5, 0, 1)  # probability of a Gaussian blur at model resolution
    aug_blur_max: int = ranged(5, 1, odd=True)  # largest (odd) blur kernel: k in {1, 3, 5} with P 1/5, 2/5, 2/5
    # probability of coarse dropout (image black, labels background in the holes)
    aug_dropout: float = ranged(0.3, 0, 1)
    aug_dropout_holes: int = ranged(8, 1)  # dropout draws 1..this many holes
    aug_dropout_min: int = ranged(16, 1)  # hole sides in [min, max] px of a 512² model space (scaled with resolution)
    aug_dropout_max: int = ranged(128, 1)
    aug_zoom_out: float = ranged(0.1, 0, 1)  # probability of shrinking the view onto a black canvas of the same size
    aug_zoom_min: float = ranged(0.5, 0, 1, lo_open=True)  # zoom-out scale ~ U(zoom_min, zoom_max)
    aug_zoom_max: float = ranged(0.8, 0, 1, lo_open=True)
    # -- segmenting (§3) --
    # plate-resolution refine of the output (guided filter, plate px): it is what brings the 64² attention maps
    # up to the plate's edges (shared by both backends until settings version 3)
    refine_radius: int = ranged(4, 0, 256)
    refine_eps: float = ranged(5e-4, 0, 1, lo_open=True)  # guided-filter regulariser of the refine
    window: int = ranged(16, 1)  # frames per inflated-attention window
    overlap: int = ranged(8, 0)  # frames shared by consecutive windows; their results seed the next window
    # S = the authors' logit-scale calculate_was_mask; "softmax_was": learning's WAS
    map_readout: str = ranged("official", choices=MAP_READOUTS)
    # ResNet GroupNorms pool over the window's frames (authors' 5-D UNet); "frame": per frame
    groupnorm: str = ranged("window", choices=GROUPNORMS)
    ref_t: int = ranged(100, 1, 999)  # timestep of the reference pass, centre of its per-window draw (see ref_t_jitter)
    # official: t drawn per window from U{ref_t-5..ref_t+4} = torch.randint(95, 105); 0: fixed
    ref_t_jitter: int = ranged(5, 0)
    # reference latents: "noise" (official one-shot add_noise) or "ddim" (paper)
    inversion: str = ranged("noise", choices=INVERSIONS)
    inversion_steps: int = 10  # DDIM inversion steps from the clean latent to ref_t (inversion="ddim")
    guide_schedule_steps: int = ranged(1000, 1)  # official: scheduler.set_timesteps(1000) lays out the guided timesteps
    guide_steps: int = ranged(4, 1)  # official: the last 4 of those timesteps ([4, 3, 2, 1] for SD 2.1)
    guide_t_shift: int = ranged(100, 0)  # official: added to them, so SD 2.1 denoises at [104, 103, 102, 101]
    guided_steps: int = ranged(3, 0)  # official: optimise the latents after every DDIM step but the last
    guide_iters: int = ranged(15, 0)  # Adam-style latent updates per guided step
    guide_chunk: int = ranged(4, 1)  # frames per latent-optimisation chunk (memory)
    guide_lr_scale: float = 10.0  # step size = scale * sigma_t, sigma_t = (1 - alpha_t) / alpha_t, per-step alpha_t
    # E_reg DCT cut-off per guided step, last repeats (official)
    reg_tau: tuple[float, ...] = ranged((0.999, 0.4, 0.4), 0, 1, lo_open=True)
    lambda_track: float = 1.0  # weight of E_track (CE to the voted maps); published 1-2
    lambda_reg: float = 8.0  # weight of E_reg (3-D DCT low-pass L1 to the reference WAS); published 8
    hierarchical: bool = True  # official: a reference-only coarse pass finds the subject; the main pass runs on crops
    # frames per window of the coarse pass, no overlap (official src/inference.py:84)
    coarse_window: int = ranged(18, 1)
    high_aspect: bool = True  # official: plates over 1.5:1 get a second coarse pass on a square crop per frame
    # margin of the crop around the subject, a fraction of the box's own size (official)
    crop_margin: float = ranged(0.04, 0, 0.5)
    # tiles per side of the model frame, maps averaged over overlaps; the authors use 2 for faces
    tiles: int = ranged(1, 1)
    # tile side in px of a 512 model frame (official faces: 450, utils/setup.py / run.py:92)
    tile_side: int = ranged(450, 0, 512, lo_open=True)
    tracker: str = ranged("flow", choices=TRACKERS)  # point tracker for voting: weight-free "flow" or "cotracker"
    tracker_checkpoint: str = ""  # tracker="cotracker": CoTracker3 .pth or torch.hub folder (CC BY-NC, user-supplied)
    part_model: str = ""  # .smite file from `smite learn`; empty: learn from the shot's references first

    def __post_init__(self) -> None:
        if isinstance(self.reg_tau, list):  # a JSON list built in code
            object.__setattr__(self, "reg_tau", tuple(self.reg_tau))
        check_ranges(self, "diffusion setting")
        # Relations between settings; each setting's own range sits beside it (`ranged`).
        for ok, message in (
            (self.learn_t_min <= self.learn_t_max, "need learn_t_min <= learn_t_max"),
            (self.overlap < self.window, "need overlap < window"),
            (1 <= self.ref_t - self.ref_t_jitter and self.ref_t + max(self.ref_t_jitter - 1, 0) <= 999,
             f"ref_t_jitter must keep the reference timesteps in 1..999, "
             f"got ref_t {self.ref_t} ± {self.ref_t_jitter}"),
            (self.guide_steps <= self.guide_schedule_steps, "need guide_steps <= guide_schedule_steps"),
            (self.guided_steps < self.guide_steps,
             "need guided_steps < guide_steps (the last step's maps are the output)"),
            (self.aug_dropout_min <= self.aug_dropout_max, "need aug_dropout_min <= aug_dropout_max"),
            (self.aug_zoom_min <= self.aug_zoom_max, "need aug_zoom_min <= aug_zoom_max"),
        ):
            if not ok:
                raise BadInputError(f"diffusion settings: {message}")

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

    def refine_options(self) -> dict[str, Any]:
        """Keywords of `refine.refine_to_plate` for this backend's maps: the filter everywhere (no edge gate)."""
        return {"radius": self.refine_radius, "eps": self.refine_eps}

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
