"""SMITE's hierarchical pass, tiling and the official preset: known answers from the authors' code.

References are to alimohammadiamirhossein/smite @7ecfff7 (file:line).
"""

from __future__ import annotations

import os
import types

import numpy as np
import pytest
import torch

from smite.method.crops import (
    combine_tiles, crop_image, is_high_aspect, paste_maps, square_crop, subject_box, tile_layout, tile_rect,
)
from smite.model.settings import PRESETS, DiffusionSettings

CHAIR = os.path.join(os.path.dirname(__file__), "data", "chair")


def _mask(h, w, rows, cols):
    m = np.zeros((h, w), bool)
    m[rows, cols] = True
    return m


def test_subject_box_margin_is_4_percent_of_the_box_not_the_frame():
    """hierarchical_segmentation.py:149-160: min/max index, grown by int(0.04·(max - min)) per side.

    Foreground rows 10..59, columns 20..119 of a 100x200 frame: int(0.04·49) = 1 row and
    int(0.04·99) = 3 columns, so (10-1, 59+1, 20-3, 119+3) = (9, 60, 17, 122). (4% of the frame
    side would be int(0.04·100) = 4 rows and int(0.04·200) = 8 columns.)
    """
    assert subject_box(_mask(100, 200, slice(10, 60), slice(20, 120)), 0.04) == (9, 60, 17, 122)
    # margin 0: the max row/column itself is the exclusive end (l.163), as theirs
    assert subject_box(_mask(100, 200, slice(10, 60), slice(20, 120)), 0.0) == (10, 59, 20, 119)
    # clipped to the frame (l.157-160): rows 0..99 -> int(0.04·99) = 3 each side, clipped to 0 and 100
    assert subject_box(_mask(100, 200, slice(0, 100), slice(150, 200)), 0.04) == (0, 100, 149, 200)


def test_fewer_than_3_foreground_pixels_is_the_whole_frame():
    """hierarchical_segmentation.py:140-144: `indices.size < 5` on argwhere's (N, 2) array, i.e. N <= 2."""
    two = _mask(50, 80, [5, 40], [7, 70])
    assert subject_box(two, 0.04) == (0, 50, 0, 80)
    three = _mask(50, 80, [5, 40, 20], [7, 70, 30])
    assert subject_box(three, 0.04) == (4, 41, 5, 72)  # (5-1, 40+1, 7-2, 70+2): int(0.04·35) = 1, int(0.04·63) = 2
    assert subject_box(np.zeros((50, 80), bool), 0.04) == (0, 50, 0, 80)
    # a one-row subject would crop to nothing in theirs (l.163); we keep one row
    assert subject_box(_mask(50, 80, [9, 9, 9], [10, 11, 12]), 0.04) == (9, 10, 10, 12)


def test_paste_stretches_the_crop_maps_into_the_box_and_background_outside():
    """hierarchical_segmentation.py:111-117: bilinear to the box size; outside, class 0 = fill, others 0."""
    maps = torch.zeros(2, 3, 4, 4)
    maps[:, 2] = 7.0
    maps[1, 1] = 9.0
    boxes = [(2, 6, 3, 11), (0, 10, 0, 20)]
    out = paste_maps(maps, boxes, (10, 20), fill=9.0)
    assert out.shape == (2, 3, 10, 20)
    inside = np.zeros((10, 20), bool)
    inside[2:6, 3:11] = True
    torch.testing.assert_close(out[0, :, inside], torch.tensor([0.0, 0.0, 7.0])[:, None].expand(3, int(inside.sum())))
    torch.testing.assert_close(out[0, :, ~inside], torch.tensor([9.0, 0.0, 0.0])[:, None].expand(3, int((~inside).sum())))
    assert out[1].argmax(0).eq(1).all()  # the whole-frame box covers everything


