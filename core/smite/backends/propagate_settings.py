"""Settings of the weight-free backend (`backends.propagate`): flow, carries, colour model, snapping, temporal filter.

Beside its backend and nested under ``propagate`` in `config.Settings`, so they decide only this
backend's mattes (a diffusion job's identity never holds them). Standard library only: reading
settings never imports OpenCV.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ..settings_json import check_ranges, fields_from_dict, ranged

FLOW_PRESETS = ("ultrafast", "fast", "medium")  # the OpenCV DIS presets of `track.flow.PRESETS`


@dataclass(frozen=True)
class PropagateSettings:
    """How the weight-free backend carries keyframes. Each range sits beside its number (`ranged`)."""

    # working resolution (long side) for flow and propagation: speed vs detail
    work_max_side: int = ranged(480, 32, 4096)
    flow_preset: str = ranged("medium", choices=FLOW_PRESETS)  # OpenCV DIS preset: ultrafast | fast | medium
    # per-frame confidence decay of a carried reference: a gentle tie-break towards the nearer keyframe.
    # Re-matching refreshes a carry wherever it drifts, so distance no longer says much about drift:
    # 0.97 let a 30-frame-old carry hand over to the colour model and lost J everywhere (issue 12)
    carry_decay: float = ranged(0.995, 0, 1, lo_open=True)
    occlusion_decay: float = ranged(0.6, 0, 1)  # confidence factor where forward-backward flow disagrees
    # fusion weighs each side's carry by confidence**fuse_power: the surer side decides instead of an average
    # of two carries of which one has lost the part (1 = plain confidence-weighted mean)
    fuse_power: float = ranged(4.0, 1, 16)
    # ... and by exp(-e / fuse_match_sigma), e the colour error of its coordinates against its keyframe over the
    # re-matching patch: the side whose carry still reads what the frame shows decides; 0 turns it off
    fuse_match_sigma: float = ranged(0.3, 0, 10)
    # weight of the references' colour model where the flow carry is unsure
    appearance_weight: float = ranged(1.0, 0, 10)
    # colour histogram bins per channel (32**3 joint RGB bins; 64**3 at most). Finer bins tell a cream dog
    # from dry grass: 16 -> 32 raised J on dog and horsejump-low by 0.02-0.04 from one keyframe (issue 12)
    appearance_levels: int = ranged(32, 2, 64)
    # where the carry is sure it keeps weight conf * (1 - s)**power against the colour model, s how well
    # colours separate the keyframe's parts from their surroundings (0..1); large = colours always decide
    separability_power: float = ranged(2.0, 0, 64)
    # where the carry is unsure, the colour model's say is scaled by min(1, s / separability_full): colours
    # that tell the keyframe's parts apart with an AUC under 0.8 (s = 2 AUC - 1 < 0.6) guide less than the
    # carry they replace; 0 = always fully (issue 12, smite bench K=1: car-shadow +0.027, xmem2_caps +0.15,
    # dog and horse equal)
    separability_full: float = ranged(0.6, 0, 1)
    # background-motion cue (`method.motion`): where the carry is unsure, a pixel whose flow follows the
    # background's homography loses its parts, by likelihood**(weight * separability); 0 turns it off.
    # It removes the trail a moving subject leaves behind (issue 12: K=1 car-shadow +0.05, dog +0.04)
    motion_weight: float = ranged(4.0, 0, 64)
    motion_trust_power: float = ranged(4.0, 0, 64)  # the carry keeps weight conf**power against the motion cue
    # small parts carried as a whole (`method.part_shift`): a part whose largest piece is at most max_size
    # (square root of its area, fraction of the long side) moves by one translation found by template
    # matching, unless the step's flow matches its pixels ratio times better or it moves under min px;
    # 0 turns it off. DIS loses a small fast blurred part within frames (issue 12, smite bench K=1: xmem2_caps
    # 0.00 -> 0.21)
    part_shift_ratio: float = ranged(3.0, 0, 1000)
    part_shift_max_size: float = ranged(0.1, 0, 1)
    part_shift_min: float = ranged(2.0, 0, 64)  # working px
    # re-matching: each carried pixel keeps the better (colour over a (2r+1)^2 patch) of its chained
    # coordinates and a direct DIS match to its keyframe; 0 turns it off
    rematch_radius: int = ranged(3, 0, 16)
    rematch_confidence: float = ranged(0.5, 0, 1)  # confidence (at least) of a pixel the direct match won
    # re-matching also tries each pixel's neighbours this many px up, down, left and right, moved by the
    # same offset (PatchMatch's propagation): DIS smears a moving part's flow across its edge; 0 = off
    rematch_spread: int = ranged(4, 0, 64)
    uncertain_blur: float = ranged(0.1, 0, 1)  # blur (fraction of the long side) of the prior where the carry is unsure
    snap_radius: int = ranged(4, 0, 64)  # guided-filter radius (working px) that re-snaps carried maps to plate edges
    # where the carry is sure it keeps its own edges: the snapped map is blended in by 1 - conf**power, so a
    # thin leg carried one frame from its keyframe is not thinned by the filter; 0 = snapped everywhere (the
    # rule before; issue 12, with the temporal median and full-resolution samples: smite bench K=1
    # 0.723 -> 0.730, K=5 0.906 -> 0.910)
    snap_trust_power: float = ranged(1.0, 0, 64)
    # guided-filter regulariser for snapping (smaller = follows edges harder)
    snap_eps: float = ranged(5e-4, 0, 1, lo_open=True)
    # plate-resolution refine of the output (guided filter, plate px; its own since settings version 3): these
    # maps are already snapped to the working frame's edges, and a wider radius only added flicker after the
    # temporal module and cost J (issue 12: radius 4 -> 2, K=5 J 0.901 -> 0.903, flicker cut >= 31% on every clip)
    refine_radius: int = ranged(2, 0, 256)
    refine_eps: float = ranged(5e-4, 0, 1, lo_open=True)  # guided-filter regulariser of the refine
    # where the plate is flat the refine has no edge to follow and only box-blurs, thinning what is narrower
    # than its window: there the plainly upsampled map is kept, the filter weighing v / (v + gate * eps), v the
    # plate's local variance (`refine.refine_to_plate`); 0 = the filter everywhere (issue 12, smite bench: the
    # chair's reflection in glass J 0.893 / 0.913 -> 0.899 / 0.920 from 1 / 5 keyframes, its flicker cut by the
    # temporal module 28% -> 35%; the dog's F from one keyframe 0.710 -> 0.699, fur on dry grass being flat too)
    refine_edge_gate: float = ranged(1.0, 0, 64)
    # the temporal module's weight-free half (its window, `vote_window`, is shared with the diffusion backend)
    # tracks are followed from every n-th working pixel (speed); every pixel is sampled, moving along its
    # block's track (the tracks' displacements interpolated), so fine detail is filtered too: a correction
    # upsampled from the n-th pixels left it to flicker (issue 12: warp lower on every clip)
    vote_stride: int = ranged(2, 1, 64)
    # weight of the samples' weighted median against their weighted mean (`method.trackfilter`): the median
    # keeps a fast small part whose tracks slid off it unseen; 0 = the mean (the rule before)
    temporal_median: float = ranged(1.0, 0, 1)
    # weight factor of a track's sample per flow step that fails the forward-backward/motion-boundary test
    # (0.5: at 0.25 the temporal module cut flicker on chair and car-shadow by only 20-28%, issue 12)
    track_fail_weight: float = ranged(0.5, 0, 1)
    # colour distance (working RGB 0..1) at which a track's sample weighs exp(-1/2): a track that slid off its surface
    colour_sigma: float = ranged(0.1, 0, 10, lo_open=True)

    def __post_init__(self) -> None:
        check_ranges(self, "propagate setting")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PropagateSettings":
        return cls(**fields_from_dict(cls, data, "propagate setting"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def refine_options(self) -> dict[str, Any]:
        """Keywords of `refine.refine_to_plate` for this backend's maps."""
        return {"radius": self.refine_radius, "eps": self.refine_eps, "edge_gate": self.refine_edge_gate}

    def replace(self, **changes: Any) -> "PropagateSettings":
        return dataclasses.replace(self, **changes)
