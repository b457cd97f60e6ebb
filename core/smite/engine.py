"""The one engine behind the command line, the server and farm tasks.

`segment_shot` reads a shot, runs a backend and writes one matte EXR per frame. It is resumable:
frames whose EXR is complete and was made by the same job are skipped, and every file is written
under a temporary name and renamed, so an interrupted run leaves finished frames and nothing else.

Safety rules (README "Safety"): the output must be an EXR pattern; an existing file that is not a
SMITE matte is never overwritten; each matte records its frame number and its plate frame's digest,
and resume redoes a frame whose record does not match (a matte copied over another frame's name);
a run claims its output pattern (`io.guard`), so a different job writing it at the same time is
refused and only temp files of writers that are gone are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from . import __version__
from .backends import make_backend
from .backends.base import BackendBase, ProgressFn
from .config import Settings, ShotSpec
from .errors import BadInputError, CancelledError, OutputError
from .frames import FrameSource
from .io.guard import Claim, plate_digest, remove_stale_temps
from .io.matte import has_smite_attribute, is_smite_matte, matte_is_complete, read_matte, write_matte
from .io.preview import write_contact_sheet
from .io.sequence import check_output_pattern, format_frame_range, frame_path, without_frame_token
from .oom import run_with_oom_retry
from .references import load_references
from .refine import refine_to_plate
from .scratch import Scratch, ScratchReport, default_root

PREVIEW_TILES = 8
PREVIEW_KEY = "smite/preview"  # marks a contact sheet SMITE wrote: only such a file is ever replaced
MIN_PLATE_SIDE = 16  # smaller plates cannot hold a flow pyramid or a guided-filter window


@dataclass
class SegmentResult:
    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    out_pattern: str = ""
    preview: str | None = None
    scratch: ScratchReport | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def job_metadata(shot: ShotSpec, backend: str, result_settings: dict, model_hash: str = "") -> dict[str, str]:
    """Metadata stored in every matte; a frame is reused on resume only if all of it matches.

    `result_settings` are the settings that decide the backend's mattes (`BackendBase.result_settings`).
    """
    refs = [(r.frame, r.labels, sorted(r.masks.items())) for r in shot.references]
    job = json.dumps(
        {"plate": shot.plate, "parts": shot.parts, "refs": refs, "cs": shot.colorspace, "settings": result_settings,
         "model": model_hash, "version": __version__},
        sort_keys=True,
    )
    meta = {
        "smite/parts": json.dumps(list(shot.parts)),
        "smite/backend": backend,
        "smite/version": __version__,
        "smite/settings": json.dumps(result_settings, sort_keys=True),
        "smite/job": hashlib.sha256(job.encode()).hexdigest()[:16],
    }
    if model_hash:  # EXR drops empty string attributes, so only a real hash is stored and compared
        meta["smite/model"] = model_hash
    return meta


def frames_to_load(shot: ShotSpec, frames: Sequence[int], context: int,
                   first_needed: Callable[[int], int] = lambda first: first) -> list[int]:
    """Shot frames a chunk needs: itself, `context` frames each side, and its nearest references.

    Including the nearest reference on each side makes a chunk carry exactly what a whole-shot run
    carries, so chunks and single runs agree. A backend whose windows reach further back says so
    through `first_needed(first frame) -> earliest frame it needs`.
    """
    order = list(shot.frames)
    pos = {f: i for i, f in enumerate(order)}
    lo = max(0, min(pos[f] for f in frames) - context)
    earliest = first_needed(order[lo])
    while lo > 0 and order[lo - 1] >= earliest:
        lo -= 1
    hi = min(len(order) - 1, max(pos[f] for f in frames) + context)
    ref_pos = sorted(pos[r] for r in shot.reference_frames)
    before = [p for p in ref_pos if p <= lo]
    after = [p for p in ref_pos if p >= hi]
    lo = before[-1] if before else min(lo, ref_pos[0])
    hi = after[0] if after else max(hi, ref_pos[-1])
    return order[lo : hi + 1]


def _job_metadata(shot: ShotSpec, backend: BackendBase) -> dict[str, str]:
    return job_metadata(shot, backend.name, backend.result_settings(), backend.model_hash)


def _check_output(out_pattern: str) -> None:
    check_output_pattern(out_pattern)
    folder = os.path.dirname(os.path.abspath(out_pattern))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {folder}")


def frame_metadata(frame: int, plate_path: str) -> dict[str, str]:
    """What ties a matte to its frame: the frame number and its plate file's digest (checked on resume)."""
    return {"smite/frame": str(int(frame)), "smite/plate_frame": plate_digest(plate_path)}


def _refuse_foreign_files(paths: Sequence[str]) -> None:
    """OutputError naming the first existing file that is not a SMITE matte: it is never overwritten."""
    for path in paths:
        if os.path.lexists(path) and not (os.path.isfile(path) and is_smite_matte(path)):
            raise OutputError(f"{path} exists and is not a SMITE matte; it is never overwritten "
                              f"(move it away or choose another output)", path=path)


