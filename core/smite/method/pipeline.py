"""Segmenting a video with learned parts, frame by frame (SMITE-METHOD §3): the per-video loop.

`segment_video` is a generator that reads as numbered steps, like a diffusers pipeline:

1. windows: the loaded frames are cut into windows of 16 with overlap 8 on the absolute frame grid
   (`plan_windows`), and the model frame into tiles (one unless tiling is on; the authors' face
   setting is 2 per side);
2. coarse pass (hierarchical mode, official): a reference pass only, on windows of `coarse_window`
   frames without overlap, finds one box per frame around the subject (+4% of the box); a plate
   longer than 1.5:1 gets a second coarse pass on a square crop per frame (`CoarseBoxes`);
3. crop pass: each frame of a window is cropped to its box (and tile) and stretched to the square
   model space; a window's first `overlap` frames take the previous window's final maps as their
   reference (the carry);
4. one window through `method.segment.WindowSegmenter` (reference pass, then guided denoising when
   the temporal module is on and a guidance weight is above 0; with both weights 0 the reference
   pass only, as the authors' shipped inference); its maps of the frames the next window shares
   are carried forward;
5. paste-back: the latent-grid maps are stretched back to the plate's aspect (long side =
   resolution); with crops or tiles the maps S are assembled first (tiles averaged, crops pasted
   into their boxes with background outside) and the output is their softmax over classes;
6. the frames this window finishes are yielded in frame order as `(frame, probs (K+1, h, w))`;
   overlapped frames come from the later window, which saw them with more context.

Every loaded window runs, wanted or not: what it carries forward is part of the result of later
windows, and a farm chunk must carry what a whole-shot run carries (`first_needed`).
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence

import cv2
import numpy as np
import torch.nn.functional as F
from torch import Tensor

from ..model.backbone import Backbone
from ..model.settings import DiffusionSettings
from ..track.base import Tracker
from .crops import (
    Box, combine_tiles, crop_image, is_high_aspect, paste_maps, square_crop, subject_box, tile_layout, tile_rect,
)
from .segment import WindowResult, WindowSegmenter, plan_windows, window_seed

CARRY_WARMUP = 2  # windows loaded before a chunk's first window so its carried maps have settled


class VideoFrames(Protocol):
    """The frames of one run (`smite.frames.FrameSource`): model-space `(H, W, 3)` [0, 1] images on demand.

    `plate` names the shot in the per-window seeds; `size` is the plate's (height, width).
    """

    plate: str
    frame_numbers: list[int]
    size: tuple[int, int]

    def get(self, frame: int) -> np.ndarray: ...


def is_guided(temporal: bool, settings: DiffusionSettings) -> bool:
    """Whether windows run guided denoising: the temporal module on and a guidance weight above 0.

    With both weights 0 the authors return the reference pass (src/inference.py:203-204).
    """
    return temporal and (settings.lambda_track > 0 or settings.lambda_reg > 0)


def first_needed(first: int, settings: DiffusionSettings) -> int:
    """Earliest frame a chunk starting at `first` must load: windows sit on an absolute grid and
    carry maps forward, so the chunk starts on that grid, `CARRY_WARMUP` windows early, which
    makes a chunk's windows (and what they carry) match a whole-shot run."""
    d = settings
    step = d.window - d.overlap
    start = ((first - d.window) // step + 1) * step  # earliest window holding `first`
    earliest = start - CARRY_WARMUP * step
    if d.hierarchical:  # the coarse window holding it, for the same boxes as a whole-shot run
        earliest -= earliest % d.coarse_window
    return earliest


def segment_video(backbone: Backbone, context: Tensor, classes: int, video: VideoFrames,
                  frames: Sequence[int] | None, settings: DiffusionSettings, *, temporal: bool,
                  tracker: Tracker | None, vote_frames: int, seed: int,
                  report: Callable[[str], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(frame, probs (K+1, h, w))` for `frames` (default: all of `video`) in frame order; see module doc.

    context: the part model's text conditioning `(L, D)` on the backbone's device (k/v deltas, if
    any, already in the UNet); classes: K+1; tracker: the point tracker for voting, needed when
    guided with λ_track > 0; vote_frames: frames per vote; seed: the user's seed.
    """
    s = settings
    wanted = sorted(set(video.frame_numbers if frames is None else frames))
    guided = is_guided(temporal, s)
    # 1. windows on the absolute frame grid; tiles of the model frame
    grid = map_grid(video.size, s.resolution)
    layout = tile_layout(s.resolution, s.tile_px, s.tiles)
    windows = plan_windows(video.frame_numbers, s.window, s.overlap)
    segmenter = WindowSegmenter(backbone, context, classes, s, tracker=tracker if guided else None,
                                temporal=guided, vote_frames=vote_frames, report=report)
    # 2. coarse pass (hierarchical): one subject box per frame, per coarse window on demand
    coarse = None
    if s.hierarchical:
        coarse = CoarseBoxes(WindowSegmenter(backbone, context, classes, s, tracker=None, temporal=False),
                             video, grid, s, seed)
    carried: list[dict[int, Tensor]] = [{} for _ in layout]  # per tile: {frame: maps}
    pending = list(wanted)
    for i, window in enumerate(windows):
        later = windows[i + 1] if i + 1 < len(windows) else []
        images = [video.get(f) for f in window]
        noise_seed = window_seed(video.plate, window[0], seed)
        boxes = [coarse.box(f) for f in window] if coarse else [(0, grid[0], 0, grid[1])] * len(window)
        results = []
        for t, tile in enumerate(layout):
            # 3. crop pass: each frame's box (and tile) in model space, with this tile's carried maps
            crops = [crop_image(im, tile_rect(box, tile, s.resolution), grid) for im, box in zip(images, boxes)]
            own = {window.index(f): m for f, m in carried[t].items() if f in window}
            # 4. the window: reference pass (+ guided denoising); carry what the next window shares
            result = segmenter(crops, noise_seed + t, own)
            carried[t] = {f: result.maps[j] for j, f in enumerate(window) if f in later}
            results.append(result)
        # 5. paste-back to the plate's aspect
        if coarse is None and len(layout) == 1:
            probs = [to_plate_aspect(p, grid) for p in results[0].probs]
        else:
            probs = assemble(results, layout, boxes if coarse else None, grid, s.resolution)
        # 6. the frames this window finishes (the next window does not hold them)
        for j, f in enumerate(window):
            if f in pending and f not in later:
                pending.remove(f)
                yield f, probs[j]
        if not pending:
            break


def map_grid(plate_size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """The output map grid: the plate's aspect, long side = resolution."""
    height, width = plate_size
    scale = resolution / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_plate_aspect(probs: Tensor, grid: tuple[int, int]) -> np.ndarray:
    """Latent-grid maps `(K+1, h, w)` -> `(K+1, *grid)`, the plate's aspect (`map_grid`), renormalised."""
    out_h, out_w = grid
    maps = probs.float().cpu().numpy().transpose(1, 2, 0)
    maps = cv2.resize(maps, (out_w, out_h), interpolation=cv2.INTER_LINEAR).reshape(out_h, out_w, -1)
    maps = np.clip(maps, 0.0, None)
    maps /= np.maximum(maps.sum(-1, keepdims=True), 1e-8)
    return np.ascontiguousarray(maps.transpose(2, 0, 1), dtype=np.float32)


def assemble(results: list[WindowResult], layout: list[Box], boxes: list[Box] | None,
             grid: tuple[int, int], resolution: int) -> list[np.ndarray]:
    """One window's tile results -> per-frame class probabilities `(K+1, *grid)`.

    The maps S of the tiles are averaged over the model frame (tiling), stretched into each
    frame's crop box with background outside (hierarchical) or onto the whole frame, and the
    probabilities are the softmax of that final S over classes (SMITE-METHOD §3; the authors
    paste S, src/hierarchical_segmentation.py:111-117, and take its argmax).
    """
    scores = [grid_maps(r) for r in results]
    s = scores[0] if len(layout) == 1 else combine_tiles(scores, layout, resolution)
    if boxes is None:
        full = F.interpolate(s, grid, mode="bilinear", align_corners=False)
    else:
        # theirs fills the background with the largest score of the whole fine pass (l.116);
        # windows stream here, so the largest score of this window's fine pass
        full = paste_maps(s, boxes, grid, float(s.max()))
    return [np.ascontiguousarray(p, dtype=np.float32) for p in full.softmax(1).cpu().numpy()]


def grid_maps(result: WindowResult) -> Tensor:
    """A window result's maps S `(T, P, K+1)` as `(T, K+1, h, w)` on the latent grid of its probabilities."""
    t, k, h, w = result.probs.shape
    return result.maps.detach().float().transpose(1, 2).reshape(t, k, h, w)


class CoarseBoxes:
    """Per-frame crop boxes from SMITE's coarse pass, computed once per coarse window on demand.

    As src/hierarchical_segmentation.py:64-81: the reference pass only (guidance weights 0, l.66),
    on windows of `coarse_window` frames without overlap (src/inference.py:84), its maps S bilinear
    to the frame's grid, foreground = argmax > 0, one box per frame (`method.crops.subject_box`).
    A plate longer than 1.5:1 either way gets a second reference pass on a square crop around
    each frame's subject, whose foreground replaces the first (l.83-84, 200-331; `square_crop`).
    Windows sit on the absolute frame grid like the main pass's, so a farm chunk finds the same
    boxes (theirs pulls the last window back to full length, src/slicing.py:21-22).
    """

    def __init__(self, segmenter: WindowSegmenter, video: VideoFrames, grid: tuple[int, int],
                 settings: DiffusionSettings, seed: int) -> None:
        self.segmenter, self.video, self.grid = segmenter, video, grid
        self.margin, self.seed = settings.crop_margin, seed
        self.square = settings.high_aspect and is_high_aspect(video.size)
        self.windows = plan_windows(video.frame_numbers, settings.coarse_window, 0)
        self.boxes: dict[int, Box] = {}

    def box(self, frame: int) -> Box:
        if frame not in self.boxes:
            window = next(w for w in self.windows if frame in w)
            images = [self.video.get(f) for f in window]
            seed = window_seed(self.video.plate + "|coarse", window[0], self.seed)
            result = self.segmenter(images, seed)
            full = F.interpolate(grid_maps(result), self.grid, mode="bilinear", align_corners=False)
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
        maps = grid_maps(result)
        for n, j in enumerate(todo):
            y0, y1, x0, x1 = crops[j]
            inner = F.interpolate(maps[n : n + 1], (y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
            fg = np.zeros(self.grid, bool)
            fg[y0:y1, x0:x1] = inner[0].argmax(0).cpu().numpy() > 0
            foreground[j] = fg