def test_official_face_tiles_are_2x2_of_450_px_at_0_and_62():
    """utils/image_processing.py:318-333 with utils/setup.py:134-135 and run.py:92: size 512, patch 450,
    2 per side: step (512 - 450) // 1 = 62, tiles rows first."""
    assert tile_layout(512, 450, 2) == [(0, 450, 0, 450), (0, 450, 62, 512), (62, 512, 0, 450), (62, 512, 62, 512)]
    assert tile_layout(512, 450, 1) == [(0, 512, 0, 512)]
    # 4 per side: step 62 // 3 = 20; the last tile sits flush with the edge (theirs would stop at 510)
    assert [t[0] for t in tile_layout(512, 450, 4)[::4]] == [0, 20, 40, 62]
    settings = DiffusionSettings(tiles=2)
    assert tile_layout(settings.resolution, settings.tile_px, settings.tiles)[3] == (62, 512, 62, 512)
    assert DiffusionSettings(resolution=64).tile_px == 56  # 450 · 64 / 512 = 56.25


def test_tile_maps_are_averaged_where_tiles_overlap():
    """was_attention.py:317-368: each tile's map written on its region, summed, divided by the cover count."""
    layout = tile_layout(512, 450, 2)
    values = [1.0, 2.0, 4.0, 8.0]
    maps = [torch.full((1, 2, 8, 8), v) for v in values]
    out = combine_tiles(maps, layout, 512)[0, 0]
    assert float(out[0, 0]) == 1.0  # tile 0 only
    assert float(out[0, 511]) == 2.0  # tile 1 only
    assert float(out[511, 0]) == 4.0  # tile 2 only
    assert float(out[300, 30]) == pytest.approx((1.0 + 4.0) / 2)  # tiles 0 and 2
    assert float(out[100, 100]) == pytest.approx(sum(values) / 4)  # all four
    assert float(out[449, 62]) == pytest.approx(sum(values) / 4) and float(out[450, 62]) == pytest.approx(6.0)


def test_tile_rect_and_crop_image_map_model_pixels_to_the_plate():
    # tile (62, 512, 0, 450) of a crop box rows 10..42, columns 0..64 of a 43x64 grid
    rect = tile_rect((10, 42, 0, 64), (62, 512, 0, 450), 512)
    assert rect == pytest.approx((10 + 62 / 16, 42, 0, 450 / 8))
    image = np.arange(86 * 128, dtype=np.float32).reshape(86, 128, 1)
    crop = crop_image(image, (10, 20, 8, 16), (43, 64))  # grid -> plate: x2 both ways
    assert crop.shape == (20, 16, 1) and crop[0, 0, 0] == image[20, 16, 0]


def test_high_aspect_square_crop_known_answers():
    """src/hierarchical_segmentation.py:83 (aspect > 1.5) and 208-292: a square of the short side,
    centred on the foreground's int(mean) pixel, slid inside the frame; kept (None) when the subject
    is taller than the side, or wider and fills more than half its (max - min) box (l.238)."""
    assert is_high_aspect((100, 151)) and is_high_aspect((151, 100)) and not is_high_aspect((100, 150))
    # 40x120: rows 5..14, columns 50..59 -> centre (int 9.5, int 54.5) = (9, 54): columns 54 - 20 = 34 on
    assert square_crop(_mask(40, 120, slice(5, 15), slice(50, 60))) == (0, 40, 34, 74)
    assert square_crop(_mask(40, 120, slice(5, 15), slice(110, 120))) == (0, 40, 80, 120)  # slid inside
    assert square_crop(np.zeros((40, 120), bool)) == (0, 40, 40, 80)  # no foreground: the centre
    assert square_crop(_mask(40, 120, slice(0, 40), slice(0, 60))) is None  # 59 > 40 wide and full
    # wide but sparse: 3 pixels in a 39x100 box fill < 0.5 -> cropped at (int 13, int 50)
    assert square_crop(_mask(40, 120, [0, 0, 39], [0, 100, 50])) == (0, 40, 30, 70)
    # portrait 120x40: a subject taller than the width (59 > 40) keeps the first maps, as theirs
    assert square_crop(_mask(120, 40, slice(0, 60), slice(10, 20))) is None
    assert square_crop(_mask(120, 40, slice(50, 60), slice(10, 20))) == (34, 74, 0, 40)