class BackgroundWriter:
    """Refine and write finished frames on one worker thread while the backend computes the next.

    OpenCV, NumPy and OpenImageIO release the GIL, so on a 2-core machine plate-resolution
    refinement and EXR compression overlap with propagation. At most `depth` frames wait; `done`
    runs on the caller's thread, in frame order, once a frame's file is complete on disk. An error
    in the worker surfaces at the next submit or at exit.
    """

    def __init__(self, done: Callable[[int], None], depth: int = 2) -> None:
        self._done = done
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smite-writer")
        self._pending: deque[Future] = deque()

    def submit(self, fn: Callable[..., int], *args: object) -> None:
        self._pending.append(self._pool.submit(fn, *args))
        while self._pending and (len(self._pending) > self._depth or self._pending[0].done()):
            self._done(self._pending.popleft().result())

    def drain(self) -> None:
        while self._pending:
            self._done(self._pending.popleft().result())

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.drain()
            else:  # frames already in flight still land (whole files) and count; the error is re-raised
                while self._pending:
                    future = self._pending.popleft()
                    if future.exception() is None:
                        self._done(future.result())
        finally:
            self._pool.shutdown(wait=True)


def segment_shot(
    shot: ShotSpec,
    out_pattern: str,
    settings: Settings,
    *,
    frames: Sequence[int] | None = None,
    preview: bool = False,
    force: bool = False,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    scratch: str | None = None,
) -> SegmentResult:
    """Segment `frames` (default: the whole shot) and write `out_pattern` mattes; see module doc.

    scratch: root of the job's scratch cache (default `.smite-scratch` beside the mattes); it is
    removed once every frame of the shot has its matte, kept for a resumed run or other chunks otherwise.
    """
    report = progress or (lambda *args: None)
    _check_output(out_pattern)
    frames = list(shot.frames if frames is None else frames)
    shot_frames = set(shot.frames)
    outside = [f for f in frames if f not in shot_frames]
    if outside:
        raise BadInputError(f"frame {outside[0]} is outside the shot's frames {format_frame_range(list(shot.frames))}")
    backend = make_backend(settings, progress=report)
    meta = _job_metadata(shot, backend)
    with Claim(out_pattern, meta["smite/job"]) as claim:
        remove_stale_temps([frame_path(out_pattern, f) for f in frames], claim.live_pids())
        return _segment(shot, out_pattern, settings, frames, backend, meta, preview=preview, force=force,
                        report=report, cancel=cancel, scratch_root=scratch or default_root(out_pattern))


def _segment(shot: ShotSpec, out_pattern: str, settings: Settings, frames: list[int], backend: BackendBase,
             meta: dict[str, str], *, preview: bool, force: bool, report: ProgressFn,
             cancel: threading.Event | None, scratch_root: str) -> SegmentResult:
    """`segment_shot` once the output is claimed: resume check, render, preview."""
    result = SegmentResult(out_pattern=out_pattern)
    scratches = [Scratch(scratch_root, meta["smite/job"])]  # one more per out-of-memory retry (other settings)
    todo = []
    for f in frames:
        path = frame_path(out_pattern, f)
        expected = {**meta, **frame_metadata(f, frame_path(shot.plate, f))}
        if not force and matte_is_complete(path, expected):
            result.skipped.append(f)
        else:
            todo.append(f)
    _refuse_foreign_files([frame_path(out_pattern, f) for f in todo])
    preview_path = _preview_path(out_pattern) if preview else None
    if preview_path is not None:
        _refuse_foreign_preview(preview_path)
    total = len(frames)
    report("segment", len(result.skipped), total, f"{len(result.skipped)} frame(s) already done")

    sources: list[FrameSource] = []  # closed once the frames are written: their read-ahead threads stop

    def render(run: Settings) -> None:
        """Segment the frames of `todo` not yet written; re-entered with smaller settings after an OOM."""
        run_backend, run_meta = backend, meta
        if run is not settings:
            run_backend = make_backend(run, progress=report)
            run_meta = _job_metadata(shot, run_backend)
        # Written into each matte: the job's identity plus every setting (even those that don't enter it).
        run_meta = {**run_meta, "smite/settings_all": run.to_json()}
        written = set(result.written)
        left = [f for f in todo if f not in written]
        loaded = frames_to_load(shot, left, run.context, run_backend.first_needed)
        source = FrameSource(shot.plate, loaded, shot.colorspace)
        sources.append(source)
        if min(source.size) < MIN_PLATE_SIDE:
            raise BadInputError(f"plate {source.path(loaded[0])} is {source.size[1]}x{source.size[0]}; "
                                f"SMITE needs at least {MIN_PLATE_SIDE}x{MIN_PLATE_SIDE} pixels")
        refs = load_references(shot, source.size)
        state = run_backend.init_state(source, shot.parts)
        if run is not settings:
            scratches.append(Scratch(scratch_root, run_meta["smite/job"]))
        state.scratch = scratches[-1]
        for frame, probs in refs.items():
            if frame in source.frame_numbers:
                run_backend.add_reference(state, frame, probs)

        def finish(frame: int, probs: np.ndarray, plate: np.ndarray) -> int:
            own = run.own()  # each backend refines its own maps (settings version 3)
            full = refine_to_plate(probs, plate, **own.refine_options())
            frame_meta = frame_metadata(frame, source.path(frame))
            write_matte(frame_path(out_pattern, frame), full[1:], list(shot.parts), {**run_meta, **frame_meta})
            return frame

        def done(frame: int) -> None:
            result.written.append(frame)
            report("segment", len(result.skipped) + len(result.written), total, f"frame {frame}")

        with BackgroundWriter(done) as writer:
            for frame, probs in run_backend.propagate(state, left):
                if cancel is not None and cancel.is_set():
                    writer.drain()
                    raise CancelledError(f"cancelled after {len(result.written)} new frame(s); finished frames kept")
                writer.submit(finish, frame, probs, source.get(frame))

    if todo:
        # Frames finished before an out-of-memory error are kept; the rest are redone with the backend's
        # smaller settings (`shrink_settings`), until it has none.
        try:
            run_with_oom_retry(render, settings, backend.shrink_settings,
                               what=f"frames {format_frame_range(todo)}")
        finally:
            for source in sources:
                source.close()
    complete = all(os.path.exists(frame_path(out_pattern, f)) for f in shot.frames)
    result.scratch = ScratchReport.of(scratches, remove=complete)
    if preview_path is not None:
        result.preview = _write_preview(shot, out_pattern, frames, preview_path)
    return result


