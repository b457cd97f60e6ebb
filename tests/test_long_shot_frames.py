"""FrameSource streams: bounded read-ahead on a background thread, a few frames held, errors where asked."""

from __future__ import annotations

import gc
import threading

import cv2
import numpy as np
import pytest

from smite import frames as frames_module
from smite.errors import FrameError
from smite.frames import FrameSource


@pytest.fixture
def plate(tmp_path):
    """12 PNG frames 32x24, frame f filled with grey level 10*f."""
    rng = np.random.default_rng(0)
    for f in range(12):
        img = np.full((24, 32, 3), 10 * f, np.uint8) + rng.integers(0, 3, (24, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"p.{f:04d}.png"), img)
    return str(tmp_path / "p.####.png")


@pytest.fixture
def reads(monkeypatch):
    """Frame paths read, in order, with the thread that read each."""
    log: list[tuple[str, str]] = []
    real = frames_module.read_rgb

    def logged(path):
        log.append((path.rsplit(".", 2)[-2], threading.current_thread().name))
        return real(path)

    monkeypatch.setattr(frames_module, "read_rgb", logged)
    return log


def test_frames_equal_a_direct_read(plate):
    streamed = FrameSource(plate, range(12), "sRGB - Texture")
    direct = FrameSource(plate, range(12), "sRGB - Texture", prefetch=0)
    for f in list(range(12)) + [5, 3, 9]:
        np.testing.assert_array_equal(streamed.get(f), direct.get(f))
    streamed.close()


def test_reads_ahead_on_a_background_thread_in_the_walking_direction(plate, reads):
    with FrameSource(plate, range(12), "sRGB - Texture", keep=1, prefetch=3) as source:
        for f in range(6):
            source.get(f)
        for future in list(source._ahead.values()):  # let the reads in flight land
            future.result()
        assert [r[0] for r in reads] == [f"{f:04d}" for f in range(9)]  # each frame once, 3 ahead of frame 5
        assert all(name.startswith("smite-frames") for _, name in reads[1:])
        reads.clear()
        for f in (4, 3):  # turning round: frame 4 is read again, then the reads run backwards
            source.get(f)
        for future in list(source._ahead.values()):
            future.result()
        assert [r[0] for r in reads][:4] == ["0004", "0003", "0002", "0001"]


def test_holds_only_recent_frames_and_frames_the_caller_keeps(plate, reads):
    with FrameSource(plate, range(12), "sRGB - Texture", keep=2, prefetch=0) as source:
        window = [source.get(f) for f in range(8)]  # a caller holding a window of 8 frames
        again = [source.get(f) for f in range(4, 12)]  # the next window overlaps it by 4
        assert len(reads) == 12  # the overlap was shared, not read twice
        assert all(a is b for a, b in zip(window[4:], again[:4]))
        del window, again
        gc.collect()
        reads.clear()
        source.get(0)
        assert len(reads) == 1  # nothing but the last two frames was kept once the caller let go
        assert set(source._recent) | set(source._shared) == {11, 0}


def test_a_bad_frame_read_ahead_fails_only_when_asked_for(plate, tmp_path):
    cv2.imwrite(str(tmp_path / "p.0003.png"), np.zeros((10, 10, 3), np.uint8))  # wrong size
    with FrameSource(plate, range(12), "sRGB - Texture", prefetch=3) as source:
        for f in range(3):
            source.get(f)
        with pytest.raises(FrameError, match="frame 3 .* is 10x10"):
            source.get(3)
        assert source.get(4).shape == (24, 32, 3)
