"""The weight-free backend streams: same maps as the whole shot in memory, chunks equal one run,
and a chunk reuses what the scratch cache already holds."""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest

from smite.backends.propagate import PropagateBackend, _fuse, _identity, _normalise
from smite.backends.propagate_settings import PropagateSettings
from smite.config import Settings, ShotSpec
from smite.engine import frames_to_load
from smite.frames import FrameSource
from smite.method.appearance import ColourModel
from smite.references import load_references
from smite.scratch import Scratch
from smite.track.flow import PRESETS, compute_flows, flow_checks, grey_frame, pack, working_size

CHAIR = os.path.join(os.path.dirname(__file__), "data", "chair")
SMALL = Settings(propagate=PropagateSettings(work_max_side=120, flow_preset="fast"))


def _shot(frames: str = "0-23", keyframes: tuple[int, ...] = (0, 14)) -> ShotSpec:
    refs = [{"frame": f, "labels": f"masks/{f:05d}.png"} for f in keyframes]
    return ShotSpec.from_dict({"plate": "frames/%05d.jpg", "frames": frames, "parts": ["chair"],
                               "references": refs}, os.path.abspath(CHAIR))


def _inputs(shot: ShotSpec, wanted: list[int], settings: Settings) -> tuple[FrameSource, dict[int, np.ndarray]]:
    source = FrameSource(shot.plate, frames_to_load(shot, wanted, settings.context), shot.colorspace)
    refs = {f: p for f, p in load_references(shot, source.size).items() if f in source.frame_numbers}
    return source, refs


def _streamed(shot, settings, wanted=None, scratch=None) -> dict[int, np.ndarray]:
    wanted = list(shot.frames if wanted is None else wanted)
    source, refs = _inputs(shot, wanted, settings)
    backend = PropagateBackend(settings)
    state = backend.init_state(source, shot.parts)
    state.scratch = scratch
    for frame, probs in refs.items():
        backend.add_reference(state, frame, probs)
    return dict(backend.propagate(state, wanted))


