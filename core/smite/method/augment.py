"""Augmented views of a reference (image + label map) in model space, as the authors train (SMITE-METHOD §2).

With 1-10 references the part vectors overfit to one framing unless each step sees a new view. The
reference is first stretched to the square model space (`resolution`², 512² for SD 2.1), then
augmented there, in the authors' order (`utils/dataset.py` of alimohammadiamirhossein/smite, with
albumentations 1.4.18 defaults): zoom-out onto black, blur, coarse dropout, flip, a square crop that
keeps a class (resized back), rotation padded with 0. Their zoom-out runs just before the resize, on
the plate; shrinking by s after the stretch to the square is the same geometry. Working in model space
matters: a 5-px blur of a 2K plate vanishes when it is shrunk to 512², and hole sizes are model-space
pixels. Geometry moves
image and labels together (labels nearest-neighbour, so ids stay ids); padding and holes are 0 in both
(black image, background label). Every draw comes from the `rng` passed in.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..model.settings import DiffusionSettings

OFFICIAL_SIDE = 512  # the authors' model side: dropout hole sizes are given in pixels of it
CROP_TRIES = 100  # the authors retry without limit; after this many misses the view stays uncropped


def to_model_space(image: np.ndarray, labels: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Stretch a reference to `side`²: image by area (as `encode.to_model_images`), labels nearest."""
    image = cv2.resize(np.asarray(image, np.float32), (side, side), interpolation=cv2.INTER_AREA)
    labels = cv2.resize(np.asarray(labels, np.uint8), (side, side), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def zoom_out(image: np.ndarray, labels: np.ndarray, scale: float, y0: int, x0: int):
    """Shrink both by `scale` onto a black, background-labelled canvas of the same size at (y0, x0)."""
    h, w = labels.shape
    nh, nw = int(h * scale), int(w * scale)
    canvas, canvas_labels = np.zeros_like(image), np.zeros_like(labels)
    canvas[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas_labels[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(labels, (nw, nh), interpolation=cv2.INTER_NEAREST)
    return canvas, canvas_labels


def blur(image: np.ndarray, kernel: int) -> np.ndarray:
    """Gaussian blur with an odd `kernel`, sigma from the kernel (OpenCV's rule; albumentations' sigma 0)."""
    return image if kernel <= 1 else cv2.GaussianBlur(image, (kernel, kernel), 0)


def dropout(image: np.ndarray, labels: np.ndarray, holes: list[tuple[int, int, int, int]]):
    """Blank rectangles `(y0, x0, h, w)`: image 0 (black) and labels 0 (background) under each hole."""
    image, labels = image.copy(), labels.copy()
    for y0, x0, hh, ww in holes:
        image[y0 : y0 + hh, x0 : x0 + ww] = 0.0
        labels[y0 : y0 + hh, x0 : x0 + ww] = 0
    return image, labels


def rotate(image: np.ndarray, labels: np.ndarray, degrees: float):
    """Rotate both about the image centre; what comes in from outside is 0 in image and labels."""
    h, w = labels.shape
    matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), degrees, 1.0)
    image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(0.0, 0.0, 0.0))
    labels = cv2.warpAffine(labels, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    return image, labels


def crop_box(labels: np.ndarray, keep_class: int, min_side: float, keep: float,
             rng: np.random.Generator) -> tuple[int, int, int]:
    """A square `(y0, x0, side)` of side U(min_side, 1)·min(H, W) holding > `keep` of `keep_class`'s pixels.

    A class absent from the view accepts any crop (as the authors' loop does).
    """
    h, w = labels.shape
    total = int((labels == keep_class).sum())
    for _ in range(CROP_TRIES):
        side = int(rng.uniform(min_side, 1.0) * min(h, w))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        if total == 0 or (labels[y0 : y0 + side, x0 : x0 + side] == keep_class).sum() / total > keep:
            return y0, x0, side
    return 0, 0, min(h, w)


def _blur_kernel(rng: np.random.Generator, largest: int) -> int:
    """albumentations 1.4.18 GaussianBlur(blur_limit=(1, largest)): k = randrange(1, largest + 1), even -> next odd."""
    k = int(rng.integers(1, largest + 1))
    return k if k % 2 else (k + 1) % (largest + 1)


def _holes(rng: np.random.Generator, side: int, count_max: int, size_min: int, size_max: int):
    """albumentations 1.4.18 CoarseDropout: 1..count_max holes, sides in [size_min, size_max], inside the view."""
    size_max = min(size_max, side)
    size_min = min(size_min, size_max)
    holes = []
    for _ in range(int(rng.integers(1, count_max + 1))):
        hh, ww = int(rng.integers(size_min, size_max + 1)), int(rng.integers(size_min, size_max + 1))
        holes.append((int(rng.integers(0, side - hh + 1)), int(rng.integers(0, side - ww + 1)), hh, ww))
    return holes


def augment(image: np.ndarray, labels: np.ndarray, settings: DiffusionSettings, rng: np.random.Generator,
            keep_class: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One random view of a reference in model space.

    image: `(H, W, 3)` float32 in [0, 1]; labels: `(H, W)` uint8 class ids; `keep_class` is the class the
    crop must keep (the learner cycles it over background and parts, as the authors' dataset does).
    Returns `(R, R, 3)` float32 and `(R, R)` uint8 with R = `settings.resolution`.
    """
    s = settings
    side = s.resolution
    image, labels = to_model_space(image, labels, side)
    if rng.random() < s.aug_zoom_out:
        scale = float(rng.uniform(s.aug_zoom_min, s.aug_zoom_max))
        free = side - int(side * scale)
        image, labels = zoom_out(image, labels, scale, int(rng.integers(0, free + 1)), int(rng.integers(0, free + 1)))
    if rng.random() < s.aug_blur:
        image = blur(image, _blur_kernel(rng, s.aug_blur_max))
    if rng.random() < s.aug_dropout:
        px = side / OFFICIAL_SIDE
        sizes = max(1, round(s.aug_dropout_min * px)), max(1, round(s.aug_dropout_max * px))
        image, labels = dropout(image, labels, _holes(rng, side, s.aug_dropout_holes, *sizes))
    if rng.random() < s.aug_flip:
        image, labels = image[:, ::-1], labels[:, ::-1]
    if rng.random() < s.aug_crop:
        y0, x0, c = crop_box(labels, keep_class, s.aug_min_crop, s.aug_crop_keep, rng)
        if c != side:
            image = cv2.resize(np.ascontiguousarray(image[y0 : y0 + c, x0 : x0 + c]), (side, side),
                               interpolation=cv2.INTER_LINEAR)
            labels = cv2.resize(np.ascontiguousarray(labels[y0 : y0 + c, x0 : x0 + c]), (side, side),
                                interpolation=cv2.INTER_NEAREST)
    if s.aug_rotate > 0 and rng.random() < s.aug_rotate_p:
        image, labels = rotate(np.ascontiguousarray(image), np.ascontiguousarray(labels),
                               float(rng.uniform(-s.aug_rotate, s.aug_rotate)))
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(labels, np.uint8)
