"""OpenImageIO reading and atomic writing on small hand-made images."""

import os
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

import smite.io.image as image_module
from smite.errors import FrameError, OutputError
from smite.io.image import image_size, read_image, read_label_map, read_mask, read_rgb, write_image
from conftest import SHARED_DATA

CHAIR_MASK = SHARED_DATA / "pumavos_chair" / "masks" / "00000.png"


def _ramp(h=4, w=5, c=3, seed=0):
    return np.random.default_rng(seed).random((h, w, c), dtype=np.float32)


@pytest.mark.parametrize("ext, dtype, tol", [(".exr", "float", 0.0), (".exr", "half", 1e-3), (".tif", "float", 0.0), (".png", "uint8", 0.5 / 255 + 1e-6), (".dpx", "float", 1.0 / 1023)])
def test_round_trip_formats(tmp_path, ext, dtype, tol):
    pixels = _ramp()
    path = str(tmp_path / f"img{ext}")
    write_image(path, pixels, dtype=dtype)
    back = read_image(path)
    assert back.dtype == np.float32 and back.shape == (4, 5, 3)
    assert np.abs(back - pixels).max() <= tol
    assert image_size(path) == (5, 4)
    assert os.listdir(tmp_path) == [f"img{ext}"]


def test_jpeg_reads_normalised(tmp_path):
    path = str(tmp_path / "grey.jpg")
    write_image(path, np.full((8, 8, 3), 0.5, np.float32), dtype="uint8")
    back = read_rgb(path)
    assert back.shape == (8, 8, 3) and abs(float(back.mean()) - 0.5) < 0.02


def test_read_rgb_grey_and_rgba(tmp_path):
    grey = _ramp(c=1)
    write_image(str(tmp_path / "g.exr"), grey)
    rgb = read_rgb(str(tmp_path / "g.exr"))
    assert rgb.shape == (4, 5, 3) and np.array_equal(rgb[:, :, 2], grey[:, :, 0])
    rgba = _ramp(c=4)
    write_image(str(tmp_path / "a.exr"), rgba, channel_names=["R", "G", "B", "A"])
    assert np.array_equal(read_rgb(str(tmp_path / "a.exr")), rgba[:, :, :3])


def test_read_rgb_rejects_nan(tmp_path):
    pixels = _ramp()
    pixels[1, 2, 0] = np.nan
    path = str(tmp_path / "nan.exr")
    write_image(path, pixels)
    assert np.isnan(read_image(path)).sum() == 1
    with pytest.raises(FrameError, match=r"non-finite pixels \(NaN/inf\) in .*nan\.exr"):
        read_rgb(path)