def _preview_path(out_pattern: str) -> str:
    """``<folder>/<name>.smite-preview.png`` for ``<folder>/<name>.####.exr``: beside the mattes, named after them."""
    folder, name = os.path.split(os.path.abspath(out_pattern))
    stem = without_frame_token(os.path.splitext(name)[0]) or "mattes"
    return os.path.join(folder, f"{stem}.smite-preview.png")


def _refuse_foreign_preview(path: str) -> None:
    if os.path.lexists(path) and not (os.path.isfile(path) and has_smite_attribute(path, PREVIEW_KEY)):
        raise OutputError(f"{path} exists and is not a SMITE preview; it is never overwritten "
                          f"(move it away or run without preview)", path=path)


def _write_preview(shot: ShotSpec, out_pattern: str, frames: list[int], path: str) -> str:
    """A contact sheet of evenly spaced frames with coloured part overlays, next to the mattes."""
    pick = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, min(PREVIEW_TILES, len(frames)))]
    tiles = []
    with FrameSource(shot.plate, sorted(set(pick)), shot.colorspace) as source:
        for f in sorted(set(pick)):
            _, probs, _ = read_matte(frame_path(out_pattern, f))
            tiles.append((f, source.get(f), probs))
    write_contact_sheet(path, tiles, list(shot.parts), attributes={PREVIEW_KEY: out_pattern})
    return path


def learn_parts(shot: ShotSpec, out_path: str, settings: Settings, *, progress: ProgressFn | None = None,
                cancel: threading.Event | None = None, holdout: int | None = None, backbone: object | None = None):
    """Learn a part model (diffusion backend) from the shot's references and write it to `out_path`.

    The file I/O of learning is here: the reference frames and maps are read, `smite.method.learn`
    learns on arrays and returns a `LearnResult`, and the part model is written (atomically).
    `holdout` names a reference frame kept for validation (the best state on it is kept); `backbone`
    reuses a loaded one. Imported lazily so the weight-free path never loads diffusers.
    """
    from dataclasses import replace

    from .method.learn import Example, PartLearner
    from .model.backbone import load_backbone
    from .model.parts import save_part_model

    with FrameSource(shot.plate, list(shot.reference_frames), shot.colorspace) as source:
        probs = load_references(shot, source.size)
        examples = {f: Example(source.get(f), probs[f].argmax(0).astype(np.uint8), f"frame {f}")
                    for f in shot.reference_frames if f in probs}
    val = [e for f, e in examples.items() if f == holdout]
    train = [e for f, e in examples.items() if f != holdout]
    if holdout is not None and not val:
        raise BadInputError(f"holdout frame {holdout} is not a reference frame of {shot.source}")
    if not train:
        raise BadInputError(f"{shot.source}: no reference left to learn from after holding out frame {holdout}")
    diffusion = settings.diffusion
    backbone = backbone or load_backbone(diffusion.model or None)
    result = PartLearner(backbone, diffusion, settings.seed)(train, shot.parts, val=val, progress=progress,
                                                             cancel=cancel)
    save_part_model(out_path, result.model)
    return replace(result, path=out_path)
