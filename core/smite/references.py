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
from .io.image import _open, image_size, read_image, read_label_map, read_mask

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


_FLOAT_FORMATS = ("half", "float", "double")


def _check_label_ids(path: str, frame: int, k: int) -> None:
    """Refuse label ids that are not whole numbers in 0..k; float files (EXR) are checked before rounding.

    A label map holding -1 or 1e30 used to be accepted silently (and rounding hid 0.5s), which
    quietly removed the part from the keyframe.
    """
    with _open(path) as inp:
        is_float = str(inp.spec().format) in _FLOAT_FORMATS
    values = read_image(path)[:, :, 0] if is_float else read_label_map(path)
    bad = ~np.isfinite(values) | (values < 0) | (values > k)
    if is_float:
        bad |= values != np.rint(np.nan_to_num(values))
    if bad.any():
        value = values[bad].flat[0]
        raise ReferenceMaskError(f"label map {path} (frame {frame}) has label id {float(value):g}; ids are whole "
                                 f"numbers from 0 (background) to {k} (the shot's {k} part(s))", path=path)


def reference_probs(ref: Reference, parts: tuple[str, ...], plate_hw: tuple[int, int]) -> np.ndarray:
    """Class probabilities `(K+1, H, W)` float32 for one reference; index 0 is background."""
    k = len(parts)
    probs = np.zeros((k + 1, *plate_hw), np.float32)
    if ref.labels is not None:
        image_size(ref.labels)  # the header first: a decompression bomb never reaches a decoder
        _check_label_ids(ref.labels, ref.frame, k)
        labels = _fit_to_plate(read_label_map(ref.labels), plate_hw, ref.labels, nearest=True)
        for i in range(k + 1):
            probs[i] = labels == i
        return probs
    for i, part in enumerate(parts, start=1):
        path = ref.masks.get(part)
        if path is None:
            continue  # a part the artist did not draw on this keyframe is absent there
        image_size(path)  # the header first: a decompression bomb never reaches a decoder
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
