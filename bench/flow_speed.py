"""Timing of the weight-free tracker and the plate-guided matte refinement on a real clip.

Run: .venv/bin/python bench/flow_speed.py [clip folder] [frames]
Prints milliseconds per frame; no asserts. Uses frames/*.jpg (and masks/*.png for the visibility
and matte-quality numbers) from a clip folder such as /work/shared/data/davis16_car-shadow.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from smite.refine import refine_to_plate
from smite.track.flow import PRESETS, FlowTracker, compute_flows, dense_tracks

CLIP = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/data/davis16_car-shadow")
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 24
HALF_WINDOW = 7  # voting window W = 15


def _load() -> tuple[np.ndarray, np.ndarray]:
    names = sorted((CLIP / "frames").glob("*.jpg"))[:COUNT]
    video = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in names]).astype(np.float32) / 255.0
    masks = np.stack([np.asarray(Image.open(CLIP / "masks" / (p.stem + ".png"))) > 0 for p in names])
    return video, masks


def _ms(fn, repeat: int = 1) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1000.0


def main() -> None:
    video, masks = _load()
    t_count, h, w = video.shape[:3]
    print(f"clip {CLIP.name}: {t_count} frames {w}x{h}, cv2 {cv2.__version__}")

    print("\n-- compute_flows (both directions + consistency), ms per frame --")
    for max_side in (480, 360):
        for preset in PRESETS:
            ms = _ms(lambda: compute_flows(video, max_side=max_side, preset=preset)) / (t_count - 1)
            print(f"max_side {max_side:4d} preset {preset:9s}: {ms:6.1f} ms/frame")

    mid = t_count // 2
    window = range(max(0, mid - HALF_WINDOW), min(t_count, mid + HALF_WINDOW + 1))
    print(f"\n-- dense_tracks from frame {mid} to the {len(window)} frames of its window (voting), max_side 480 --")
    for preset in PRESETS:
        flows = compute_flows(video, max_side=480, preset=preset)
        for stride in (1, 2):
            ms = _ms(lambda: dense_tracks(flows, mid, window, stride=stride), repeat=3)
            pts, vis = dense_tracks(flows, mid, window, stride=stride)
            grid = flows.grid_points(stride)
            gx = np.clip(np.round(grid[:, 0]).astype(int), 0, w - 1)
            gy = np.clip(np.round(grid[:, 1]).astype(int), 0, h - 1)
            on = masks[mid][gy, gx]
            # Label agreement: visible object tracks that land on the object mask in the other frames.
            hits, total = 0, 0
            for i, s in enumerate(window):
                p, v = pts[i, on].numpy(), vis[i, on].numpy()
                px = np.clip(np.round(p[v, 0]).astype(int), 0, w - 1)
                py = np.clip(np.round(p[v, 1]).astype(int), 0, h - 1)
                hits, total = hits + masks[s][py, px].sum(), total + v.sum()
            print(
                f"{preset:9s} stride {stride}: {pts.shape[1]:6d} points {ms:6.1f} ms/frame,"
                f" visible {vis.float().mean():.3f}"
                f" (object {vis[:, on].float().mean():.3f}), visible object tracks on the mask {hits / total:.4f}"
            )

    tracker = FlowTracker()
    queries = np.stack(np.meshgrid(np.linspace(0, w - 1, 64), np.linspace(0, h - 1, 64)), -1).reshape(-1, 2)
    q = np.concatenate([np.full((len(queries), 1), mid), queries], axis=1)
    ms = _ms(lambda: tracker.track(video, q), repeat=3)
    print(f"track(): 64x64 queries from one frame through all {t_count} frames: {ms:6.1f} ms")

    print("\n-- refine_to_plate, ms per frame --")
    for size in ((480, 854), (1080, 1920)):
        plate = cv2.resize(video[mid], size[::-1], interpolation=cv2.INTER_LINEAR)
        truth = cv2.resize(masks[mid].astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST) > 0
        for k in (2, 4):
            for low in (64, 240):
                fg = cv2.resize(truth.astype(np.float32), (low * size[1] // size[0], low), interpolation=cv2.INTER_AREA)
                probs = np.stack([1 - fg] + [fg / (k - 1)] * (k - 1))
                ms = _ms(lambda: refine_to_plate(probs, plate), repeat=5)
                line = f"{size[1]}x{size[0]} K={k} from {fg.shape[1]}x{fg.shape[0]}: {ms:6.1f} ms"
                if k == 2:
                    out = refine_to_plate(probs, plate)[1] > 0.5
                    bil = cv2.resize(fg, size[::-1], interpolation=cv2.INTER_LINEAR) > 0.5
                    iou = (out & truth).sum() / (out | truth).sum()
                    iou_b = (bil & truth).sum() / (bil | truth).sum()
                    line += f"   IoU vs mask {iou:.4f} (bilinear {iou_b:.4f})"
                print(line)


if __name__ == "__main__":
    main()
