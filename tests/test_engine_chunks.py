"""Farm chunks and resume on a real clip: chunks with context equal one run; re-runs redo only what is needed."""

import os
import shutil

import numpy as np
import pytest
import torch

from smite.backends.base import BackendBase
from smite.backends.propagate_settings import PropagateSettings
from smite.config import Settings, ShotSpec
from smite.engine import segment_shot
from smite.errors import OutOfMemoryError
from smite.io.matte import read_matte, write_matte
from smite.io.sequence import frame_path
from conftest import SHARED_DATA

CLIP = str(SHARED_DATA / "davis16_car-shadow")
CHAIR = os.path.join(os.path.dirname(__file__), "data", "chair")
FAST = Settings(propagate=PropagateSettings(work_max_side=240, flow_preset="fast"))


@pytest.fixture(scope="module")
def car_shot():
    """davis16_car-shadow frames 0-23 at 854x480, label-map keyframes at 0 and 12."""
    if not os.path.isdir(CLIP):
        pytest.skip(f"real clip not found: {CLIP}")
    data = {"plate": "frames/%05d.jpg", "frames": "0-23", "parts": ["car"],
            "references": [{"frame": 0, "labels": "masks/00000.png"}, {"frame": 12, "labels": "masks/00012.png"}]}
    return ShotSpec.from_dict(data, os.path.abspath(CLIP))


def _chair(frames="0-11"):
    data = {"plate": "frames/%05d.jpg", "frames": frames, "parts": ["chair"],
            "references": [{"frame": 0, "labels": "masks/00000.png"}]}
    return ShotSpec.from_dict(data, os.path.abspath(CHAIR))


def _max_diff(pattern_a, pattern_b, frames):
    return max(float(np.abs(read_matte(frame_path(pattern_a, f))[1] - read_matte(frame_path(pattern_b, f))[1]).max())
               for f in frames)


def test_three_chunks_with_default_context_equal_one_run(car_shot, tmp_path):
    single, chunked = str(tmp_path / "single" / "m.####.exr"), str(tmp_path / "chunks" / "m.####.exr")
    segment_shot(car_shot, single, FAST)
    for start in (0, 8, 16):
        result = segment_shot(car_shot, chunked, FAST, frames=range(start, start + 8))
        assert result.written == list(range(start, start + 8))
    assert _max_diff(single, chunked, range(24)) <= 1e-3
    # The same chunk without context is cut short at its edge: the check above can fail.
    segment_shot(car_shot, str(tmp_path / "bare" / "m.####.exr"), FAST.replace(context=0), frames=range(0, 8))
    assert _max_diff(single, str(tmp_path / "bare" / "m.####.exr"), [7]) > 1e-3


def test_resume_skips_complete_frames_and_redoes_damaged_ones(tmp_path):
    shot, out = _chair(), str(tmp_path / "m.####.exr")
    first = segment_shot(shot, out, FAST)
    assert first.written == list(range(12))
    reference = {f: read_matte(frame_path(out, f))[1] for f in range(12)}

    again = segment_shot(shot, out, FAST)
    assert again.written == [] and again.skipped == list(range(12))

    with open(frame_path(out, 3), "r+b") as handle:  # truncated, as by a killed copy
        handle.truncate(os.path.getsize(frame_path(out, 3)) // 2)
    parts, probs, meta = read_matte(frame_path(out, 7))  # complete, but made by another job
    write_matte(frame_path(out, 7), probs, parts, {**meta, "smite/job": "another-job"})
    shutil.copy(frame_path(out, 0), str(tmp_path / ".m.0000.123.tmp.exr"))  # a killed run's temp file
    redo = segment_shot(shot, out, FAST)
    assert redo.written == [3, 7]
    assert not os.path.exists(tmp_path / ".m.0000.123.tmp.exr")
    for f in (3, 7):
        assert np.abs(read_matte(frame_path(out, f))[1] - reference[f]).max() <= 1e-3

    other = segment_shot(shot, out, FAST.replace(propagate=FAST.propagate.replace(refine_radius=3)), frames=[5])
    assert other.written == [5]  # other settings: the frame is not reused

    forced = segment_shot(shot, out, FAST, force=True)
    assert forced.written == list(range(12)) and forced.skipped == []


def test_only_the_own_backends_settings_redo_frames(tmp_path):
    """A weight-free job holds the shared settings and its own: tuning the diffusion backend redoes nothing."""
    from smite.model.settings import DiffusionSettings

    shot, out = _chair("0-3"), str(tmp_path / "m.####.exr")
    assert segment_shot(shot, out, FAST).written == list(range(4))
    diffusion_tuned = FAST.replace(diffusion=DiffusionSettings(window=8, overlap=4, lambda_reg=2.0))
    assert segment_shot(shot, out, diffusion_tuned).skipped == list(range(4))
    own_tuned = FAST.replace(propagate=FAST.propagate.replace(carry_decay=0.5))
    assert segment_shot(shot, out, own_tuned, frames=[2]).written == [2]


class _OomOnce(BackendBase):
    """A backend stand-in that runs out of memory after `fail_after` frames while its window is large."""

    name = "propagate"

    def __init__(self, real, log, fail_after):
        super().__init__(real.settings)
        self.real, self.log, self.fail_after = real, log, fail_after

    def init_state(self, source, parts):
        return self.real.init_state(source, parts)

    def add_reference(self, state, frame, probs):
        self.real.add_reference(state, frame, probs)

    def propagate(self, state, frames):
        self.log.append((self.real.settings.vote_window, list(frames)))
        for i, item in enumerate(self.real.propagate(state, frames)):
            if self.real.settings.vote_window > 5 and i == self.fail_after:
                raise torch.OutOfMemoryError("CUDA out of memory (fake)")
            yield item

    def shrink_settings(self, settings):
        return settings.replace(vote_window=5) if settings.vote_window > 5 else None


def test_out_of_memory_retries_only_unfinished_frames(tmp_path, monkeypatch):
    import smite.engine as engine
    from smite.backends.propagate import PropagateBackend

    log = []
    monkeypatch.setattr(engine, "make_backend", lambda s, progress: _OomOnce(PropagateBackend(s), log, fail_after=3))
    result = segment_shot(_chair("0-7"), str(tmp_path / "m.####.exr"), FAST)
    assert log == [(15, list(range(8))), (5, [3, 4, 5, 6, 7])]
    assert result.written == list(range(8))

    monkeypatch.setattr(engine, "make_backend", lambda s, progress: _OomOnce(PropagateBackend(s), [], fail_after=0))
    monkeypatch.setattr(_OomOnce, "shrink_settings", lambda self, s: None)
    with pytest.raises(OutOfMemoryError, match="frames 0-7"):
        segment_shot(_chair("0-7"), str(tmp_path / "n.####.exr"), FAST)