def test_official_preset_is_the_authors_shipped_inference():
    """The values of their scripts: every scripts/configs/*.sh sets regularization_weight=0 and
    track_weight=0 (e.g. car.sh, face.sh, last lines); scripts/parser/parse_args_inference.sh:13
    hierarchical_segmentation="true"; with both weights 0 src/inference.py:84 cuts windows of 18
    with overlap 0 and l.203-204 returns the reference pass."""
    official = DiffusionSettings.from_dict({"preset": "official"})
    assert (official.lambda_track, official.lambda_reg, official.window, official.overlap, official.hierarchical) == \
        (0.0, 0.0, 18, 0, True)
    default = DiffusionSettings()
    assert (default.lambda_track, default.lambda_reg, default.window, default.overlap) == (1.0, 8.0, 16, 8)
    assert set(PRESETS["official"]) == {"lambda_track", "lambda_reg", "window", "overlap", "hierarchical"}
    face = DiffusionSettings.from_dict({"preset": "official-face"})
    assert face == official.replace(tiles=2, tile_side=450)  # utils/setup.py:134-135, run.py:92
    # explicit values win over the preset's; the saved form holds values, not the preset's name
    mixed = DiffusionSettings.from_dict({"preset": "official", "window": 12})
    assert mixed.window == 12 and mixed.lambda_reg == 0.0 and "preset" not in mixed.to_dict()
    assert DiffusionSettings.from_dict(mixed.to_dict()) == mixed
    from smite.errors import BadInputError

    with pytest.raises(BadInputError, match="unknown diffusion preset 'paper'"):
        DiffusionSettings.from_dict({"preset": "paper"})


def test_segment_cli_preset_flag_and_set(tmp_path):
    import argparse

    from smite.cli.segment import add_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--shot", "s.json", "--out", "o.####.exr"]
    args = parser.parse_args(base + ["--preset", "official", "--set", "diffusion.overlap=2"])
    d = settings_from_args(args).diffusion
    assert (d.lambda_track, d.lambda_reg, d.window, d.overlap) == (0.0, 0.0, 18, 2)
    assert settings_from_args(parser.parse_args(base)).diffusion == DiffusionSettings()
    via_set = settings_from_args(parser.parse_args(base + ["--set", "diffusion.preset=official"])).diffusion
    settings_file = tmp_path / "s.json"
    settings_file.write_text('{"diffusion": {"preset": "official"}}')
    via_json = settings_from_args(parser.parse_args(base + ["--settings", str(settings_file)])).diffusion
    assert via_set == via_json == DiffusionSettings.from_dict({"preset": "official"})


class _FakeSegmenter:
    """Stands in for WindowSegmenter: the coarse pass (temporal=False) sees the subject in a fixed
    rectangle of the output grid; the main pass says "part 2" everywhere in what it is given."""

    calls: list = []
    grid = (43, 64)
    subject = (slice(10, 30), slice(20, 45))

    def __init__(self, backbone, context, classes, settings, *, tracker, temporal=True, **kwargs):
        self.temporal, self.classes = temporal, classes

    def __call__(self, frames, seed, carried=None):
        from smite.method.segment import WindowResult

        type(self).calls.append((self.temporal, [f.shape for f in frames], sorted(carried or {})))
        t = len(frames)
        if not self.temporal:
            s = torch.zeros(t, self.classes, *self.grid)
            s[:, 0] = 1.0
            s[:, 1, self.subject[0], self.subject[1]] = 2.0
        else:
            s = torch.zeros(t, self.classes, 8, 8)
            s[:, 2] = 5.0
        return WindowResult(probs=s.softmax(1), maps=s.flatten(2).transpose(1, 2))


