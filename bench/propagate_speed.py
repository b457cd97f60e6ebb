"""Frames per second of the weight-free path end to end (read, flow, carry, temporal, refine, EXR write).

    .venv/bin/python bench/propagate_speed.py [--clip DIR] [--runs 3] [--set KEY=VALUE ...]

Prints one line per run and the best; the first run in a process also pays one-off start-up costs
(library initialisation), so it is shown but not counted. Numbers only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from smite.config import Reference, Settings, ShotSpec
from smite.engine import segment_shot
from smite.io.image import image_size
from smite.io.sequence import discover_frames, frame_path

DEFAULT_CLIP = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "davis16_car-shadow")


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
    best = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs + 1):
            start = time.perf_counter()
            segment_shot(shot, os.path.join(tmp, "m.####.exr"), settings, force=True)
            fps = len(frames) / (time.perf_counter() - start)
            label = "warm-up" if run == 0 else f"run {run}"
            print(f"{label}: {fps:.1f} frames/s")
            if run:
                best = max(best, fps)
    print(f"best: {best:.1f} frames/s")


if __name__ == "__main__":
    main()
