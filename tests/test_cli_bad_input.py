"""Bad input: one clear line naming the file/frame/part, a non-zero exit, nothing half-written."""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from smite.cli.main import main
from smite.errorcodes import EXIT_BAD_INPUT
from smite.io.image import write_image


def run_cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if line.startswith("smite: error")]


def segment(shot, out, capsys, *extra):
    return run_cli(["segment", "--shot", str(shot), "--out", str(out), "--quiet", *extra], capsys)


def assert_bad(code, errors, *needles):
    assert code == EXIT_BAD_INPUT
    assert len(errors) == 1, errors
    for needle in needles:
        assert needle in errors[0], errors[0]


def no_outputs(folder):
    return not glob.glob(os.path.join(folder, "*.exr")) and not glob.glob(os.path.join(folder, ".*tmp*"))


def test_missing_frame_names_it(make_shot, chair_dir, tmp_path, capsys):
    shot = make_shot(frames="55-62", references=[{"frame": 55, "labels": str(chair_dir / "masks" / "00055.png")}])
    code, errors = segment(shot, tmp_path / "out" / "m.####.exr", capsys)
    assert_bad(code, errors, "missing frame 60", "00060.jpg")


def test_unreadable_frame_names_it(make_shot, chair_dir, tmp_path, capsys):
    plate = tmp_path / "plate"
    shutil.copytree(chair_dir / "frames", plate)
    (plate / "00003.jpg").write_bytes(b"not a jpeg")
    shot = make_shot(plate=str(plate / "%05d.jpg"))
    code, errors = segment(shot, tmp_path / "out" / "m.####.exr", capsys)
    assert_bad(code, errors, "00003.jpg")


@pytest.mark.parametrize("field", ["plate", "frames", "parts", "references"])
def test_manifest_missing_field(make_shot, tmp_path, capsys, field):
    shot = make_shot(**{field: None})
    code, errors = segment(shot, tmp_path / "out" / "m.####.exr", capsys)
    assert_bad(code, errors, f"missing field '{field}'", "shot.json")


def test_unknown_part_in_masks(make_shot, chair_dir, tmp_path, capsys):
    shot = make_shot(references=[{"frame": 0, "masks": {"table": str(chair_dir / "masks" / "00000.png")}}])
    code, errors = segment(shot, tmp_path / "out" / "m.####.exr", capsys)
    assert_bad(code, errors, "unknown part 'table'")


def test_label_id_without_part(make_shot, chair_dir, tmp_path, capsys):
    labels = np.array(Image.open(chair_dir / "masks" / "00000.png"))
    labels[:10, :10] = 2
    path = tmp_path / "labels.png"
    Image.fromarray(labels.astype(np.uint8)).save(path)
    shot = make_shot(references=[{"frame": 0, "labels": str(path)}])
    code, errors = segment(shot, tmp_path / "out" / "m.####.exr", capsys)
    assert_bad(code, errors, "label id 2", "labels.png")


def test_reference_outside_range(make_shot, chair_dir, tmp_path, capsys):
    shot = make_shot(references=[{"frame": 30, "labels": str(chair_dir / "masks" / "00030.png")}])
    code, errors = segment(shot, tmp_path / "out" / "m.####.exr", capsys)
    assert_bad(code, errors, "reference frame 30 is outside")


def _mask_png(path, size, box=(40, 60, 30, 50)):
    arr = np.zeros((size[1], size[0]), np.uint8)
    y0, y1, x0, x1 = box
    arr[y0:y1, x0:x1] = 255
    Image.fromarray(arr).save(path)
    return str(path)


def test_mask_other_aspect_is_an_error(make_shot, tmp_path, capsys):
    mask = _mask_png(tmp_path / "chair.png", (300, 300))
    shot = make_shot(references=[{"frame": 0, "masks": {"chair": mask}}])
    code, errors = segment(shot, tmp_path / "out" / "m.####.exr", capsys)
    assert_bad(code, errors, "chair.png", "300x300", "360x240")


def test_mask_same_aspect_is_resampled_with_a_warning(make_shot, tmp_path, capsys, caplog):
    mask = _mask_png(tmp_path / "chair.png", (720, 480), box=(80, 120, 60, 100))
    shot = make_shot(frames="0-2", references=[{"frame": 0, "masks": {"chair": mask}}])
    with caplog.at_level("WARNING"):
        code, errors = segment(shot, tmp_path / "out" / "m.####.exr", capsys)
    assert code == 0 and not errors
    assert any("resampling" in r.message for r in caplog.records)
    assert len(glob.glob(str(tmp_path / "out" / "m.*.exr"))) == 3


def test_empty_mask_for_a_part(make_shot, tmp_path, capsys):
    path = tmp_path / "empty.png"
    Image.fromarray(np.zeros((240, 360), np.uint8)).save(path)
    shot = make_shot(references=[{"frame": 0, "masks": {"chair": str(path)}}])
    code, errors = segment(shot, tmp_path / "out" / "m.####.exr", capsys)
    assert_bad(code, errors, "empty", "chair", "frame 0")


def test_nan_pixels_in_plate(make_shot, tmp_path, capsys):
    plate = tmp_path / "plate"
    for f in range(3):
        rgb = np.full((24, 36, 3), 0.5, np.float32)
        if f == 2:
            rgb[5, 5, 1] = np.nan
        write_image(str(plate / f"p.{f:04d}.exr"), rgb, dtype="half")
    mask = _mask_png(tmp_path / "m.png", (36, 24), box=(5, 15, 5, 20))
    shot = make_shot(plate=str(plate / "p.####.exr"), frames="0-2", references=[{"frame": 0, "masks": {"chair": mask}}])
    out = tmp_path / "out"
    code, errors = segment(shot, out / "m.####.exr", capsys)
    assert_bad(code, errors, "non-finite", "p.0002.exr")


def test_output_folder_not_writable(make_shot, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, errors = segment(make_shot(), blocker / "sub" / "m.####.exr", capsys)
    assert_bad(code, errors, "output folder")


def test_output_pattern_without_frame_token(make_shot, tmp_path, capsys):
    code, errors = segment(make_shot(), tmp_path / "out" / "mattes.exr", capsys)
    assert_bad(code, errors, "frame token")
    assert no_outputs(tmp_path / "out")


def test_invalid_json_manifest(tmp_path, capsys):
    path = tmp_path / "shot.json"
    path.write_text('{"plate": ')
    code, errors = segment(path, tmp_path / "out" / "m.####.exr", capsys)
    assert_bad(code, errors, "invalid JSON", "shot.json")


def test_unknown_setting(make_shot, tmp_path, capsys):
    code, errors = segment(make_shot(), tmp_path / "out" / "m.####.exr", capsys, "--set", "colour=red")
    assert_bad(code, errors, "unknown setting 'colour'")
