"""Geometry of SMITE's hierarchical pass and tiling: subject boxes, crops, pasting back, tile averaging.

Pure functions on arrays, so each rule has a known-answer test; `backends.diffusion` runs the passes.
The rules are the authors' (alimohammadiamirhossein/smite @7ecfff7, cited per function):
- the coarse pass's foreground (argmax > 0) gives one box per frame, grown by a margin that is a
  fraction of the box's own height and width; a frame with almost no foreground is not cropped;
- the crop is stretched to the square model frame; its maps are stretched back into the box, and
  outside the box every pixel is background (class 0 holds the largest score, the others 0);
- tiling cuts the square model frame into n x n overlapping tiles and averages their maps.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1) in pixels of a map grid, ends exclusive
Rect = tuple[float, float, float, float]  # the same with fractional pixels

MIN_SUBJECT_PIXELS = 3  # fewer foreground pixels: the whole frame (theirs `indices.size < 5`, size = 2·pixels)


def subject_box(foreground: np.ndarray, margin: float) -> Box:
    """Crop box of one frame's foreground `(h, w)` bool, as src/hierarchical_segmentation.py:138-166.

    Below MIN_SUBJECT_PIXELS: the whole frame (l.140-144). Else min/max row and column of the
    foreground (l.149-150), grown by int(margin · (max - min)) on each side (l.155-160, margin 0.04
    of the box, not of the frame), clipped to the frame; the end is the max row/column itself used
    as an exclusive end (l.163), so a small margin leaves the last row/column out, as theirs.
    One guard theirs lacks: a one-row or one-column subject keeps a 1-pixel crop (theirs fails there).
    """
    h, w = foreground.shape
    ys, xs = np.nonzero(foreground)
    if len(ys) < MIN_SUBJECT_PIXELS:
        return 0, h, 0, w
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    dy, dx = int(margin * (y1 - y0)), int(margin * (x1 - x0))
    top, bottom = max(0, y0 - dy), min(h, y1 + dy)
    left, right = max(0, x0 - dx), min(w, x1 + dx)
    return top, max(bottom, top + 1), left, max(right, left + 1)


def crop_image(image: np.ndarray, rect: Rect, grid: tuple[int, int]) -> np.ndarray:
    """The part of `image` `(H, W, C)` under `rect`, given in pixels of a `(h, w)` map grid of the same frame."""
    height, width = image.shape[:2]
    sy, sx = height / grid[0], width / grid[1]
    top, left = int(round(rect[0] * sy)), int(round(rect[2] * sx))
    bottom = min(height, max(int(round(rect[1] * sy)), top + 1))
    right = min(width, max(int(round(rect[3] * sx)), left + 1))
    return image[top:bottom, left:right]


def paste_maps(maps: Tensor, boxes: Sequence[Box], grid: tuple[int, int], fill: float) -> Tensor:
    """Maps `(T, K, h, w)` of the crops stretched into their boxes on a `(T, K, *grid)` frame map.

    As src/hierarchical_segmentation.py:111-117: bilinear (align_corners False) to the box size;
    outside the box class 0 holds `fill` (theirs: the largest score of the fine pass) and the other
    classes 0, so the frame outside the crop is background.
    """
    t, k = maps.shape[:2]
    out = torch.zeros(t, k, *grid, dtype=maps.dtype, device=maps.device)
    out[:, 0] = fill
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        out[i, :, y0:y1, x0:x1] = F.interpolate(maps[i : i + 1], (y1 - y0, x1 - x0), mode="bilinear",
                                                align_corners=False)[0]
    return out


def tile_layout(side: int, tile: int, per_side: int) -> list[Box]:
    """`per_side`² square tiles of `tile` px over a `side`² frame, rows first (utils/image_processing.py:318-333).

    Step (side - tile) // (per_side - 1); the authors' face setting (utils/setup.py:134-135, run.py:92)
    is side 512, tile 450, 2 per side: starts 0 and 62. The last tile is put flush with the frame's
    edge (theirs leaves a few pixels uncovered when the step does not divide evenly, e.g. 4 per side)
    and one tile per side is the whole frame (theirs: one 450-px corner, the rest uncovered).
    """
    if per_side <= 1:
        return [(0, side, 0, side)]
    step = (side - tile) // (per_side - 1)
    starts = [i * step for i in range(per_side - 1)] + [side - tile]
    return [(y, y + tile, x, x + tile) for y in starts for x in starts]


def combine_tiles(maps: Sequence[Tensor], layout: Sequence[Box], side: int) -> Tensor:
    """Per-tile maps `(T, K, h, w)` -> `(T, K, side, side)`: each stretched onto its tile, overlaps averaged.

    As src/was_attention.py:300-368 (`calculate_multi_was_mask`): bilinear to the tile size, summed,
    divided by the number of tiles covering each pixel.
    """
    t, k = maps[0].shape[:2]
    total = torch.zeros(t, k, side, side, dtype=maps[0].dtype, device=maps[0].device)
    count = torch.zeros(side, side, dtype=maps[0].dtype, device=maps[0].device)
    for m, (y0, y1, x0, x1) in zip(maps, layout):
        total[:, :, y0:y1, x0:x1] += F.interpolate(m, (y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
        count[y0:y1, x0:x1] += 1
    return total / count.clamp_min(1)


def tile_rect(box: Box, tile: Box, side: int) -> Rect:
    """Where tile `tile` (px of the `side`² model frame) of a crop lies on the map grid the crop `box` is in."""
    y0, y1, x0, x1 = box
    sy, sx = (y1 - y0) / side, (x1 - x0) / side
    return y0 + tile[0] * sy, y0 + tile[1] * sy, x0 + tile[2] * sx, x0 + tile[3] * sx


HIGH_ASPECT = 1.5  # plates longer than this (either way) get a square-crop coarse pass (hierarchical l.83)


def is_high_aspect(size: tuple[int, int]) -> bool:
    """src/hierarchical_segmentation.py:83: width/height or height/width above HIGH_ASPECT."""
    height, width = size
    return width / height > HIGH_ASPECT or height / width > HIGH_ASPECT


def square_crop(foreground: np.ndarray) -> Box | None:
    """The high-aspect coarse pass's square crop of one frame `(h, w)`, or None: keep the first coarse maps.

    As src/hierarchical_segmentation.py:208-292: side = the short side (theirs min(512, short side)
    at <= 812 px long side: the short side whenever the aspect exceeds 1.59 or the plate is under
    512 px); centred on the foreground's mean pixel (the frame's centre without foreground) and slid
    inside the frame. Kept as is (None) when the subject is taller than the side, or wider and fills
    more than half its box (l.238, Python's `and` before `or`; the box spans max - min).
    """
    h, w = foreground.shape
    side = min(h, w)
    ys, xs = np.nonzero(foreground)
    if len(ys) == 0:
        cy, cx, tall, wide, fill = h // 2, w // 2, h, w, 0.0
    else:
        tall, wide = int(ys.max() - ys.min()), int(xs.max() - xs.min())
        cy, cx = int(ys.mean()), int(xs.mean())
        fill = len(ys) / (tall * wide) if tall * wide else float("inf")
    if tall > side or (wide > side and fill > 0.5):
        return None
    y0 = min(max(0, cy - side // 2), h - side)
    x0 = min(max(0, cx - side // 2), w - side)
    return y0, y0 + side, x0, x0 + side
