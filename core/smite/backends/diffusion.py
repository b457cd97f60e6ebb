"""SMITE diffusion backend: the predictor API of `backends.base` over `method.pipeline.segment_video`.

A thin adapter. It loads what the method needs and hands over: the backbone (`diffusion.model`),
the part model (`diffusion.part_model`, a `.smite` file from `smite learn`, checked against the
loaded backbone and the shot's part names; without one it is learned first from the shot's
references with the same settings, `method.learn`), its k/v deltas applied to the UNet while the
shot runs, and the point tracker for voting. Windows, carry, the coarse and crop passes and the
paste-back are the method's (`method.pipeline`); one window's steps are `method.segment`.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Iterator, Sequence

import numpy as np
import torch

from ..config import Settings
from ..errors import BadInputError
from ..method.learn import Example, PartLearner
from ..method.pipeline import first_needed, is_guided, segment_video
from ..model.backbone import Backbone, load_backbone
from ..model.parts import PartModel, load_part_model
from ..model.settings import DiffusionSettings
from ..track.base import Tracker
from ..oom import halve
from .base import BackendBase, ProgressFn, VideoState

log = logging.getLogger(__name__)


def make_tracker(settings: DiffusionSettings, resolution: int, device: torch.device | str | None = None) -> Tracker:
    """The point tracker for voting: the weight-free flow tracker (default) or CoTracker (on `device`)."""
    if settings.tracker == "cotracker":
        from ..track.cotracker import CoTrackerTracker

        return CoTrackerTracker.from_checkpoint(settings.tracker_checkpoint, device)
    from ..track.flow import FlowTracker

    return FlowTracker(max_side=min(resolution, 480))


class DiffusionBackend(BackendBase):
    """SMITE on Stable Diffusion; see module doc."""

    name = "diffusion"

    def __init__(self, settings: Settings, diffusion: DiffusionSettings | None = None, *,
                 backbone: Backbone | None = None, part_model: PartModel | None = None,
                 tracker: Tracker | None = None, progress: ProgressFn | None = None) -> None:
        super().__init__(settings, progress=progress)
        self.diffusion = diffusion or settings.diffusion
        self._backbone = backbone
        self._part_model = part_model
        self._tracker = tracker

    def first_needed(self, first: int) -> int:
        """Earliest frame a chunk starting at `first` must load (`method.pipeline.first_needed`)."""
        return first_needed(first, self.diffusion)

    def shrink_settings(self, settings: Settings) -> Settings | None:
        """Settings that need less GPU memory after an out-of-memory error, or None when none is left.

        First fewer frames per latent-optimisation chunk (guide_chunk), then smaller windows (the
        inflated attention grows with the square of the window's frames), the coarse pass's with them.
        """
        d = settings.diffusion
        chunk = halve(d.guide_chunk)
        if chunk is not None:
            return settings.replace(diffusion=d.replace(guide_chunk=chunk))
        window = halve(d.window, minimum=2)
        if window is not None:
            return settings.replace(diffusion=d.replace(window=window, overlap=min(d.overlap, window // 2),
                                                        coarse_window=min(d.coarse_window, window)))
        return None

    # -- components, loaded on first use ---------------------------------------------------------
    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            self._backbone = load_backbone(self.diffusion.model or None)
        return self._backbone

    @property
    def model_hash(self) -> str:
        """Identity of what decides the mattes: backbone plus part model (engine stores it per frame)."""
        h = hashlib.sha256(self.backbone.hash.encode())
        pm = self._loaded_part_model()
        if pm is not None:
            h.update(pm.context.numpy().tobytes())
            for name in sorted(pm.kv_deltas):
                h.update(pm.kv_deltas[name].numpy().tobytes())
        return h.hexdigest()[:16]

    def _loaded_part_model(self) -> PartModel | None:
        if self._part_model is None and self.diffusion.part_model:
            self._part_model = load_part_model(self.diffusion.part_model, backbone_hash=self.backbone.hash)
        return self._part_model

    # -- predictor API (init_state, add_reference from BackendBase) ----------------------------
    def propagate(self, state: VideoState, frames: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        s = self.diffusion
        model = self._part_model_for(state)
        device = next(self.backbone.unet.parameters()).device
        guided = is_guided(self.settings.temporal, s)
        tracker = (self._tracker or make_tracker(s, s.resolution, device)) if guided else None
        with _applied_kv(self.backbone, model):
            yield from segment_video(self.backbone, model.context.to(device), len(state.parts) + 1, state.source,
                                     frames, s, temporal=self.settings.temporal, tracker=tracker,
                                     vote_frames=self.settings.vote_window, seed=self.settings.seed, report=log.debug)

    # -- the part model --------------------------------------------------------------------------
    def _part_model_for(self, state: VideoState) -> PartModel:
        model = self._loaded_part_model()
        if model is None:
            model = self._learn_from_references(state)
            self._part_model = model
        if tuple(model.parts) != tuple(state.parts):
            raise BadInputError(
                f"part model {self.diffusion.part_model or '(learned)'} has parts {', '.join(model.parts)} "
                f"but the shot has {', '.join(state.parts)}")
        return model

    def _learn_from_references(self, state: VideoState) -> PartModel:
        if not state.references:
            raise BadInputError("the diffusion backend needs a part model (part_model) or at least one reference")
        log.info("no part model given: learning %s from %d reference(s)", ", ".join(state.parts), len(state.references))
        examples = [Example(state.source.get(f), p.argmax(0).astype(np.uint8), f"frame {f}")
                    for f, p in sorted(state.references.items())]
        return PartLearner(self.backbone, self.diffusion, self.settings.seed)(examples, state.parts).model


class _applied_kv:
    """Add a part model's k/v deltas to the UNet inside the block; subtract them afterwards."""

    def __init__(self, backbone: Backbone, model: PartModel) -> None:
        self.modules = dict(backbone.unet.named_modules())
        self.deltas = model.kv_deltas

    def _apply(self, sign: float) -> None:
        with torch.no_grad():
            for name, delta in self.deltas.items():
                if name not in self.modules:
                    raise BadInputError(f"part model k/v delta {name} has no module in this UNet")
                weight = self.modules[name].weight
                weight.add_(sign * delta.to(weight))

    def __enter__(self) -> None:
        self._apply(1.0)

    def __exit__(self, *exc) -> None:
        self._apply(-1.0)
