"""Settings of the SMITE diffusion backend: learning and segmenting, the paper's values as defaults.

One frozen dataclass, one home per tunable number, each with a one-line why (SMITE-METHOD.md is the
reference). The lead nests it into `config.Settings`; it saves as sorted JSON with a version and
validates on construction, so a bad value fails before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import BadInputError
from ..settings_json import fields_from_dict

DIFFUSION_SETTINGS_VERSION = 1
INVERSIONS = ("noise", "ddim")


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
    was_weight: float = 1.0  # times K: MSE between the WAS map and the one-hot labels
    sd_weight: float = 0.005  # noise-prediction loss keeps the vectors in the text manifold
    sd_guidance: float = 100.0  # official: classifier-free guidance scale inside the SD loss (1 = no extra pass)
    kv_phase: bool = True  # official default: second phase fine-tunes attn2 to_k/to_v with the vectors frozen
    kv_start_epoch: int = 50  # epochs of vector learning before the k/v phase
    kv_lr: float = 1e-6  # Adam learning rate of the k/v phase
    val_every: int = 50  # steps between validations when a held-out reference is given (best state kept)
    aug_crop: float = 0.5  # probability of a random crop that keeps a part
    aug_rotate: float = 30.0  # max rotation in degrees (use 10 for faces)
    aug_flip: float = 0.5  # probability of a horizontal flip
    aug_blur: float = 0.2  # probability of a Gaussian blur
    aug_dropout: float = 0.2  # probability of coarse dropout (a few blanked rectangles)
    aug_zoom_out: float = 0.1  # probability of shrinking the image onto a larger grey canvas
    # -- segmenting (§3) --
    window: int = 16  # frames per inflated-attention window
    overlap: int = 8  # frames shared by consecutive windows; their results seed the next window
    ref_t: int = 100  # timestep of the reference pass
    inversion: str = "noise"  # reference latents: "noise" (official one-shot add_noise) or "ddim" (paper)
    inversion_steps: int = 10  # DDIM inversion steps from the clean latent to ref_t (inversion="ddim")
    guide_t_start: int = 103  # guided denoising runs DDIM from here down to ref_t
    guide_steps: int = 4  # DDIM steps from guide_t_start to ref_t
    guided_steps: int = 3  # optimise the latents after each of the first N DDIM steps
    guide_iters: int = 15  # Adam-style latent updates per guided step
    guide_chunk: int = 4  # frames per latent-optimisation chunk (memory)
    guide_lr_scale: float = 10.0  # step size = scale * sigma_t, sigma_t = (1 - alpha_t) / alpha_t
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
    seed: int = 0  # every random choice derives from this

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
        need(self.guide_t_start >= self.ref_t >= 1, "need guide_t_start >= ref_t >= 1")
        need(self.guide_steps >= 1 and 0 <= self.guided_steps <= self.guide_steps,
             "need 0 <= guided_steps <= guide_steps")
        need(self.guide_chunk >= 1 and self.guide_iters >= 0, "need guide_chunk >= 1 and guide_iters >= 0")
        need(0.0 <= self.crop_margin <= 0.5, f"crop_margin must be in [0, 0.5], got {self.crop_margin}")
        need(self.coarse_window >= 1, f"coarse_window must be >= 1, got {self.coarse_window}")
        need(self.tiles >= 1 and 0 < self.tile_side <= 512, "need tiles >= 1 and 0 < tile_side <= 512")
        need(self.tracker in ("flow", "cotracker"), f"tracker must be flow or cotracker, got {self.tracker!r}")
        for name in ("aug_crop", "aug_flip", "aug_blur", "aug_dropout", "aug_zoom_out"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name} is a probability in [0, 1]")

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
