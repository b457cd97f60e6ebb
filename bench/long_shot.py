"""Peak memory and frames/s on long shots: the weight-free backend at 854x480 and 1920x1080, the
diffusion backend (tiny random model) at two lengths.

    .venv/bin/python bench/long_shot.py [--cases p480:100,p480:400,p480:1600,p1080:100,p1080:400,diff:32,diff:128]
                                        [--work DIR] [--core DIR]

The plate is the bundled sample (tests/data/chair, 60 frames 360x240) played back and forth
(0..59, 58..1, ...) to the length asked, scaled to cover the size and centre-cropped, as JPEG;
the keyframe is frame 0's label map, treated the same way. Each case runs `segment_shot` in a
fresh subprocess; its peak RSS comes from `os.wait4` (the child's own maximum resident set) and its
frames/s from the time around `segment_shot` inside the child (imports excluded). `--core` points
the children at another source tree (e.g. an older checkout's `core/`) to compare. Numbers only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAIR = os.path.join(REPO, "tests", "data", "chair")
SIZES = {"p480": (854, 480), "p1080": (1920, 1080), "diff": (854, 480)}
DEFAULT_CASES = "p480:100,p480:400,p480:1600,p1080:100,p1080:400,diff:32,diff:128"

CHILD = r"""
import json, sys, time
from smite.config import Settings, ShotSpec
from smite.engine import segment_shot
spec, out, settings = json.loads(sys.argv[1])
shot = ShotSpec.from_dict(spec, "/")
settings = Settings.from_dict(settings)
start = time.perf_counter()
result = segment_shot(shot, out, settings, force=True)
print(json.dumps({"seconds": time.perf_counter() - start, "written": len(result.written)}))
"""


def cover(img: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """`img` scaled to cover `size` (w, h) and centre-cropped to it."""
    w, h = size
    scale = max(w / img.shape[1], h / img.shape[0])
    sw, sh = max(w, round(img.shape[1] * scale)), max(h, round(img.shape[0] * scale))
    big = cv2.resize(img, (sw, sh), interpolation=interpolation)
    x, y = (sw - w) // 2, (sh - h) // 2
    return big[y : y + h, x : x + w]


def build_plate(work: str, name: str, size: tuple[int, int], frames: int) -> dict:
    """Write (once) a `frames`-long plate of `size` from the sample; returns its shot manifest."""
    folder = os.path.join(work, f"{name}_{size[0]}x{size[1]}")
    os.makedirs(folder, exist_ok=True)
    pattern = os.path.join(folder, "%05d.jpg")
    source = sorted(os.listdir(os.path.join(CHAIR, "frames")))
    cycle = list(range(len(source))) + list(range(len(source) - 2, 0, -1))  # back and forth, no jump
    for f in range(frames):
        path = pattern % f
        if not os.path.exists(path):
            img = cv2.imread(os.path.join(CHAIR, "frames", source[cycle[f % len(cycle)]]))
            cv2.imwrite(path, cover(img, size, cv2.INTER_CUBIC), [cv2.IMWRITE_JPEG_QUALITY, 95])
    labels = os.path.join(folder, "labels.00000.png")
    if not os.path.exists(labels):
        with Image.open(os.path.join(CHAIR, "masks", "00000.png")) as im:  # a palette PNG: its indices are the ids
            ids = np.array(im, dtype=np.uint8)
        cv2.imwrite(labels, cover(ids, size, cv2.INTER_NEAREST))
    return {"plate": pattern, "frames": f"0-{frames - 1}", "parts": ["chair"], "colorspace": "sRGB - Texture",
            "references": [{"frame": 0, "labels": labels}]}


def run_case(spec: dict, out: str, settings: dict, core: str) -> tuple[float, float]:
    """(peak RSS GiB, frames/s) of one segment run in a fresh subprocess."""
    env = {**os.environ, "PYTHONPATH": core}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps([spec, out, settings])], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"case failed ({proc.returncode}): {stderr.strip().splitlines()[-1:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    return usage.ru_maxrss / 2**20, result["written"] / result["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT_CASES, help=f"comma list of size:frames (default {DEFAULT_CASES})")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "smite-long-shot"),
                        help="where plates, the tiny model and outputs go (plates are reused between runs)")
    parser.add_argument("--core", default=os.path.join(REPO, "core"), help="source tree the children import")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    cases = [(name, int(n)) for name, n in (c.split(":") for c in args.cases.split(","))]
    print(f"{os.cpu_count()} cores, core {args.core}")
    print("| backend | plate | frames | peak RSS | frames/s |")
    print("|---|---|---|---|---|")
    for name, frames in cases:
        size = SIZES[name]
        longest = max(n for c, n in cases if SIZES[c] == size)
        spec = build_plate(args.work, "plate", size, longest)
        spec["frames"] = f"0-{frames - 1}"
        settings: dict = {}
        backend = "propagate"
        if name == "diff":
            backend = "diffusion"
            # the reference pass only (temporal off: no guided updates), so 128 frames finish on a CPU;
            # windows, carry and frame reads are those of a guided run
            settings = {"backend": "diffusion", "temporal": False, "diffusion": {
                "model": tiny_model(args.work, args.core), "resolution": 64, "learn_steps": 2}}
        out = os.path.join(args.work, "out", f"{name}_{frames}", "m.####.exr")
        peak, fps = run_case(spec, out, settings, args.core)
        print(f"| {backend} | {size[0]}x{size[1]} | {frames} | {peak:.2f} GiB | {fps:.2f} |", flush=True)


def tiny_model(work: str, core: str) -> str:
    """A tiny random SD (the test model) under `work`, written once."""
    folder = os.path.join(work, "tiny-sd")
    if not os.path.exists(os.path.join(folder, "model_index.json")):
        subprocess.run([sys.executable, "-m", "smite", "models", "make-tiny", folder], check=True,
                       env={**os.environ, "PYTHONPATH": core}, stdout=subprocess.DEVNULL)
    return folder


if __name__ == "__main__":
    main()
