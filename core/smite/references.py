"""Turn a shot's reference files into validated soft class maps at plate size.

A reference is either a label map (0 = background, i = i-th part) or one soft mask per part.
Both become the same thing here, `(K+1, H, W)` class probabilities with background at index 0,
so backends never care how the artist drew the keyframe.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from .config import Reference, ShotSpec
from .errors import ReferenceMaskError
from .io.image import read_label_map, read_mask

log = logging.getLogger(__name__)

ASPECT_TOLERANCE = 0.01  # relative aspect difference accepted as "same aspect" (resample with a warning)


def _fit_to_plate(array: np.ndarray, plate_hw: tuple[int, int], path: str, nearest: bool) -> np.ndarray:
    """Resample a mask whose size differs from the plate only by scale; refuse other shapes."""
    h, w = array.shape[:2]
    ph, pw = plate_hw
    if (h, w) == (ph, pw):
        return array
    if abs((w / h) / (pw / ph) - 1.0) > ASPECT_TOLERANCE:
        raise ReferenceMaskError(f"mask {path} is {w}x{h} but the plate is {pw}x{ph} (different aspect)")
    log.warning("mask %s is %dx%d, plate is %dx%d: resampling", path, w, h, pw, ph)
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(array, (pw, ph), interpolation=interp)


def reference_probs(ref: Reference, parts: tuple[str, ...], plate_hw: tuple[int, int]) -> np.ndarray:
    """Class probabilities `(K+1, H, W)` float32 for one reference; index 0 is background."""
    k = len(parts)
    probs = np.zeros((k + 1, *plate_hw), np.float32)
    if ref.labels is not None:
        labels = _fit_to_plate(read_label_map(ref.labels), plate_hw, ref.labels, nearest=True)
        top = int(labels.max()) if labels.size else 0
        if top > k:
            raise ReferenceMaskError(
                f"label map {ref.labels} (frame {ref.frame}) has label id {top} but the shot has only {k} part(s)"
            )
        for i in range(k + 1):
            probs[i] = labels == i
        return probs
    for i, part in enumerate(parts, start=1):
        path = ref.masks.get(part)
        if path is None:
            continue  # a part the artist did not draw on this keyframe is absent there
        mask = _fit_to_plate(read_mask(path), plate_hw, path, nearest=False)
        mask = np.clip(np.nan_to_num(mask, nan=0.0), 0.0, 1.0)
        if float(mask.max(initial=0.0)) < 0.5:
            raise ReferenceMaskError(f"mask {path} for part '{part}' at frame {ref.frame} is empty")
        probs[i] = mask
    fg = probs[1:].sum(axis=0)
    over = fg > 1.0
    if over.any():  # overlapping soft shapes: share the pixel instead of exceeding 1
        probs[1:, over] /= fg[over]
        fg = np.minimum(fg, 1.0)
    probs[0] = 1.0 - fg
    return probs


def load_references(shot: ShotSpec, plate_hw: tuple[int, int]) -> dict[int, np.ndarray]:
    """All references of a shot as `{frame: (K+1, H, W)}`; every part must appear somewhere."""
    refs = {ref.frame: reference_probs(ref, shot.parts, plate_hw) for ref in shot.references}
    for i, part in enumerate(shot.parts, start=1):
        if not any(float(p[i].max()) >= 0.5 for p in refs.values()):
            raise ReferenceMaskError(f"part '{part}' is empty in every reference of {shot.source}")
    return refs
