"""A PNG contact sheet of frames with their part mattes overlaid, for people to judge at a glance.

Each part gets a fixed distinct colour blended at 0.6 x its probability, a thin outline at
p = 0.5 shows where the hard matte would cut, and a legend row names the colours.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import BadInputError
from .image import write_image

OVERLAY_OPACITY = 0.6  # strong enough to read the part, weak enough to see the plate through it
LEGEND_HEIGHT = 28
# Tableau-10 colours (RGB, [0, 1]): distinct for the common case of up to ten parts.
_PALETTE = np.array(
    [
        (0.122, 0.467, 0.706), (1.000, 0.498, 0.055), (0.173, 0.627, 0.173), (0.839, 0.153, 0.157),
        (0.580, 0.404, 0.741), (0.549, 0.337, 0.294), (0.890, 0.467, 0.761), (0.498, 0.498, 0.498),
        (0.737, 0.741, 0.133), (0.090, 0.745, 0.812),
    ],
    dtype=np.float32,
)


def part_colours(count: int) -> np.ndarray:
    """(count, 3) RGB colours in [0, 1]; past ten parts, evenly spaced hues."""
    if count <= len(_PALETTE):
        return _PALETTE[:count].copy()
    hues = np.linspace(0, 180, count, endpoint=False).astype(np.uint8)
    hsv = np.stack([hues, np.full(count, 200, np.uint8), np.full(count, 230, np.uint8)], axis=-1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float32) / 255.0


def overlay_parts(rgb: np.ndarray, probs: np.ndarray, colours: np.ndarray, outline: bool = True) -> np.ndarray:
    """Blend parts over a plate: rgb (H, W, 3) in [0, 1], probs (K, H, W) -> (H, W, 3) float32."""
    out = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    for prob, colour in zip(probs, colours):
        alpha = (np.clip(prob, 0.0, 1.0) * OVERLAY_OPACITY)[:, :, None]
        out = out * (1.0 - alpha) + colour * alpha
        if outline:
            hard = (prob >= 0.5).astype(np.uint8)
            contours, _ = cv2.findContours(hard, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, tuple(float(c) for c in colour), 1)
    return out


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))


def _label(image: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    """White text with a dark shadow, readable over any plate; ``image`` is uint8 (OpenCV 5 draws text on 8-bit only)."""
    x, y = origin
    cv2.putText(image, text, (x + 1, y + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def _tile(frame: int, rgb: np.ndarray, probs: np.ndarray, colours: np.ndarray, width: int, parts: int) -> np.ndarray:
    """One labelled (height, width, 3) uint8 tile."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or probs.shape != (parts, *rgb.shape[:2]):
        raise BadInputError(f"contact sheet frame {frame}: plate {rgb.shape} and mattes {probs.shape} do not match {parts} parts")
    height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
    small = cv2.resize(np.asarray(rgb, np.float32), (width, height), interpolation=cv2.INTER_AREA)
    small_probs = np.stack(
        [cv2.resize(np.asarray(p, np.float32), (width, height), interpolation=cv2.INTER_LINEAR) for p in probs]
    ) if parts else np.zeros((0, height, width), np.float32)
    tile = _to_uint8(overlay_parts(small, small_probs, colours))
    _label(tile, str(frame), (6, 18))
    return tile


def write_contact_sheet(
    path: str,
    tiles: list[tuple[int, np.ndarray, np.ndarray]],
    parts: list[str],
    *,
    columns: int = 4,
    tile_width: int = 320,
    attributes: dict[str, str] | None = None,
) -> None:
    """Write an 8-bit PNG grid of (frame, rgb (H, W, 3), probs (K, H, W)) tiles plus a legend row.

    The sheet is ``columns * tile_width`` wide (fewer columns when there are fewer tiles); rows
    are as tall as the tallest scaled tile, plus `LEGEND_HEIGHT` for the legend. ``attributes`` are
    written as PNG text (the engine marks its previews so it only ever replaces its own).
    """
    if not tiles:
        raise BadInputError(f"contact sheet {path}: no frames to show")
    colours = part_colours(len(parts))
    images = [_tile(frame, rgb, probs, colours, tile_width, len(parts)) for frame, rgb, probs in tiles]
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    cell_height = max(image.shape[0] for image in images)
    sheet = np.zeros((rows * cell_height + LEGEND_HEIGHT, columns * tile_width, 3), np.uint8)
    for i, image in enumerate(images):
        top, left = (i // columns) * cell_height, (i % columns) * tile_width
        sheet[top : top + image.shape[0], left : left + tile_width] = image
    x, y = 6, rows * cell_height + 6
    for name, colour in zip(parts, _to_uint8(colours)):
        cv2.rectangle(sheet, (x, y), (x + 14, y + 14), tuple(int(c) for c in colour), -1)
        _label(sheet, name, (x + 20, y + 12))
        x += 20 + cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] + 16
    write_image(path, sheet, dtype="uint8", attributes=attributes)
