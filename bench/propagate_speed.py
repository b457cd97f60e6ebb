"""Frames per second of the weight-free path end to end (read, flow, carry, temporal, refine, EXR write).

    .venv/bin/python bench/propagate_speed.py [--clip DIR] [--runs 3] [--set KEY=VALUE ...]

Prints one line per run and the best; the first run in a process also pays one-off start-up costs
(library initialisation), so it is shown but not counted. Then the split of the best run: seconds
per 100 frames in each step, timed around the functions that do it (the plate refine and the EXR
write run on the writer thread beside the rest, so the steps add up to more than the wall time).
Numbers only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import threading
import time
from collections import defaultdict
from typing import Callable

from smite import engine
from smite.backends.propagate import PropagateBackend
from smite.config import Reference, Settings, ShotSpec
from smite.engine import segment_shot
from smite.method.appearance import ColourModel
from smite.track.flow import PairFlows
from smite.io.image import image_size
from smite.io.sequence import discover_frames, frame_path

DEFAULT_CLIP = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "davis16_car-shadow")


# (owner, attribute, step): what each step of the split is timed around
STEPS = (
    (PairFlows, "packed", "flow between consecutive frames"),
    (PairFlows, "checked", "flow to the keyframe and back (re-matching)"),
    (PropagateBackend, "move_parts", "small parts: their translations"),
    (PropagateBackend, "step", "carry one frame on"),
    (PropagateBackend, "rematch", "re-matching: choose coordinates"),
    (ColourModel, "fit", "learn the keyframes' colour models"),
    (PropagateBackend, "with_appearance", "colour model where unsure"),
    (PropagateBackend, "with_motion", "background-motion cue where unsure"),
    (PropagateBackend, "snap", "snap to plate edges"),
    (PropagateBackend, "temporal", "temporal module"),
    (engine, "refine_to_plate", "plate-resolution refine (writer thread)"),
    (engine, "write_matte", "EXR write (writer thread)"),
)


class Split:
    """Seconds spent inside each step's function, summed over threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        for owner, name, step in STEPS:
            original = getattr(owner, name)
            setattr(owner, name, self._timed(original, step))

    def _timed(self, fn: Callable, step: str) -> Callable:
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[step] += time.perf_counter() - start

        return timed

    def reset(self) -> dict[str, float]:
        with self._lock:
            taken, self.seconds = dict(self.seconds), defaultdict(float)
        return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=os.environ.get("SMITE_SPEED_CLIP", DEFAULT_CLIP),
                        help="clip folder with frames/NNNNN.jpg and masks/NNNNN.png (default davis16_car-shadow)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = {k: json.loads(v) if v[:1] in "0123456789-[{tf" else v
                 for k, v in (item.split("=", 1) for item in args.set)}
    settings = Settings.from_dict(overrides)
    plate = os.path.join(args.clip, "frames", "%05d.jpg")
    frames = discover_frames(plate)
    shot = ShotSpec(plate=plate, frames=tuple(frames), parts=("target",),
                    references=(Reference(frames[0], labels=os.path.join(args.clip, "masks", f"{frames[0]:05d}.png")),))
    w, h = image_size(frame_path(plate, frames[0]))
    print(f"clip {os.path.basename(os.path.normpath(args.clip))}: {len(frames)} frames {w}x{h}, "
          f"{os.cpu_count()} cores, settings {overrides or 'default'}")
    best, best_split = 0.0, {}
    split = Split()
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs + 1):
            split.reset()
            start = time.perf_counter()
            segment_shot(shot, os.path.join(tmp, "m.####.exr"), settings, force=True)
            fps = len(frames) / (time.perf_counter() - start)
            taken = split.reset()
            label = "warm-up" if run == 0 else f"run {run}"
            print(f"{label}: {fps:.1f} frames/s ({100 / fps:.1f} s per 100 frames)")
            if run and fps > best:
                best, best_split = fps, taken
    print(f"best: {best:.1f} frames/s ({100 / best:.1f} s per 100 frames)")
    per_100 = 100.0 / len(frames)
    print("split of the best run, s per 100 frames:")
    for _, _, step in STEPS:
        print(f"  {step:<44} {best_split.get(step, 0.0) * per_100:6.2f}")
    inside = sum(best_split.get(step, 0.0) for _, _, step in STEPS if "writer thread" not in step)
    print(f"  {'rest on the main thread (read, fuse, cache)':<44} {max(0.0, 100 / best - inside * per_100):6.2f}")


if __name__ == "__main__":
    main()
