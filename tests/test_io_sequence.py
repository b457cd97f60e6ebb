"""Frame patterns and ranges: parsing, formatting, substitution and discovery on disk."""

import pytest

from smite.errors import BadInputError, FrameError, OutputError
from smite.io.sequence import (
    check_output_pattern,
    discover_frames,
    find_missing,
    format_frame_range,
    frame_path,
    has_frame_token,
    parse_frame_range,
    require_frames,
)


@pytest.mark.parametrize(
    "spec, frames",
    [
        ("5", [5]),
        ("1001-1005", [1001, 1002, 1003, 1004, 1005]),
        ("1001-1010x3", [1001, 1004, 1007, 1010]),
        ("1-3,7,10-20x5", [1, 2, 3, 7, 10, 15, 20]),
        (" 3-4 , 1 ", [1, 3, 4]),
        ("1-3,2-4", [1, 2, 3, 4]),
    ],
)
def test_parse_frame_range(spec, frames):
    assert parse_frame_range(spec) == frames


@pytest.mark.parametrize("spec", ["", "a-b", "10-5", "1-5x0", "1--5", "1-5x", "-3", "1,,2", "1-3y2"])
def test_parse_frame_range_rejects_bad_specs_naming_them(spec):
    with pytest.raises(BadInputError) as err:
        parse_frame_range(spec)
    assert repr(spec) in str(err.value)


@pytest.mark.parametrize(
    "frames, text",
    [
        ([1, 2, 3, 5], "1-3,5"),
        ([5], "5"),
        ([], ""),
        ([3, 1, 2, 2], "1-3"),
        ([1, 3, 5, 7], "1-7x2"),
        ([1, 3], "1,3"),
        ([1001, 1002, 1010, 1020, 1030, 1031], "1001-1002,1010-1030x10,1031"),
    ],
)
def test_format_frame_range(frames, text):
    assert format_frame_range(frames) == text
    if frames:
        assert parse_frame_range(text) == sorted(set(frames))


def test_tokens_and_padding():
    assert frame_path("/p/plate.####.exr", 7) == "/p/plate.0007.exr"
    assert frame_path("/p/plate.%04d.exr", 1001) == "/p/plate.1001.exr"
    assert frame_path("/p/plate.%d.exr", 7) == "/p/plate.7.exr"
    assert frame_path("/p/plate.@@.exr", 7) == "/p/plate.07.exr"
    assert frame_path("/p/plate.##.exr", 12345) == "/p/plate.12345.exr"
    # A '#' in a folder name does not steal the frame: the last token is the frame.
    assert frame_path("/shots/#12/plate.####.exr", 3) == "/shots/#12/plate.0003.exr"
    assert has_frame_token("a.%04d.exr") and has_frame_token("a.@.exr") and has_frame_token("a.#.exr")
    assert not has_frame_token("/p/plate.exr")


def test_pattern_without_token():
    with pytest.raises(BadInputError, match=r"has no frame token \(use ####, %04d or @\)"):
        frame_path("/p/plate.exr", 1)
    with pytest.raises(OutputError, match="/p/out.exr has no frame token"):
        check_output_pattern("/p/out.exr")


def _touch(folder, *names):
    for name in names:
        (folder / name).write_bytes(b"")


def test_discover_find_missing_require(tmp_path):
    _touch(tmp_path, "plate.1001.exr", "plate.1002.exr", "plate.1005.exr", "plate.12.exr", "plate.1003.exr.tmp", "other.1004.exr")
    pattern = str(tmp_path / "plate.####.exr")
    assert discover_frames(pattern) == [1001, 1002, 1005]
    assert discover_frames(str(tmp_path / "plate.%d.exr")) == [12, 1001, 1002, 1005]
    assert find_missing(pattern, [1001, 1002, 1003, 1004, 1005]) == [1003, 1004]
    require_frames(pattern, [1001, 1002])
    with pytest.raises(FrameError) as err:
        require_frames(pattern, list(range(1001, 1006)))
    message = str(err.value)
    assert message.startswith(f"missing frame 1003: {tmp_path / 'plate.1003.exr'}")
    assert "2 of 5 frames missing" in message and "\n" not in message
    with pytest.raises(FrameError) as err:
        require_frames(pattern, [1004])
    assert str(err.value) == f"missing frame 1004: {tmp_path / 'plate.1004.exr'}"


def test_discover_with_glob_characters_in_folder(tmp_path):
    folder = tmp_path / "shot[1]"
    folder.mkdir()
    _touch(folder, "a.0001.png", "a.0002.png")
    assert discover_frames(str(folder / "a.####.png")) == [1, 2]
