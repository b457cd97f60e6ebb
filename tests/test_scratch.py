"""The scratch cache: atomic entries, keyed by the job, reused by resume and chunks, removed when the shot is done."""

from __future__ import annotations

import errno
import glob
import os
import time

import numpy as np
import pytest

from smite import scratch as scratch_module
from smite.cli.main import main
from smite.backends.propagate_settings import PropagateSettings
from smite.config import Settings, load_shot
from smite.engine import segment_shot
from smite.errors import OutputError
from smite.hostapi.errorcodes import EXIT_BAD_INPUT
from smite.io.matte import read_matte
from smite.scratch import SCRATCH_FOLDER, Scratch

FAST = Settings(propagate=PropagateSettings(work_max_side=120, flow_preset="fast"))


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_entries_round_trip_and_leave_no_temp_files(tmp_path):
    cache = Scratch(str(tmp_path), "job")
    data = np.random.default_rng(0).random((5, 4, 3), dtype=np.float32)
    cache.save("flow", "a", data)
    np.testing.assert_array_equal(cache.load("flow", "a", (5, 4, 3)), data)
    assert cache.load("flow", "a", (4, 4, 3)) is None  # another shape: recomputed, never misread
    assert cache.load("flow", "missing") is None
    assert os.listdir(os.path.join(cache.folder, "flow")) == ["a.npy"]
    with open(cache.path("flow", "a"), "r+b") as handle:  # a torn file (disk trouble) is recomputed
        handle.truncate(60)
    assert cache.load("flow", "a") is None


def test_a_full_disk_is_one_error_naming_the_folder_and_leaves_no_temp(tmp_path, monkeypatch):
    cache = Scratch(str(tmp_path / "s"), "job")
    monkeypatch.setattr(scratch_module.np, "save", _no_space)
    with pytest.raises(OutputError, match=f"scratch cache folder {tmp_path / 's'} is full"):
        cache.save("work", "a", np.zeros(3, np.float32))
    assert os.listdir(os.path.join(cache.folder, "work")) == []


def test_kept_for_the_other_chunks_then_removed_when_the_shot_is_done(make_shot, tmp_path):
    shot = load_shot(str(make_shot(frames="0-11")))
    out = str(tmp_path / "out" / "m.####.exr")
    single = str(tmp_path / "single" / "m.####.exr")
    segment_shot(shot, single, FAST)
    assert not os.path.exists(tmp_path / "single" / SCRATCH_FOLDER)  # one run of the whole shot: removed

    first = segment_shot(shot, out, FAST, frames=range(0, 6))
    assert first.scratch.kept and first.scratch.bytes > 0
    assert first.scratch.folder.startswith(str(tmp_path / "out" / SCRATCH_FOLDER))
    assert os.path.isdir(first.scratch.folder) and not first.scratch.reused
    second = segment_shot(shot, out, FAST, frames=range(6, 12))
    assert second.scratch.folder == first.scratch.folder  # the same job: the same cache
    assert second.scratch.reused["fused"] >= 6  # frames 0-5's window overlap came from the first chunk
    assert not second.scratch.kept and not os.path.exists(tmp_path / "out" / SCRATCH_FOLDER)
    for f in range(12):
        a, b = read_matte(out.replace("####", f"{f:04d}"))[1], read_matte(single.replace("####", f"{f:04d}"))[1]
        assert np.abs(a - b).max() <= 1e-6


def test_a_changed_setting_gets_its_own_cache(make_shot, tmp_path):
    shot = load_shot(str(make_shot(frames="0-11")))
    out = str(tmp_path / "out" / "m.####.exr")
    a = segment_shot(shot, out, FAST, frames=range(0, 4))
    b = segment_shot(shot, out, FAST.replace(propagate=FAST.propagate.replace(carry_decay=0.9)), frames=range(0, 4))
    assert a.scratch.folder != b.scratch.folder and not b.scratch.reused
    # what does not change a matte (the chunk context) keeps the job and its cache
    c = segment_shot(shot, out, FAST.replace(propagate=FAST.propagate.replace(carry_decay=0.9), context=4), frames=range(4, 8))
    assert c.scratch.folder == b.scratch.folder and c.scratch.reused


def test_cli_scratch_option_and_the_end_of_run_line(make_shot, tmp_path, capsys):
    shot = make_shot(frames="0-5")
    code = main(["segment", "--shot", str(shot), "--out", str(tmp_path / "out" / "m.####.exr"),
                 "--frames", "0-2", "--scratch", str(tmp_path / "elsewhere"), "--set", "work_max_side=120"])
    err = capsys.readouterr().err
    assert code == 0
    (folder,) = glob.glob(str(tmp_path / "elsewhere" / "*"))
    line = next(line for line in err.splitlines() if line.startswith("scratch cache"))
    assert folder in line and "MB" in line and "kept" in line
    assert not os.path.exists(tmp_path / "out" / SCRATCH_FOLDER)


def test_cli_full_scratch_disk_is_one_line_and_finished_frames_stay(make_shot, tmp_path, capsys, monkeypatch):
    shot = make_shot(frames="0-19")  # the first chunk caches frames 0-9 (context), the rest must be written
    out = tmp_path / "out" / "m.####.exr"
    args = ["segment", "--shot", str(shot), "--out", str(out), "--quiet", "--set", "work_max_side=120"]
    assert main(args + ["--frames", "0-2"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(scratch_module.np, "save", _no_space)
    code = main(args)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == EXIT_BAD_INPUT
    assert len(errors) == 1 and "scratch cache folder" in errors[0] and SCRATCH_FOLDER in errors[0], errors
    assert sorted(os.listdir(tmp_path / "out")) == [SCRATCH_FOLDER, "m.0000.exr", "m.0001.exr", "m.0002.exr"]
    assert not glob.glob(str(tmp_path / "out" / SCRATCH_FOLDER / "*" / "*" / ".*"))  # no temp files


def test_a_finished_job_removes_abandoned_job_folders_but_not_recent_ones(make_shot, tmp_path):
    """An abandoned job's cache (settings changed, nothing written for a week) must not fill the disk
    forever; a folder another job wrote to recently (a chunk still running) stays."""
    shot = load_shot(str(make_shot(frames="0-5")))
    out = str(tmp_path / "out" / "m.####.exr")
    root = tmp_path / "out" / SCRATCH_FOLDER
    abandoned, live = Scratch(str(root), "abandoned"), Scratch(str(root), "live")
    for s in (abandoned, live):
        s.save("fused", "x", np.zeros((4, 4, 2), np.float32))
    week_ago = time.time() - scratch_module.STALE_AFTER_S - 60
    for folder, _, files in os.walk(abandoned.folder):
        for name in files + [""]:
            os.utime(os.path.join(folder, name), (week_ago, week_ago))
    result = segment_shot(shot, out, FAST)
    assert not result.scratch.kept and result.scratch.pruned == 1
    assert "removed 1 abandoned job folder" in result.scratch.describe()
    assert not os.path.exists(abandoned.folder) and live.has("fused", "x")


def test_a_run_that_keeps_nothing_on_disk_has_no_scratch_line(tmp_path):
    """The diffusion backend never writes the scratch cache: `smite segment` must not report an empty one."""
    from smite.scratch import ScratchReport

    empty = Scratch(str(tmp_path / "s"), "job")
    assert not ScratchReport.of([empty], remove=False).used
    empty.save("fused", "x", np.zeros((2, 2, 2), np.float32))
    assert ScratchReport.of([empty], remove=False).used
