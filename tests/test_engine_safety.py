"""The engine never overwrites users' files, never trusts a misplaced matte, and shares a folder safely.

Each test is named after a behaviour that failed before issue 14's fix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from smite.config import Settings, load_shot
from smite.engine import job_metadata, segment_shot
from smite.errors import BadInputError, OutputError
from smite.io.guard import Claim, host_name, pattern_key
from smite.io.image import write_image
from smite.io.matte import read_matte


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _frame(out: str, f: int) -> str:
    return out.replace("####", f"{f:04d}")


@pytest.mark.parametrize("pattern", ["IMG_####.jpg", "m.####.png", "m.####.tif", "####/m.exr"])
def test_output_pattern_that_is_not_exr_is_refused(make_shot, tmp_path, pattern):
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(b"my holiday")
    with pytest.raises(OutputError, match="exr|folder"):
        segment_shot(load_shot(str(make_shot(frames="0-2"))), str(tmp_path / pattern), Settings())
    assert photo.read_bytes() == b"my holiday"


def test_existing_file_that_is_not_a_smite_matte_is_never_overwritten(make_shot, tmp_path):
    out = str(tmp_path / "out" / "m.####.exr")
    theirs = _frame(out, 2)
    write_image(theirs, np.full((4, 4, 3), 0.25, np.float32))  # someone's EXR, not a matte
    before = open(theirs, "rb").read()
    with pytest.raises(OutputError, match="m.0002.exr exists and is not a SMITE matte"):
        segment_shot(load_shot(str(make_shot(frames="0-3"))), out, Settings())
    assert open(theirs, "rb").read() == before
    assert sorted(os.listdir(tmp_path / "out")) == ["m.0002.exr"]  # refused before anything was written


def test_preview_never_replaces_the_users_preview(make_shot, tmp_path):
    shot = load_shot(str(make_shot(frames="0-2")))
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "preview.png").write_bytes(b"the user's own preview")
    out = str(folder / "m.####.exr")
    result = segment_shot(shot, out, Settings(), preview=True)
    assert result.preview == str(folder / "m.smite-preview.png")
    assert (folder / "preview.png").read_bytes() == b"the user's own preview"
    segment_shot(shot, out, Settings(), preview=True)  # its own preview is replaced on a re-run
    os.replace(folder / "preview.png", folder / "m.smite-preview.png")
    with pytest.raises(OutputError, match="m.smite-preview.png exists and is not a SMITE preview"):
        segment_shot(shot, out, Settings(), preview=True)
    assert (folder / "m.smite-preview.png").read_bytes() == b"the user's own preview"


def test_resume_redoes_a_matte_copied_over_another_frame(make_shot, tmp_path):
    shot = load_shot(str(make_shot(frames="0-5")))
    out = str(tmp_path / "m.####.exr")
    segment_shot(shot, out, Settings())
    right = read_matte(_frame(out, 5))
    assert right[2]["smite/frame"] == "5" and right[2]["smite/plate_frame"]
    shutil.copyfile(_frame(out, 3), _frame(out, 5))
    result = segment_shot(shot, out, Settings())
    assert result.written == [5] and result.skipped == [0, 1, 2, 3, 4]
    assert np.array_equal(read_matte(_frame(out, 5))[1], right[1])


def test_resume_redoes_a_frame_whose_plate_changed(make_shot, chair_dir, tmp_path):
    plate = tmp_path / "plate"
    shutil.copytree(chair_dir / "frames", plate)
    shot = load_shot(str(make_shot(plate=str(plate / "%05d.jpg"), frames="0-3")))
    out = str(tmp_path / "out" / "m.####.exr")
    segment_shot(shot, out, Settings())
    shutil.copyfile(plate / "00003.jpg", plate / "00002.jpg")  # the plate frame was re-rendered
    assert segment_shot(shot, out, Settings()).written == [2]


def _claim_file(out: str, pid: int, job: str) -> str:
    path = os.path.join(os.path.dirname(out), f".smite-{pattern_key(out)}.{host_name()}.{pid}.lock")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(path, "w") as handle:
        json.dump({"job": job, "host": host_name(), "pid": pid}, handle)
    return path


def test_start_up_sweep_keeps_temp_files_of_a_live_writer(make_shot, tmp_path):
    """A retried farm task used to delete the first task's frame in progress (1 race in 8)."""
    shot = load_shot(str(make_shot(frames="0-3")))
    out = str(tmp_path / "out" / "m.####.exr")
    job = job_metadata(shot, "propagate", Settings().result_dict("propagate"))["smite/job"]
    alive, dead = os.getppid(), _dead_pid()
    claim = _claim_file(out, alive, job)  # the same job, still running elsewhere on this host
    theirs = tmp_path / "out" / f".m.0003.{alive}.tmp.exr"
    theirs.write_bytes(b"frame in progress")
    stale = tmp_path / "out" / f".m.0002.{dead}.tmp.exr"
    stale.write_bytes(b"left by a killed task")
    segment_shot(shot, out, Settings())
    assert theirs.read_bytes() == b"frame in progress"
    assert not stale.exists()
    assert os.path.exists(claim)  # a live writer's claim is not ours to remove
    own = [n for n in os.listdir(tmp_path / "out") if n.endswith(f".{os.getpid()}.lock")]
    assert own == []  # ours is released at the end