def _in_memory(shot: ShotSpec, settings: Settings) -> dict[int, np.ndarray]:
    """The backend's rules applied the plain way: every frame, flow and carry of the shot in memory."""
    source, plate_refs = _inputs(shot, list(shot.frames), settings)
    backend = PropagateBackend(settings)
    frames = source.frame_numbers
    n = len(frames)
    h, w = working_size(*source.size, settings.propagate.work_max_side)
    work = np.stack([cv2.resize(source.get(f), (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    flows = compute_flows(work, max_side=settings.propagate.work_max_side, preset=settings.propagate.flow_preset)
    refs = {frames.index(f): _normalise(cv2.resize(p.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_AREA)
                                        .reshape(h, w, -1)) for f, p in plate_refs.items()}

    dis = cv2.DISOpticalFlow_create(PRESETS[settings.propagate.flow_preset])

    def direct(t: int, ref: int) -> np.ndarray:  # flow from frame t straight to its keyframe, tested both ways
        a, b = grey_frame(work[t], (h, w)), grey_frame(work[ref], (h, w))
        there, back = dis.calc(a, b, None), dis.calc(b, a, None)
        return pack(there, flow_checks(there, back)[0])

    def carry(order: list[int], step: int) -> list:
        out: list = [None] * n
        coords = ref = None
        for t in order:
            if t in refs:
                coords, ref = _identity(h, w), t
            elif coords is not None:
                moves = backend.move_parts(coords, refs[ref], flows.packed(t, -step), flows.packed(t - step, step),
                                           work[t - step], work[t])
                coords = moves.fill_trail(backend.step(coords, moves.flow), refs[ref])
                coords = moves.hold(coords, backend.rematch(coords, work[t], work[ref], direct(t, ref)))
            if coords is None:
                continue
            maps = cv2.remap(refs[ref], coords[..., 0], coords[..., 1], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE).reshape(h, w, -1)
            conf = coords[..., 2].copy()
            if t != ref:
                model = ColourModel.fit([work[ref]], [refs[ref]], levels=settings.propagate.appearance_levels)
                maps = backend.with_appearance(maps, conf, model, work[t])
                maps = backend.snap(backend.with_motion(maps, conf, flows.packed(t, -step)), work[t], conf)
                conf = backend.fusion_confidence(conf, work[t], work[ref], coords)
            out[t] = (maps, conf)
        return out

    fwd, bwd = carry(list(range(n)), 1), carry(list(range(n - 1, -1, -1)), -1)
    k = next(iter(refs.values())).shape[-1]
    fused = [_fuse([fwd[t], bwd[t]], (h, w, k), settings.propagate.fuse_power) for t in range(n)]
    result = {}
    for t, frame in enumerate(frames):
        probs = backend.temporal(fused.__getitem__, work.__getitem__, flows, n, t) if settings.temporal else fused[t]
        result[frame] = np.ascontiguousarray(probs.transpose(2, 0, 1))
    return result


def _max_diff(a: dict, b: dict, frames) -> float:
    return max(float(np.abs(a[f] - b[f]).max()) for f in frames)


@pytest.mark.parametrize("temporal", [True, False])
def test_streamed_equals_whole_shot_in_memory(temporal):
    shot, settings = _shot(), SMALL.replace(temporal=temporal)
    expected = _in_memory(shot, settings)
    streamed = _streamed(shot, settings)
    assert list(streamed) == list(shot.frames)
    assert _max_diff(streamed, expected, shot.frames) <= 1e-6


def test_chunks_equal_one_run():
    shot = _shot()
    single = _streamed(shot, SMALL)
    for start in (0, 8, 16):
        chunk = _streamed(shot, SMALL, range(start, start + 8))
        assert list(chunk) == list(range(start, start + 8))
        assert _max_diff(chunk, single, chunk) <= 1e-6


def test_chunk_reuses_fused_maps_of_the_same_job(tmp_path):
    shot, scratch = _shot(), Scratch(str(tmp_path), "job")
    single = _streamed(shot, SMALL, scratch=scratch)
    again = Scratch(str(tmp_path), "job")
    chunk = _streamed(shot, SMALL, range(16, 24), scratch=again)
    assert _max_diff(chunk, single, range(16, 24)) <= 1e-6
    assert again.stats.written == {}  # nothing recomputed: fused maps and flows came from the cache
    assert again.stats.reused["fused"] == len(range(16 - 7, 24))


def test_chunk_restarts_its_carry_from_a_cached_checkpoint(tmp_path):
    """A keyframe 30 frames before the chunk: the carry resumes at the checkpoint 24 frames on."""
    shot = _shot("0-39", keyframes=(0,))
    settings = SMALL.replace(temporal=False)
    first = Scratch(str(tmp_path), "job")
    whole = _streamed(shot, settings, scratch=first)
    assert first.stats.written["carry+1"] == 4  # checkpoints at frames 8, 16, 24, 32
    for kind in ("fused", "maps", "work"):  # keep only the checkpoints and flows
        for name in os.listdir(os.path.join(first.folder, kind)):
            os.remove(os.path.join(first.folder, kind, name))
    second = Scratch(str(tmp_path), "job")
    chunk = _streamed(shot, settings, range(30, 34), scratch=second)
    assert _max_diff(chunk, whole, range(30, 34)) <= 1e-6
    assert second.stats.reused["carry+1"] == 1
    # working frames: the keyframe (colour model, re-matching), the checkpoint's frame 24 (a step's small-part
    # translations read the frame it comes from) and the 9 carried on from it, not the 24 frames before it
    assert second.stats.written["work"] == 1 + 1 + 9
    assert "flow" not in second.stats.written


def test_a_re_rendered_plate_frame_is_not_read_from_the_cache(tmp_path):
    plate = tmp_path / "plate"
    plate.mkdir()
    for f in range(10):
        shutil.copy(os.path.join(CHAIR, "frames", f"{f:05d}.jpg"), plate / f"{f:05d}.jpg")
    shot = ShotSpec.from_dict({"plate": str(plate / "%05d.jpg"), "frames": "0-9", "parts": ["chair"],
                               "references": [{"frame": 0, "labels": os.path.join(CHAIR, "masks", "00000.png")}]},
                              str(tmp_path))
    settings = SMALL.replace(temporal=False)
    _streamed(shot, settings, scratch=Scratch(str(tmp_path / "scratch"), "job"))
    os.utime(plate / "00006.jpg", ns=(10**18, 10**18))  # what a re-render does to the file's identity
    again = Scratch(str(tmp_path / "scratch"), "job")
    _streamed(shot, settings, scratch=again)
    assert again.stats.written["work"] == 1  # frame 6 only
    assert again.stats.written["flow"] == 2  # pairs 5-6 and 6-7
    assert again.stats.written["fused"] == 4  # frames 6-9 carry through frame 6
    assert again.stats.reused["fused"] == 6
