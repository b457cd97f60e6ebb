"""Augmentation in model space with the authors' parameters (method.augment).

Facts from alimohammadiamirhossein/smite `utils/dataset.py` (albumentations 1.4.18, requirements.txt):
zoom-out p 0.1 scale U(0.5, 0.8) on a black canvas (lines 55-88, 186-189); Resize 512 then
GaussianBlur(blur_limit=(1, 5)) p 0.5 (117-120); CoarseDropout 1-8 holes of 16-128 px, image and mask
filled with 0, p 0.3 (121-135); HorizontalFlip p 0.5 (137-138); a square crop of side
int(U(min_crop, 1)·512) that keeps > 30% of the step's class (14-25, 193-210); Resize 512 and Rotate
±30° with BORDER_CONSTANT, value 0, mask_value 0, p 0.5 (145-157). min_crop defaults to 0.8 (utils/args.py:36).
"""

from __future__ import annotations

import numpy as np
import pytest

from smite.method.augment import _blur_kernel, augment, blur, crop_box, dropout, rotate, to_model_space
from smite.model.settings import DiffusionSettings

NO_AUG = dict(aug_crop=0.0, aug_rotate=0.0, aug_flip=0.0, aug_blur=0.0, aug_dropout=0.0, aug_zoom_out=0.0)
PLAIN = DiffusionSettings(**NO_AUG)


