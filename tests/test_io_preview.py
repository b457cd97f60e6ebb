"""Contact sheet: size, overlay colours where a part is certain, legend row."""

import os

import numpy as np
import pytest

from smite.errors import BadInputError
from smite.io.image import image_size, read_image
from smite.io.preview import LEGEND_HEIGHT, OVERLAY_OPACITY, overlay_parts, part_colours, write_contact_sheet


def _tile(frame, h=60, w=80):
    rgb = np.full((h, w, 3), 0.5, np.float32)
    probs = np.zeros((2, h, w), np.float32)
    probs[0, :, : w // 2] = 1.0  # part 0 covers the left half
    return frame, rgb, probs


def test_overlay_blends_at_opacity():
    colours = part_colours(2)
    rgb = np.full((4, 4, 3), 0.5, np.float32)
    probs = np.zeros((2, 4, 4), np.float32)
    probs[1, 0, 0] = 1.0
    out = overlay_parts(rgb, probs, colours, outline=False)
    assert np.allclose(out[0, 0], 0.5 * (1 - OVERLAY_OPACITY) + colours[1] * OVERLAY_OPACITY)
    assert np.allclose(out[3, 3], 0.5)


def test_colours_are_distinct():
    for count in (3, 10, 14):
        colours = part_colours(count)
        assert colours.shape == (count, 3)
        assert len({tuple(np.round(c, 3)) for c in colours}) == count


def test_contact_sheet_size_and_content(tmp_path):
    path = str(tmp_path / "sheet" / "contact.png")
    tiles = [_tile(f) for f in (1001, 1002, 1003, 1004, 1005)]
    write_contact_sheet(path, tiles, ["hat", "coat"], columns=2, tile_width=40)
    tile_h = 30  # 60 x 80 scaled to 40 wide
    assert image_size(path) == (2 * 40, 3 * tile_h + LEGEND_HEIGHT)
    sheet = read_image(path)
    assert sheet.shape[2] == 3
    expected = 0.5 * (1 - OVERLAY_OPACITY) + part_colours(2)[0] * OVERLAY_OPACITY
    assert np.allclose(sheet[tile_h - 3, 5], expected, atol=2 / 255)  # inside part 0, away from text/outline
    assert np.allclose(sheet[tile_h - 3, 35], 0.5, atol=2 / 255)  # no part here
    assert sheet[3 * tile_h :].max() > 0.5  # the legend row holds something drawn
    assert os.listdir(os.path.dirname(path)) == ["contact.png"]


def test_fewer_tiles_than_columns(tmp_path):
    path = str(tmp_path / "c.png")
    write_contact_sheet(path, [_tile(1)], ["a", "b"], tile_width=64)
    assert image_size(path) == (64, 48 + LEGEND_HEIGHT)


def test_bad_tiles_are_refused(tmp_path):
    with pytest.raises(BadInputError, match="no frames"):
        write_contact_sheet(str(tmp_path / "c.png"), [], ["a"])
    frame, rgb, probs = _tile(7)
    with pytest.raises(BadInputError, match="frame 7"):
        write_contact_sheet(str(tmp_path / "c.png"), [(frame, rgb, probs[:1])], ["a", "b"])