def test_main_pass_runs_on_each_frames_crop_and_is_pasted_back(monkeypatch):
    """The coarse pass is reference-only on 18-frame windows (inference.py:84, hierarchical l.66); the
    main pass gets each frame's crop (l.163); its maps are pasted in the box, background outside (l.116-117)."""
    import smite.backends.diffusion as diffusion
    import smite.method.pipeline as pipeline
    from smite.config import Settings
    from smite.frames import FrameSource
    from smite.model.parts import PartModel

    monkeypatch.setattr(pipeline, "WindowSegmenter", _FakeSegmenter)
    _FakeSegmenter.calls = []
    backbone = types.SimpleNamespace(unet=torch.nn.Linear(1, 1), hash="fake")
    parts = PartModel(parts=("a", "b"), context=torch.zeros(3, 4), backbone_hash="fake", settings={}, kv_deltas={})
    s = DiffusionSettings(resolution=64, window=4, overlap=2, coarse_window=18)
    backend = diffusion.DiffusionBackend(Settings(backend="diffusion"), s, backbone=backbone, part_model=parts)
    source = FrameSource(os.path.join(CHAIR, "frames", "%05d.jpg"), list(range(12)), "sRGB - Texture")
    state = backend.init_state(source, ("a", "b"))
    out = dict(backend.propagate(state))
    assert sorted(out) == list(range(12))
    coarse = [c for c in _FakeSegmenter.calls if not c[0]]
    main = [c for c in _FakeSegmenter.calls if c[0]]
    assert [len(c[1]) for c in coarse] == [12]  # one coarse window: the 12 frames (< 18), computed once
    # the subject is rows 10..29, columns 20..44: margin int(0.04·19) = 0, int(0.04·24) = 0 -> box (10, 29, 20, 44)
    box = np.zeros((43, 64), bool)
    box[10:29, 20:44] = True
    plate_h, plate_w = source.size
    crop = (round(29 * plate_h / 43) - round(10 * plate_h / 43), round(44 * plate_w / 64) - round(20 * plate_w / 64))
    assert all(shape[:2] == crop for c in main for shape in c[1])
    for probs in out.values():
        assert probs.shape == (3, 43, 64)
        assert np.array_equal(probs.argmax(0) == 2, box) and np.array_equal(probs.argmax(0) == 0, ~box)
        np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    # crop_margin acts: 0.3 of the box is int(0.3·19) = 5 rows and int(0.3·24) = 7 columns more each side
    backend = diffusion.DiffusionBackend(Settings(backend="diffusion"), s.replace(crop_margin=0.3), backbone=backbone,
                                         part_model=parts)
    wide = dict(backend.propagate(backend.init_state(source, ("a", "b")), [0]))[0]
    box[:] = False
    box[5:34, 13:51] = True
    assert np.array_equal(wide.argmax(0) == 2, box)


def test_high_aspect_plate_gets_a_square_crop_coarse_pass(monkeypatch, tmp_path):
    """On a 3:1 plate the coarse foreground comes from a second reference pass on each frame's square
    crop (hierarchical l.83-84, 318-331): here that pass says "subject" on the whole crop, so the box
    becomes the crop's (0, 43, 33, 76) grown by 4%; with high_aspect off it stays the first subject's box."""
    import cv2

    import smite.backends.diffusion as diffusion
    import smite.method.pipeline as pipeline
    from smite.config import Settings
    from smite.frames import FrameSource
    from smite.method.segment import WindowResult
    from smite.model.parts import PartModel

    for f in range(3):
        cv2.imwrite(str(tmp_path / f"w.{f:04d}.png"), np.full((60, 180, 3), 40 * f, np.uint8))

    class Fake(_FakeSegmenter):
        grid = (43, 128)
        subject = (slice(10, 30), slice(40, 70))  # centre (int 19.5, int 54.5) -> crop columns 54 - 21 = 33..76

        def __call__(self, frames, seed, carried=None):
            if not self.temporal and self.calls and not self.calls[-1][0]:  # the square-crop pass
                type(self).calls.append((False, [f.shape for f in frames]))
                s = torch.zeros(len(frames), self.classes, 8, 8)
                s[:, 1] = 1.0
                return WindowResult(probs=s.softmax(1), maps=s.flatten(2).transpose(1, 2))
            return super().__call__(frames, seed, carried)

    monkeypatch.setattr(pipeline, "WindowSegmenter", Fake)
    backbone = types.SimpleNamespace(unet=torch.nn.Linear(1, 1), hash="fake")
    parts = PartModel(parts=("a", "b"), context=torch.zeros(3, 4), backbone_hash="fake", settings={}, kv_deltas={})
    source = FrameSource(str(tmp_path / "w.####.png"), [0, 1, 2], "sRGB - Texture")
    boxes = {}
    for high_aspect in (True, False):
        Fake.calls = []
        s = DiffusionSettings(resolution=128, window=3, overlap=1, high_aspect=high_aspect)
        backend = diffusion.DiffusionBackend(Settings(backend="diffusion"), s, backbone=backbone, part_model=parts)
        out = dict(backend.propagate(backend.init_state(source, ("a", "b"))))
        assert [len(c[1]) for c in Fake.calls if not c[0]] == ([3, 3] if high_aspect else [3])
        ys, xs = np.nonzero(out[1].argmax(0) == 2)
        boxes[high_aspect] = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
    # crop rows 0..42, columns 33..75: int(0.04·42) = 1 each side, max + 1 as the end -> (0, 43, 32, 76)
    assert boxes[True] == (0, 43, 32, 76)
    # first subject rows 10..29, columns 40..69: int(0.04·19) = 0, int(0.04·29) = 1 -> (10, 29, 39, 70)
    assert boxes[False] == (10, 29, 39, 70)


