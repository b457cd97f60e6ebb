"""SMITE diffusion backend: learned parts on Stable Diffusion, windows of inflated attention, guidance.

The predictor API of `backends.base` over `method.segment.WindowSegmenter`:
- the part model comes from `part_model` (a `.smite` file from `smite learn`, checked against the
  loaded backbone and the shot's part names) or, without one, is learned first from the shot's
  references with the same settings (`method.learn`);
- the loaded frames are cut into windows of 16 with overlap 8; a window's first `overlap` frames
  take the previous window's final maps as their reference (the carry), and their output comes from
  the later window, which saw them with more context;
- hierarchical mode (official): a second pass on one crop around the window's subject (+4% margin),
  pasted back into the coarse maps;
- frames are stretched to the square model space and the latent-grid maps stretched back to the
  plate's aspect (long side = resolution); the engine refines them to plate resolution.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch

from ..config import Settings
from ..errors import BadInputError
from ..method.learn import Example, PartLearner
from ..method.segment import WindowSegmenter, plan_windows, window_seed
from ..model.backbone import Backbone, load_backbone
from ..model.parts import PartModel, load_part_model
from ..model.settings import DiffusionSettings
from ..track.base import Tracker
from ..oom import halve
from .base import BackendBase, VideoState

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
                 tracker: Tracker | None = None) -> None:
        self.settings = settings
        self.diffusion = diffusion or getattr(settings, "diffusion", None) or DiffusionSettings()
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
        return start - CARRY_WARMUP * step

    def shrink_settings(self, settings: Settings) -> Settings | None:
        """Settings that need less GPU memory after an out-of-memory error, or None when none is left.

        First fewer frames per latent-optimisation chunk (guide_chunk), then smaller windows (the
        inflated attention grows with the square of the window's frames).
        """
        d = settings.diffusion
        chunk = halve(d.guide_chunk)
        if chunk is not None:
            return settings.replace(diffusion=d.replace(guide_chunk=chunk))
        window = halve(d.window, minimum=2)
        if window is not None:
            return settings.replace(diffusion=d.replace(window=window, overlap=min(d.overlap, window // 2)))
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
        with _applied_kv(self.backbone, model):
            segmenter = WindowSegmenter(
                self.backbone, model.context.to(device), len(state.parts) + 1,
                s, tracker=self._tracker or make_tracker(s, s.resolution, device), temporal=self.settings.temporal,
                vote_frames=self.settings.vote_window, report=log.debug)
            windows = plan_windows(state.frame_numbers, s.window, s.overlap)
            carried: dict[int, torch.Tensor] = {}
            pending = list(wanted)
            for i, window in enumerate(windows):
                # Every loaded window runs, wanted or not: what it carries forward is part of the
                # result of later windows, and a farm chunk must carry what a whole-shot run carries.
                later = windows[i + 1] if i + 1 < len(windows) else []
                images = [state.source.get(f) for f in window]
                seed = window_seed(state.source.plate, window[0], self.settings.seed)
                result = segmenter(images, seed, {window.index(f): m for f, m in carried.items() if f in window})
                carried = {f: result.maps[j] for j, f in enumerate(window) if f in later}
                probs = [self._to_plate_aspect(p, state.source.size) for p in result.probs]
                if s.hierarchical:
                    probs = self._crop_pass(segmenter, images, probs, seed + 1)
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
        ctx, deltas, _, _, _ = PartLearner(self.backbone, self.diffusion)(examples, state.parts)
        return PartModel(parts=tuple(state.parts), context=ctx, backbone_hash=self.backbone.hash,
                         settings=self.diffusion.to_dict(), kv_deltas=deltas)

    def _crop_pass(self, segmenter: WindowSegmenter, images: list[np.ndarray], probs: list[np.ndarray],
                   seed: int) -> list[np.ndarray]:
        """SMITE's hierarchical pass: segment again on one crop around the subject of the whole window
        (+ crop_margin) and paste the finer maps back. Skipped when the subject is absent or fills the frame.
        """
        box = subject_box(probs, self.diffusion.crop_margin)
        if box is None:
            return probs
        y0, y1, x0, x1 = box  # fractions of the frame
        height, width = images[0].shape[:2]
        crops = [im[int(y0 * height): int(np.ceil(y1 * height)), int(x0 * width): int(np.ceil(x1 * width))]
                 for im in images]
        fine = segmenter(crops, seed)
        out = []
        for coarse, p in zip(probs, fine.probs):
            h, w = coarse.shape[1:]
            top, bottom = int(round(y0 * h)), max(int(round(y1 * h)), int(round(y0 * h)) + 1)
            left, right = int(round(x0 * w)), max(int(round(x1 * w)), int(round(x0 * w)) + 1)
            patch = cv2.resize(p.float().cpu().numpy().transpose(1, 2, 0), (right - left, bottom - top),
                               interpolation=cv2.INTER_LINEAR).reshape(bottom - top, right - left, -1)
            pasted = coarse.copy()
            pasted[:, top:bottom, left:right] = patch.transpose(2, 0, 1)
            pasted = np.clip(pasted, 0.0, None)
            out.append(pasted / np.maximum(pasted.sum(0, keepdims=True), 1e-8))
        return out

    def _to_plate_aspect(self, probs: torch.Tensor, plate_size: tuple[int, int]) -> np.ndarray:
        """Latent-grid maps `(K+1, h, w)` -> `(K+1, H', W')` with the plate's aspect, long side = resolution."""
        height, width = plate_size
        scale = self.diffusion.resolution / max(height, width)
        out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
        maps = probs.float().cpu().numpy().transpose(1, 2, 0)
        maps = cv2.resize(maps, (out_w, out_h), interpolation=cv2.INTER_LINEAR).reshape(out_h, out_w, -1)
        maps = np.clip(maps, 0.0, None)
        maps /= np.maximum(maps.sum(-1, keepdims=True), 1e-8)
        return np.ascontiguousarray(maps.transpose(2, 0, 1), dtype=np.float32)


CROP_SKIP_AREA = 0.8  # a subject box covering more of the frame than this gains nothing from a crop pass


def subject_box(probs: Sequence[np.ndarray], margin: float) -> tuple[float, float, float, float] | None:
    """Union box of the foreground (argmax > 0) over a window's maps `(K+1, h, w)`, grown by `margin`.

    Returns (y0, y1, x0, x1) as fractions of the frame, or None when there is no foreground or the box
    would cover more than CROP_SKIP_AREA of the frame.
    """
    fg = np.zeros(probs[0].shape[1:], bool)
    for p in probs:
        fg |= p.argmax(0) > 0
    if not fg.any():
        return None
    h, w = fg.shape
    ys, xs = np.nonzero(fg)
    y0, y1 = max(0.0, ys.min() / h - margin), min(1.0, (ys.max() + 1) / h + margin)
    x0, x1 = max(0.0, xs.min() / w - margin), min(1.0, (xs.max() + 1) / w + margin)
    if (y1 - y0) * (x1 - x0) > CROP_SKIP_AREA:
        return None
    return y0, y1, x0, x1


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