def test_two_different_jobs_writing_one_output_are_refused(make_shot, tmp_path):
    shot = load_shot(str(make_shot(frames="0-2")))
    out = str(tmp_path / "out" / "m.####.exr")
    _claim_file(out, os.getppid(), "another-job")
    with pytest.raises(OutputError, match="being written by another job"):
        segment_shot(shot, out, Settings())
    assert not [n for n in os.listdir(tmp_path / "out") if n.endswith(".exr")]


def test_claim_of_a_dead_writer_is_removed_and_the_run_goes_on(make_shot, tmp_path):
    shot = load_shot(str(make_shot(frames="0-1")))
    out = str(tmp_path / "out" / "m.####.exr")
    claim = _claim_file(out, _dead_pid(), "another-job")
    assert segment_shot(shot, out, Settings()).written == [0, 1]
    assert not os.path.exists(claim)


def test_claims_of_the_same_job_coexist(tmp_path):
    out = str(tmp_path / "m.####.exr")
    with Claim(out, "job-a") as first:
        _claim_file(out, os.getppid(), "job-a")
        with Claim(out, "job-a") as second:
            assert second.live_pids() == {os.getppid()} and first.path != os.path.join(tmp_path, "x")
        with pytest.raises(OutputError):
            Claim(out, "job-b").acquire()


def test_tiny_plate_is_one_clear_error(make_shot, tmp_path):
    plate = tmp_path / "tiny"
    for f in range(3):
        write_image(str(plate / f"{f:05d}.png"), np.full((8, 8, 3), 0.5, np.float32), dtype="uint8")
    labels = np.zeros((8, 8), np.uint8)
    labels[2:6, 2:6] = 1
    write_image(str(tmp_path / "labels.png"), labels, dtype="uint8")
    shot = load_shot(str(make_shot(plate=str(plate / "%05d.png"), frames="0-2",
                                   references=[{"frame": 0, "labels": str(tmp_path / "labels.png")}])))
    with pytest.raises(BadInputError, match="8x8; SMITE needs at least 16x16"):
        segment_shot(shot, str(tmp_path / "out" / "m.####.exr"), Settings())


def test_truncated_smite_matte_is_redone_but_a_damaged_foreign_file_is_kept(make_shot, tmp_path):
    shot = load_shot(str(make_shot(frames="0-2")))
    out = str(tmp_path / "m.####.exr")
    segment_shot(shot, out, Settings())
    with open(_frame(out, 1), "r+b") as handle:
        handle.truncate(100)  # a full disk or a broken copy: still recognisably ours
    assert segment_shot(shot, out, Settings()).written == [1]
    with open(_frame(out, 2), "wb") as handle:
        handle.write(b"v/1\x01 not a matte at all")  # an EXR-looking file that names no smite_ channel
    with pytest.raises(OutputError, match="m.0002.exr exists and is not a SMITE matte"):
        segment_shot(shot, out, Settings())


def test_long_valid_output_name_is_written_although_its_temp_name_would_exceed_255(make_shot, tmp_path):
    name = "m" * 240 + ".####.exr"  # 249 characters once the frame number is in: legal (255 is the limit)
    out = str(tmp_path / name)
    assert len(os.path.basename(_frame(out, 0))) == 249  # ".<stem>.<pid>.tmp.exr" would be 256 or more
    shot = load_shot(str(make_shot(frames="0-1")))
    assert segment_shot(shot, out, Settings()).written == [0, 1]
    assert segment_shot(shot, out, Settings()).skipped == [0, 1]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]