def _reference(h: int = 300, w: int = 400, seed: int = 0):
    """A textured image (strictly positive) and labels: 1 left half, 2 a block on the right."""
    rng = np.random.default_rng(seed)
    image = (0.2 + 0.8 * rng.random((h, w, 3))).astype(np.float32)
    labels = np.zeros((h, w), np.uint8)
    labels[h // 4 : 3 * h // 4, w // 8 : w // 2] = 1
    labels[h // 3 : 2 * h // 3, 5 * w // 8 : 7 * w // 8] = 2
    return image, labels


def test_official_defaults():
    """The settings' defaults are the authors' numbers (module docstring cites the lines)."""
    s = DiffusionSettings()
    assert (s.aug_crop, s.aug_min_crop, s.aug_crop_keep) == (1.0, 0.8, 0.3)
    assert (s.aug_rotate, s.aug_rotate_p, s.aug_flip) == (30.0, 0.5, 0.5)
    assert (s.aug_blur, s.aug_blur_max) == (0.5, 5)
    assert (s.aug_dropout, s.aug_dropout_holes, s.aug_dropout_min, s.aug_dropout_max) == (0.3, 8, 16, 128)
    assert (s.aug_zoom_out, s.aug_zoom_min, s.aug_zoom_max) == (0.1, 0.5, 0.8)


def test_views_are_in_model_space():
    image, labels = _reference()
    img, lab = augment(image, labels, DiffusionSettings(resolution=128), np.random.default_rng(0))
    assert img.shape == (128, 128, 3) and img.dtype == np.float32 and lab.shape == (128, 128)
    base_img, base_lab = augment(image, labels, PLAIN.replace(resolution=128), np.random.default_rng(0))
    ref_img, ref_lab = to_model_space(image, labels, 128)
    np.testing.assert_array_equal(base_img, ref_img)
    np.testing.assert_array_equal(base_lab, ref_lab)


def test_rotation_pads_image_and_labels_with_zero():
    """Rotate(border_mode=BORDER_CONSTANT, value=0, mask_value=0) (utils/dataset.py:149-154): nothing reflected.

    A white, all-part view rotated by 30° has black, background corners; a reflection would copy
    white part pixels there (ours did: ~9% of the view).
    """
    image, labels = np.ones((64, 64, 3), np.float32), np.ones((64, 64), np.uint8)
    img, lab = rotate(image, labels, 30.0)
    corner = (slice(0, 6), slice(0, 6))
    assert np.all(img[corner] == 0.0) and np.all(lab[corner] == 0)
    # everything that came from outside is 0 in both: background pixels are black (up to the blended rim)
    inner = lab[1:-1, 1:-1] == 0
    assert inner.mean() > 0.1 and np.all(img[1:-1, 1:-1][inner] < 0.5)
    # through augment, with only rotation on
    settings = PLAIN.replace(resolution=64, aug_rotate=30.0, aug_rotate_p=1.0)
    for seed in range(5):
        img, lab = augment(image, labels, settings, np.random.default_rng(seed))
        assert (lab == 0).sum() > 0 and np.all(img[lab == 0] < 0.5)


def test_blur_happens_at_model_resolution():
    """GaussianBlur(blur_limit=(1, 5)) runs after A.Resize(512, 512) (utils/dataset.py:117-120).

    A sharp edge in a 2048² plate stays sharp when blurred at 2K and shrunk; blurred at 512² (k 5,
    sigma 1.1) it spreads over 4 columns. albumentations 1.4.18 draws k = randrange(1, 6) and maps even
    k to k + 1, so k in {1, 3, 5} with P 1/5, 2/5, 2/5.
    """
    plate = np.zeros((2048, 2048, 3), np.float32)
    plate[:, 1024:] = 1.0
    labels = np.zeros((2048, 2048), np.uint8)
    base, _ = to_model_space(plate, labels, 512)
    settings = PLAIN.replace(aug_blur=1.0)
    kernels = set()
    for seed in range(12):
        img, _ = augment(plate, labels, settings, np.random.default_rng(seed))
        k = next(k for k in (1, 3, 5) if np.allclose(img, blur(base, k)))
        kernels.add(k)
        if k == 5:
            row = img[256, :, 0]
            assert ((row > 0.01) & (row < 0.99)).sum() == 4
    assert kernels == {1, 3, 5}
    native = to_model_space(blur(plate, 5), labels, 512)[0][256, :, 0]  # what blurring the plate gave
    assert ((native > 0.01) & (native < 0.99)).sum() <= 2
    draws = np.bincount([_blur_kernel(np.random.default_rng(i), 5) for i in range(5000)], minlength=6)[1::2] / 5000
    np.testing.assert_allclose(draws, [0.2, 0.4, 0.4], atol=0.03)


def test_dropout_zeroes_the_labels_under_the_holes():
    """CoarseDropout(fill_value=0, mask_fill_value=0), 1-8 holes of 16-128 px (utils/dataset.py:121-135)."""
    image, labels = np.full((32, 32, 3), 0.5, np.float32), np.ones((32, 32), np.uint8)
    img, lab = dropout(image, labels, [(2, 3, 4, 5)])
    assert np.all(img[2:6, 3:8] == 0.0) and np.all(lab[2:6, 3:8] == 0)
    assert (lab == 0).sum() == 20 and (img == 0).all(-1).sum() == 20
    # through augment at 512²: holes blank image and labels together; hole sides within 16..128 px
    image, labels = np.full((512, 512, 3), 0.5, np.float32), np.ones((512, 512), np.uint8)
    settings = PLAIN.replace(aug_dropout=1.0)
    for seed in range(6):
        img, lab = augment(image, labels, settings, np.random.default_rng(seed))
        black = (img == 0).all(-1)
        np.testing.assert_array_equal(black, lab == 0)
        assert 16 * 16 <= black.sum() <= 8 * 128 * 128
        assert np.all(img[~black] == 0.5)


def test_crop_keeps_more_than_30_percent_of_the_class():
    """Crops of side int(U(0.8, 1)·512) are redrawn until > 30% of the class stays (utils/dataset.py:193-210)."""
    labels = np.zeros((512, 512), np.uint8)
    labels[0:40, 0:40] = 1  # a small part in a corner: most crops lose most of it
    kept = []
    for seed in range(200):
        y0, x0, side = crop_box(labels, 1, 0.8, 0.3, np.random.default_rng(seed))
        assert int(0.8 * 512) <= side <= 512 and 0 <= y0 <= 512 - side and 0 <= x0 <= 512 - side
        kept.append((labels[y0 : y0 + side, x0 : x0 + side] == 1).mean() * side * side / 1600)
    assert min(kept) > 0.3
    unconstrained = [crop_box(labels, 1, 0.8, 0.0, np.random.default_rng(s)) for s in range(200)]
    assert min((labels[y : y + c, x : x + c] == 1).sum() / 1600 for y, x, c in unconstrained) < 0.3
    # a class absent from the view accepts any crop
    assert crop_box(labels, 2, 0.8, 0.3, np.random.default_rng(0))[2] >= int(0.8 * 512)


def test_zoom_out_shrinks_onto_black():
    """zoom_out: image scaled by U(0.5, 0.8) onto a zero canvas of its size, mask too (utils/dataset.py:55-88)."""
    image, labels = np.full((256, 256, 3), 0.7, np.float32), np.ones((256, 256), np.uint8)
    settings = PLAIN.replace(resolution=256, aug_zoom_out=1.0)
    for seed in range(5):
        img, lab = augment(image, labels, settings, np.random.default_rng(seed))
        ys, xs = np.nonzero(lab)
        side = ys.max() - ys.min() + 1
        assert int(0.5 * 256) <= side <= int(0.8 * 256) and xs.max() - xs.min() + 1 == side
        np.testing.assert_array_equal((img == 0).all(-1), lab == 0)


ON = dict(aug_crop=1.0, aug_rotate_p=1.0, aug_flip=1.0, aug_blur=1.0, aug_dropout=1.0, aug_zoom_out=1.0)
# (setting, value, settings it is changed from): every setting changes the view
CHANGES = [
    ("aug_crop", 1.0, {}),
    ("aug_min_crop", 0.5, {"aug_crop": 1.0, "aug_min_crop": 1.0}),
    ("aug_crop_keep", 0.9, {"aug_crop": 1.0, "aug_min_crop": 0.5}),
    ("aug_rotate", 30.0, {"aug_rotate_p": 1.0}),
    ("aug_rotate_p", 1.0, {"aug_rotate": 30.0, "aug_rotate_p": 0.0}),
    ("aug_flip", 1.0, {}),
    ("aug_blur", 1.0, {}),
    ("aug_blur_max", 3, {"aug_blur": 1.0}),
    ("aug_dropout", 1.0, {}),
    ("aug_dropout_holes", 1, {"aug_dropout": 1.0}),
    ("aug_dropout_min", 64, {"aug_dropout": 1.0}),
    ("aug_dropout_max", 32, {"aug_dropout": 1.0}),
    ("aug_zoom_out", 1.0, {}),
    ("aug_zoom_min", 0.3, {"aug_zoom_out": 1.0}),
    ("aug_zoom_max", 0.95, {"aug_zoom_out": 1.0}),
]


@pytest.mark.parametrize("name,value,start", CHANGES, ids=[c[0] for c in CHANGES])
def test_every_augmentation_setting_changes_the_view(name, value, start):
    image, labels = _reference()
    before = PLAIN.replace(resolution=128, **start)
    after = before.replace(**{name: value})
    changed = False
    for seed in range(4):
        a_img, a_lab = augment(image, labels, before, np.random.default_rng(seed))
        b_img, b_lab = augment(image, labels, after, np.random.default_rng(seed))
        assert b_lab.dtype == np.uint8 and set(np.unique(b_lab)) <= {0, 1, 2}
        changed |= not np.array_equal(a_img, b_img)
    assert changed, name


def test_all_settings_covered_and_json_round_trip():
    names = {f for f in DiffusionSettings.__dataclass_fields__ if f.startswith("aug_")}
    assert names == {c[0] for c in CHANGES}
    s = DiffusionSettings(**ON, aug_min_crop=0.6, aug_rotate=10.0, aug_dropout_holes=4, aug_dropout_max=64)
    assert DiffusionSettings.from_dict(__import__("json").loads(s.to_json())) == s
