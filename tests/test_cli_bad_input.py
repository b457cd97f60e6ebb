"""Bad input: one clear line naming the file/frame/part, a non-zero exit, nothing half-written."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from smite.cli.main import main
from smite.hostapi.errorcodes import EXIT_BAD_INPUT
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


# --- issue 14: every hostile input is one line, never a traceback ---------------------------------

def one_line(argv, capsys, code=EXIT_BAD_INPUT):
    """Run the CLI; assert exit ``code`` and exactly one line on stderr (usage errors included)."""
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse exits by itself
        got = exc.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert got == code, err
    assert len(err) == 1 and err[0].startswith("smite: "), err
    return err[0]


def seg(shot, out, *extra):
    return ["segment", "--shot", str(shot), "--out", str(out), "--quiet", *extra]


@pytest.mark.parametrize("frames", ["0-100000000", "0-10000000", ""])
def test_huge_or_empty_frame_range_is_one_line(make_shot, tmp_path, capsys, frames):
    line = one_line(seg(make_shot(), tmp_path / "o" / "m.####.exr", "--frames", frames), capsys)
    assert "frame range" in line


def test_deeply_nested_manifest_is_one_line(tmp_path, capsys):
    path = tmp_path / "shot.json"
    path.write_text("[" * 100_000)
    assert "nested too deeply" in one_line(seg(path, tmp_path / "m.####.exr"), capsys)


@pytest.mark.parametrize("flag", ["--shot", "--settings"])
def test_device_file_as_input_is_one_line(make_shot, tmp_path, capsys, flag):
    argv = seg("/dev/zero" if flag == "--shot" else make_shot(), tmp_path / "m.####.exr")
    if flag == "--settings":
        argv += ["--settings", "/dev/zero"]
    assert "/dev/zero is not a regular file" in one_line(argv, capsys)


def test_fifo_as_shot_is_refused_instead_of_blocking(tmp_path, capsys):
    fifo = tmp_path / "shot.json"
    os.mkfifo(fifo)
    assert "is not a regular file" in one_line(seg(fifo, tmp_path / "m.####.exr"), capsys)


def _png_claiming(path, width, height):
    """A valid 4x4 PNG whose IHDR is patched to claim ``width`` x ``height`` (CRC fixed)."""
    import struct
    import zlib

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return str(path)


def test_png_header_claiming_30000x30000_is_refused_before_decoding(make_shot, chair_dir, tmp_path, capsys):
    plate = tmp_path / "plate"
    shutil.copytree(chair_dir / "frames", plate)
    _png_claiming(tmp_path / "bomb.png", 30000, 30000)
    shot = make_shot(frames="0-2", references=[{"frame": 0, "labels": str(tmp_path / "bomb.png")}])
    assert "30000x30000" in one_line(seg(shot, tmp_path / "o" / "m.####.exr"), capsys)
    for f in range(3):
        os.remove(plate / f"{f:05d}.jpg")
        _png_claiming(plate / f"{f:05d}.png", 30000, 30000)
    shot = make_shot(plate=str(plate / "%05d.png"), frames="0-2")
    assert "30000x30000" in one_line(seg(shot, tmp_path / "o" / "m.####.exr"), capsys)


@pytest.mark.parametrize("side", [1, 8])
def test_tiny_plate_is_one_line(make_shot, tmp_path, capsys, side):
    plate = tmp_path / "plate"
    for f in range(3):
        write_image(str(plate / f"{f:05d}.png"), np.full((side, side, 3), 0.5, np.float32), dtype="uint8")
    labels = np.ones((side, side), np.uint8)
    Image.fromarray(labels).save(tmp_path / "l.png")
    shot = make_shot(plate=str(plate / "%05d.png"), frames="0-2", references=[{"frame": 0, "labels": str(tmp_path / "l.png")}])
    assert "at least 16x16" in one_line(seg(shot, tmp_path / "o" / "m.####.exr"), capsys)


@pytest.mark.parametrize("extra, needle", [
    (["--backend", "nope"], "invalid choice: 'nope'"),
    (["--context", "abc"], "invalid int value: 'abc'"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_usage_errors_are_one_line(make_shot, tmp_path, capsys, extra, needle):
    line = one_line(seg(make_shot(), tmp_path / "m.####.exr", *extra), capsys)
    assert needle in line and "--help" in line


@pytest.mark.parametrize("value, needle", [(-1.0, "label id -1"), (1e30, "label id 1e+30"), (0.5, "label id 0.5")])
def test_exr_label_map_with_bad_ids_is_one_line(make_shot, tmp_path, capsys, value, needle):
    labels = np.zeros((240, 360), np.float32)
    labels[60:120, 100:200] = 1
    labels[:4, :4] = value
    write_image(str(tmp_path / "labels.exr"), labels, dtype="float")
    shot = make_shot(frames="0-2", references=[{"frame": 0, "labels": str(tmp_path / "labels.exr")}])
    line = one_line(seg(shot, tmp_path / "o" / "m.####.exr"), capsys)
    assert needle in line and "labels.exr" in line


@pytest.mark.parametrize("settings_text, extra, needle", [
    ("[1, 2]", [], "must hold a JSON object"),
    ('{"diffusion": 5}', [], "'diffusion' must be an object"),
    (None, ["--set", "diffusion=5"], "'diffusion' must be an object"),
])
def test_malformed_settings_are_one_line(make_shot, tmp_path, capsys, settings_text, extra, needle):
    argv = seg(make_shot(), tmp_path / "m.####.exr", *extra)
    if settings_text is not None:
        (tmp_path / "s.json").write_text(settings_text)
        argv += ["--settings", str(tmp_path / "s.json")]
    assert needle in one_line(argv, capsys)


def test_out_that_is_not_an_exr_pattern_is_one_line_and_writes_nothing(make_shot, tmp_path, capsys):
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(b"photo")
    assert "must end in .exr" in one_line(seg(make_shot(frames="0-1"), tmp_path / "IMG_####.jpg"), capsys,
                                          code=EXIT_BAD_INPUT)
    assert photo.read_bytes() == b"photo"


SIGTERM_RUN = r"""
import sys
from smite.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_ends_like_ctrl_c_with_exit_143(make_shot, tmp_path):
    import signal
    import subprocess
    import sys

    shot = make_shot(frames="0-39")
    out = tmp_path / "o" / "m.####.exr"
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_RUN, *seg(shot, out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in proc.stdout:  # wait until a frame is finished
        if line.startswith("PROGRESS") and not line.startswith("PROGRESS 0/"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["smite: terminated; finished frames are kept, run again to resume"]
    folder = tmp_path / "o"
    assert glob.glob(str(folder / "m.*.exr"))  # finished frames kept
    # no temp, no claim left; the scratch cache stays on purpose, for the resumed run
    assert not [n for n in os.listdir(folder) if n.startswith(".") and n != ".smite-scratch"]


def test_native_library_messages_are_folded_into_the_one_line(make_shot, chair_dir, tmp_path):
    """libpng printed its own "libpng error: ..." line before ours (the process's real stderr, fd 2)."""
    import subprocess
    import sys

    plate = tmp_path / "plate"
    plate.mkdir()
    for f in range(3):
        Image.open(chair_dir / "frames" / f"{f:05d}.jpg").save(plate / f"{f:05d}.png")
    data = (plate / "00001.png").read_bytes()
    (plate / "00001.png").write_bytes(data[: len(data) // 3])  # truncated inside the pixel data
    shot = make_shot(plate=str(plate / "%05d.png"), frames="0-2")
    proc = subprocess.run([sys.executable, "-c", SIGTERM_RUN, *seg(shot, tmp_path / "o" / "m.####.exr")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("smite: error: cannot read") and "00001.png" in lines[0], lines


def test_a_command_whose_dependency_is_missing_exits_3_naming_it(monkeypatch, capsys):
    """A broken optional dependency keeps the command a choice: exit 3 naming it, not "invalid choice"."""
    from smite.cli import main as cli

    monkeypatch.setitem(sys.modules, "smite.cli.learn", None)  # import of smite.cli.learn -> ImportError
    assert cli.main(["learn", "--steps", "3"]) == 3
    err = capsys.readouterr().err
    assert "`smite learn` needs smite.cli.learn" in err and "invalid choice" not in err


def test_only_the_typed_command_is_imported():
    """`smite serve` builds only its own subparser: the other commands' modules (torch, OpenCV) stay unimported."""
    code = ("import sys; from smite.cli import main as cli; cli.build_parser('serve'); "
            "print(sorted(m for m in sys.modules if m.startswith('smite.cli.')))")
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.split() == ["['smite.cli.main',", "'smite.cli.serve']"], out.stderr
