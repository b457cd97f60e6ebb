"""SMITE diffusion backend: learned parts on Stable Diffusion, windows of inflated attention, guidance.

The predictor API of `backends.base` over `method.segment.WindowSegmenter`:
- the part model comes from `part_model` (a `.smite` file from `smite learn`, checked against the
  loaded backbone and the shot's part names) or, without one, is learned first from the shot's
  references with the same settings (`method.learn`);
- the loaded frames are cut into windows of 16 with overlap 8; a window's first `overlap` frames
  take the previous window's final maps as their reference (the carry), and their output comes from
  the later window, which saw them with more context;
- guidance (voting + low-pass) runs when the temporal module is on and a guidance weight is above 0;
  with both weights 0 a window is the reference pass only, as the authors' shipped inference;
- hierarchical mode (official): a coarse pass (reference pass only, windows of `coarse_window`, no
  overlap) finds one box per frame around the subject (+4% of the box); the main pass runs on the
  crops and its maps are pasted back, background outside the box (`method.crops`); a plate longer
  than 1.5:1 gets a second coarse pass on a square crop per frame;
- tiling (off by default; the authors' face setting is 2): the main pass runs once per overlapping
  tile of the model frame, each with its own carry, and the tiles' maps are averaged;
- frames are stretched to the square model space and the latent-grid maps stretched back to the
  plate's aspect (long side = resolution); the engine refines them to plate resolution. With crops
  or tiles the maps S are assembled first and the output is their softmax over classes.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..config import Settings
from ..errors import BadInputError
from ..method.crops import (
    Box, combine_tiles, crop_image, is_high_aspect, paste_maps, square_crop, subject_box, tile_layout, tile_rect,
)
from ..method.learn import Example, PartLearner
from ..method.segment import WindowResult, WindowSegmenter, plan_windows, window_seed
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


CARRY_WARMUP = 2  # windows loaded before a chunk's first window so its carried maps have settled


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
        """Earliest frame a chunk starting at `first` must load: windows sit on an absolute grid and
        carry maps forward, so the chunk starts on that grid, `CARRY_WARMUP` windows early, which
        makes a chunk's windows (and what they carry) match a whole-shot run."""
        d = self.diffusion
        step = d.window - d.overlap
        start = ((first - d.window) // step + 1) * step  # earliest window holding `first`
        earliest = start - CARRY_WARMUP * step
        if d.hierarchical:  # the coarse window holding it, for the same boxes as a whole-shot run
            earliest -= earliest % d.coarse_window
        return earliest

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
        wanted = sorted(set(state.frame_numbers if frames is None else frames))
        s = self.diffusion
        model = self._part_model_for(state)
        device = next(self.backbone.unet.parameters()).device
        # With both guidance weights 0 the authors return the reference pass (src/inference.py:203-204).
        guided = self.settings.temporal and (s.lambda_track > 0 or s.lambda_reg > 0)
        grid = self._grid(state.source.size)
        layout = tile_layout(s.resolution, s.tile_px, s.tiles)
        with _applied_kv(self.backbone, model):
            context, classes = model.context.to(device), len(state.parts) + 1
            segmenter = WindowSegmenter(
                self.backbone, context, classes, s,
                tracker=(self._tracker or make_tracker(s, s.resolution, device)) if guided else None,
                temporal=guided, vote_frames=self.settings.vote_window, report=log.debug)
            coarse = None
            if s.hierarchical:
                coarse = _CoarseBoxes(WindowSegmenter(self.backbone, context, classes, s, tracker=None, temporal=False),
                                      state, grid, s, self.settings.seed)
            windows = plan_windows(state.frame_numbers, s.window, s.overlap)
            carried: list[dict[int, torch.Tensor]] = [{} for _ in layout]  # per tile: {frame: maps}
            pending = list(wanted)
            for i, window in enumerate(windows):
                # Every loaded window runs, wanted or not: what it carries forward is part of the
                # result of later windows, and a farm chunk must carry what a whole-shot run carries.
                later = windows[i + 1] if i + 1 < len(windows) else []
                images = [state.source.get(f) for f in window]
                seed = window_seed(state.source.plate, window[0], self.settings.seed)
                boxes = [coarse.box(f) for f in window] if coarse else [(0, grid[0], 0, grid[1])] * len(window)
                results = []
                for t, tile in enumerate(layout):
                    crops = [crop_image(im, tile_rect(box, tile, s.resolution), grid) for im, box in zip(images, boxes)]
                    own = {window.index(f): m for f, m in carried[t].items() if f in window}
                    result = segmenter(crops, seed + t, own)
                    carried[t] = {f: result.maps[j] for j, f in enumerate(window) if f in later}
                    results.append(result)
                if coarse is None and len(layout) == 1:
                    probs = [self._to_plate_aspect(p, state.source.size) for p in results[0].probs]
                else:
                    probs = self._assemble(results, layout, boxes if coarse else None, grid)
                for j, f in enumerate(window):
                    if f in pending and f not in later:
                        pending.remove(f)
                        yield f, probs[j]
                if not pending:
                    break

    # -- steps ---------------------------------------------------------------------------------
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
        ctx, deltas, _, _, _ = PartLearner(self.backbone, self.diffusion, self.settings.seed)(examples, state.parts)
        return PartModel(parts=tuple(state.parts), context=ctx, backbone_hash=self.backbone.hash,
                         settings=self.diffusion.to_dict(), kv_deltas=deltas)

    def _assemble(self, results: list[WindowResult], layout: list[Box], boxes: list[Box] | None,
                  grid: tuple[int, int]) -> list[np.ndarray]:
        """One window's tile results -> per-frame class probabilities `(K+1, *grid)`.

        The maps S of the tiles are averaged over the model frame (tiling), stretched into each
        frame's crop box with background outside (hierarchical) or onto the whole frame, and the
        probabilities are the softmax of that final S over classes (SMITE-METHOD §3; the authors
        paste S, src/hierarchical_segmentation.py:111-117, and take its argmax).
        """
        scores = [_grid_maps(r) for r in results]
        s = scores[0] if len(layout) == 1 else combine_tiles(scores, layout, self.diffusion.resolution)
        if boxes is None:
            full = F.interpolate(s, grid, mode="bilinear", align_corners=False)
        else:
            # theirs fills the background with the largest score of the whole fine pass (l.116);
            # windows stream here, so the largest score of this window's fine pass
            full = paste_maps(s, boxes, grid, float(s.max()))
        return [np.ascontiguousarray(p, dtype=np.float32) for p in full.softmax(1).cpu().numpy()]

    def _grid(self, plate_size: tuple[int, int]) -> tuple[int, int]:
        """The output map grid: the plate's aspect, long side = resolution."""
        height, width = plate_size
        scale = self.diffusion.resolution / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def _to_plate_aspect(self, probs: torch.Tensor, plate_size: tuple[int, int]) -> np.ndarray:
        """Latent-grid maps `(K+1, h, w)` -> `(K+1, H', W')` with the plate's aspect, long side = resolution."""
        out_h, out_w = self._grid(plate_size)
        maps = probs.float().cpu().numpy().transpose(1, 2, 0)
        maps = cv2.resize(maps, (out_w, out_h), interpolation=cv2.INTER_LINEAR).reshape(out_h, out_w, -1)
        maps = np.clip(maps, 0.0, None)
        maps /= np.maximum(maps.sum(-1, keepdims=True), 1e-8)
        return np.ascontiguousarray(maps.transpose(2, 0, 1), dtype=np.float32)


def _grid_maps(result: WindowResult) -> torch.Tensor:
    """A window result's maps S `(T, P, K+1)` as `(T, K+1, h, w)` on the latent grid of its probabilities."""
    t, k, h, w = result.probs.shape
    return result.maps.detach().float().transpose(1, 2).reshape(t, k, h, w)


class _CoarseBoxes:
    """Per-frame crop boxes from SMITE's coarse pass, computed once per coarse window on demand.

    As src/hierarchical_segmentation.py:64-81: the reference pass only (guidance weights 0, l.66),
    on windows of `coarse_window` frames without overlap (src/inference.py:84), its maps S bilinear
    to the frame's grid, foreground = argmax > 0, one box per frame (`method.crops.subject_box`).
    A plate longer than 1.5:1 either way gets a second reference pass on a square crop around
    each frame's subject, whose foreground replaces the first (l.83-84, 200-331; `square_crop`).
    Windows sit on the absolute frame grid like the main pass's, so a farm chunk finds the same
    boxes (theirs pulls the last window back to full length, src/slicing.py:21-22).
    """

    def __init__(self, segmenter: WindowSegmenter, state: VideoState, grid: tuple[int, int],
                 settings: DiffusionSettings, seed: int) -> None:
        self.segmenter, self.state, self.grid = segmenter, state, grid
        self.margin, self.seed = settings.crop_margin, seed
        self.square = settings.high_aspect and is_high_aspect(state.source.size)
        self.windows = plan_windows(state.frame_numbers, settings.coarse_window, 0)
        self.boxes: dict[int, Box] = {}

    def box(self, frame: int) -> Box:
        if frame not in self.boxes:
            window = next(w for w in self.windows if frame in w)
            images = [self.state.source.get(f) for f in window]
            seed = window_seed(self.state.source.plate + "|coarse", window[0], self.seed)
            result = self.segmenter(images, seed)
            full = F.interpolate(_grid_maps(result), self.grid, mode="bilinear", align_corners=False)
            foreground = list(full.argmax(1).cpu().numpy() > 0)
            if self.square:
                self._square_pass(images, foreground, seed + 1)
            for f, fg in zip(window, foreground):
                self.boxes[f] = subject_box(fg, self.margin)
        return self.boxes[frame]

    def _square_pass(self, images: list[np.ndarray], foreground: list[np.ndarray], seed: int) -> None:
        """Replace each frame's foreground by that of a reference pass on its square crop (in place);
        outside the crop is background, as theirs pastes the crop's maps into zeros (l.318-331)."""
        crops = [square_crop(fg) for fg in foreground]
        todo = [j for j, c in enumerate(crops) if c is not None]
        if not todo:
            return
        result = self.segmenter([crop_image(images[j], crops[j], self.grid) for j in todo], seed)
        maps = _grid_maps(result)
        for n, j in enumerate(todo):
            y0, y1, x0, x1 = crops[j]
            inner = F.interpolate(maps[n : n + 1], (y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
            fg = np.zeros(self.grid, bool)
            fg[y0:y1, x0:x1] = inner[0].argmax(0).cpu().numpy() > 0
            foreground[j] = fg


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