def test_read_mask_prefers_alpha(tmp_path):
    rgba = _ramp(c=4)
    write_image(str(tmp_path / "m.exr"), rgba, channel_names=["R", "G", "B", "A"])
    assert np.array_equal(read_mask(str(tmp_path / "m.exr")), rgba[:, :, 3])
    single = _ramp(c=1) * 2.0 - 0.5
    write_image(str(tmp_path / "s.exr"), single, channel_names=["Y"])
    assert np.array_equal(read_mask(str(tmp_path / "s.exr")), np.clip(single[:, :, 0], 0, 1))


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(FrameError, match="nope.exr"):
        read_image(str(tmp_path / "nope.exr"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(FrameError, match="bad.png"):
        read_image(str(bad))


def test_read_label_map_palette_png():
    if not CHAIR_MASK.exists():
        pytest.skip("pumavos_chair data not available")
    labels = read_label_map(str(CHAIR_MASK))
    assert labels.dtype == np.int32 and labels.shape == (480, 720)
    assert set(np.unique(labels).tolist()) == {0, 1}
    # OIIO alone expands the palette to colours, which is why PIL reads these files.
    assert read_image(str(CHAIR_MASK)).shape[2] == 3


def test_read_label_map_plain_8bit_keeps_values(tmp_path):
    ids = np.array([[0, 1, 2], [7, 200, 255]], np.uint8)
    write_image(str(tmp_path / "ids.png"), ids, dtype="uint8")
    assert np.array_equal(read_label_map(str(tmp_path / "ids.png")), ids.astype(np.int32))


def test_read_label_map_16bit_tiff_keeps_values(tmp_path):
    ids = np.array([[0, 1, 2], [300, 4000, 65535]], np.uint16)
    write_image(str(tmp_path / "ids.tif"), ids, dtype="uint16")
    assert np.array_equal(read_label_map(str(tmp_path / "ids.tif")), ids.astype(np.int32))


def test_read_label_map_float_exr_rounds(tmp_path):
    write_image(str(tmp_path / "ids.exr"), np.array([[0.0, 1.0], [2.0, 2.9999]], np.float32))
    assert np.array_equal(read_label_map(str(tmp_path / "ids.exr")), [[0, 1], [2, 3]])


def test_write_creates_folder_and_writes_attributes(tmp_path):
    path = tmp_path / "deep" / "er" / "x.exr"
    write_image(str(path), _ramp(), dtype="half", compression="zips", attributes={"smite/job": "j7", "smite/n": 3})
    inp = oiio.ImageInput.open(str(path))
    spec = inp.spec()
    inp.close()
    assert spec.format == oiio.HALF
    assert spec.get_string_attribute("compression") == "zips"
    assert spec.get_string_attribute("smite/job") == "j7" and spec.get_int_attribute("smite/n") == 3


def test_failed_write_leaves_no_temp_file_and_keeps_old_frame(tmp_path, monkeypatch):
    path = tmp_path / "f.exr"
    write_image(str(path), np.zeros((2, 2, 3), np.float32))

    def broken_replace(src, dst):
        assert Path(src).exists() and Path(src).name.startswith(".f.") and src.endswith(".exr")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(image_module.os, "replace", broken_replace)
    with pytest.raises(OutputError, match="f.exr"):
        write_image(str(path), np.ones((2, 2, 3), np.float32))
    assert sorted(os.listdir(tmp_path)) == ["f.exr"]
    assert read_image(str(path)).max() == 0.0


def test_failure_inside_oiio_write_leaves_no_temp_file(tmp_path, monkeypatch):
    def half_written(temp, pixels, spec, path):
        Path(temp).write_bytes(b"partial")
        raise OutputError(f"cannot write {path}: simulated")

    monkeypatch.setattr(image_module, "_write_pixels", half_written)
    with pytest.raises(OutputError, match="simulated"):
        write_image(str(tmp_path / "g.exr"), np.ones((2, 2, 3), np.float32))
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_is_named(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match=str(folder)):
            write_image(str(folder / "x.exr"), np.zeros((2, 2, 3), np.float32))
    finally:
        folder.chmod(0o755)


def test_folder_path_blocked_by_a_file_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(OutputError, match="cannot create output folder .*file/sub"):
        write_image(str(blocker / "sub" / "x.exr"), np.zeros((2, 2, 3), np.float32))


def test_unwritable_folder_is_named_even_as_root(tmp_path, monkeypatch):
    monkeypatch.setattr(image_module.os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match=f"output folder {tmp_path} is not writable"):
        write_image(str(tmp_path / "x.exr"), np.zeros((2, 2, 3), np.float32))
    assert os.listdir(tmp_path) == []


def _write_windowed(path, data, x, y, full):
    """An EXR whose data window (``data`` at x, y) differs from its display window ``full`` (w, h)."""
    h, w = data.shape[:2]
    spec = oiio.ImageSpec(w, h, 1, oiio.FLOAT)
    spec.x, spec.y = x, y
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, full[0], full[1]
    spec.channelnames = ("A",)
    out = oiio.ImageOutput.create(path)
    assert out.open(path, spec) and out.write_image(np.ascontiguousarray(data[:, :, None]))
    out.close()


def test_masks_read_in_the_display_window(tmp_path):
    """A Nuke Write stores the bbox as data window: overscan (feather past the edge) is dropped and a
    bbox inside the frame is padded with 0, so every mask has the format's size and alignment."""
    data = np.arange(48, dtype=np.float32).reshape(6, 8) / 48.0  # covers x -2..5, y 1..6
    path = str(tmp_path / "overscan.exr")
    _write_windowed(path, data, -2, 1, (5, 4))
    expected = np.zeros((4, 5), np.float32)
    expected[1:4, 0:5] = data[0:3, 2:7]
    assert np.array_equal(read_mask(path), expected)
    assert image_size(path) == (5, 4)
    assert read_image(path).shape == (4, 5, 1)

    inside = str(tmp_path / "inside.exr")  # a small bbox within a larger format
    _write_windowed(inside, np.ones((2, 3), np.float32), 4, 2, (10, 6))
    mask = read_mask(inside)
    assert mask.shape == (6, 10) and mask.sum() == 6 and mask[2:4, 4:7].all()

