"""Augmentations of a reference (image + label map) for learning parts (SMITE-METHOD §2).

With 1-10 references, the part vectors overfit to one framing unless each step sees a new view:
random crops that keep a part, rotation, flips, blur, coarse dropout and occasional zoom-out.
Geometry moves image and labels together (labels with nearest-neighbour so ids stay ids);
photometric changes touch the image only. Every draw comes from the `rng` passed in.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..model.settings import DiffusionSettings

ZOOM_OUT_RANGE = (1.2, 1.8)  # canvas side / image side when zooming out
CROP_SCALE = (0.5, 0.9)  # crop side / image side
DROPOUT_HOLES = (1, 4)  # rectangles blanked by coarse dropout
DROPOUT_SIZE = (0.05, 0.2)  # their side / image side


def _crop_keeping_part(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    h, w = labels.shape
    ys, xs = np.nonzero(labels > 0)
    if len(ys) == 0:
        return image, labels
    scale = rng.uniform(*CROP_SCALE)
    ch, cw = max(1, int(h * scale)), max(1, int(w * scale))
    i = rng.integers(len(ys))  # centre the crop near a random part pixel so a part stays in view
    y0 = int(np.clip(ys[i] - rng.integers(ch), 0, h - ch))
    x0 = int(np.clip(xs[i] - rng.integers(cw), 0, w - cw))
    return image[y0 : y0 + ch, x0 : x0 + cw], labels[y0 : y0 + ch, x0 : x0 + cw]


def _rotate(image: np.ndarray, labels: np.ndarray, degrees: float):
    h, w = labels.shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    labels = cv2.warpAffine(labels, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    return image, labels


def _zoom_out(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    h, w = labels.shape
    factor = rng.uniform(*ZOOM_OUT_RANGE)
    ch, cw = int(h * factor), int(w * factor)
    canvas = np.full((ch, cw, 3), 0.5, np.float32)
    canvas_labels = np.zeros((ch, cw), labels.dtype)
    y0, x0 = int(rng.integers(ch - h + 1)), int(rng.integers(cw - w + 1))
    canvas[y0 : y0 + h, x0 : x0 + w] = image
    canvas_labels[y0 : y0 + h, x0 : x0 + w] = labels
    return canvas, canvas_labels


def _dropout(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = image.copy()
    h, w = image.shape[:2]
    for _ in range(int(rng.integers(DROPOUT_HOLES[0], DROPOUT_HOLES[1] + 1))):
        rh, rw = max(1, int(h * rng.uniform(*DROPOUT_SIZE))), max(1, int(w * rng.uniform(*DROPOUT_SIZE)))
        y0, x0 = int(rng.integers(h - rh + 1)), int(rng.integers(w - rw + 1))
        image[y0 : y0 + rh, x0 : x0 + rw] = 0.0
    return image


def augment(image: np.ndarray, labels: np.ndarray, settings: DiffusionSettings,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random view of a reference.

    image: `(H, W, 3)` float32 in [0, 1]; labels: `(H, W)` uint8 class ids. Returns the same kinds,
    possibly of another size (the caller resizes to model space).
    """
    s = settings
    image = np.ascontiguousarray(image, np.float32)
    labels = np.ascontiguousarray(labels, np.uint8)
    if rng.random() < s.aug_zoom_out:
        image, labels = _zoom_out(image, labels, rng)
    if rng.random() < s.aug_crop:
        image, labels = _crop_keeping_part(image, labels, rng)
    if s.aug_rotate > 0:
        image, labels = _rotate(np.ascontiguousarray(image), np.ascontiguousarray(labels),
                                float(rng.uniform(-s.aug_rotate, s.aug_rotate)))
    if rng.random() < s.aug_flip:
        image, labels = image[:, ::-1], labels[:, ::-1]
    if rng.random() < s.aug_blur:
        sigma = float(rng.uniform(0.5, 1.5))
        image = cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), sigma)
    if rng.random() < s.aug_dropout:
        image = _dropout(image, rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)