def test_tiles_each_run_the_main_pass_with_their_own_carry(monkeypatch):
    """tiles=2 at resolution 64: tile 56 px (450·64/512), step 8; each tile crops 56/64 of the frame
    (210x315 of the 240x360 plate) and carries its own maps into the next window (slicing.py:49-56
    runs every crop through its own windows)."""
    import smite.backends.diffusion as diffusion
    import smite.method.pipeline as pipeline
    from smite.config import Settings
    from smite.frames import FrameSource
    from smite.model.parts import PartModel

    monkeypatch.setattr(pipeline, "WindowSegmenter", _FakeSegmenter)
    _FakeSegmenter.calls = []
    backbone = types.SimpleNamespace(unet=torch.nn.Linear(1, 1), hash="fake")
    parts = PartModel(parts=("a", "b"), context=torch.zeros(3, 4), backbone_hash="fake", settings={}, kv_deltas={})
    s = DiffusionSettings(resolution=64, window=4, overlap=2, hierarchical=False, tiles=2)
    backend = diffusion.DiffusionBackend(Settings(backend="diffusion"), s, backbone=backbone, part_model=parts)
    source = FrameSource(os.path.join(CHAIR, "frames", "%05d.jpg"), list(range(6)), "sRGB - Texture")
    out = dict(backend.propagate(backend.init_state(source, ("a", "b"))))
    assert sorted(out) == list(range(6)) and all((p.argmax(0) == 2).all() for p in out.values())
    calls = _FakeSegmenter.calls
    assert len(calls) == 8 and all(shape == (210, 315, 3) for c in calls for shape in c[1])
    assert [c[2] for c in calls] == [[]] * 4 + [[0, 1]] * 4  # windows [0-3], [2-5]: frames 2, 3 carried per tile


def test_the_video_loop_runs_on_plain_arrays_and_stops_after_the_last_wanted_frame(monkeypatch):
    """`method.pipeline.segment_video` needs no backend or files: any object with plate, frame_numbers,
    size and get. Windows [0-3], [2-5], [4-7], [6-9]: frame 1 is finished by the first window, frame 2 by
    the second (which gets frames 2, 3 carried); the loop stops there."""
    import smite.method.pipeline as pipeline

    class Video:
        plate, frame_numbers, size = "arrays", list(range(10)), (40, 60)

        def get(self, frame):
            return np.full((40, 60, 3), frame / 10, np.float32)

    monkeypatch.setattr(pipeline, "WindowSegmenter", _FakeSegmenter)
    _FakeSegmenter.calls = []
    s = DiffusionSettings(resolution=64, window=4, overlap=2, hierarchical=False)
    out = list(pipeline.segment_video(None, torch.zeros(3, 4), 3, Video(), [2, 1], s, temporal=True, tracker=None,
                                      vote_frames=15, seed=0))
    assert [f for f, _ in out] == [1, 2]
    assert [len(c[1]) for c in _FakeSegmenter.calls] == [4, 4] and [c[2] for c in _FakeSegmenter.calls] == [[], [0, 1]]
    assert all(p.shape == (3, 43, 64) and (p.argmax(0) == 2).all() for _, p in out)
