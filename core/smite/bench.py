"""Quality and speed on clips with ground truth (`smite bench`).

For every clip folder (layout of `shared/data`: `frames/NNNNN.jpg`, `masks/NNNNN.png` label maps,
`labels.json`), K evenly spaced ground-truth frames (always the first) become references and every
other ground-truth frame is scored. Mattes go through the real engine (EXR files in a temp folder),
so frames/s is what a user gets.

Measures per clip: J (IoU) and F (DAVIS boundary F, 0.008 of the diagonal), both averaged over the
scored frames and then over parts; mIoU over parts incl. background (SMITE's measure, from one
confusion matrix per clip); temporal warping error (flicker) between consecutive output frames
where the plate's forward-backward flow agrees; frames/s of `segment_shot`.
Parts absent from every chosen reference cannot be learned from them: they are left out and their
ground-truth pixels count as background (the table says which parts were scored).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from .config import Reference, Settings, ShotSpec
from .engine import segment_shot
from .io.image import read_label_map, read_rgb, write_image
from .io.matte import read_matte
from .io.sequence import discover_frames, frame_path
from .metrics import ConfusionAccumulator, boundary_f, jaccard, warping_error

PLATE = "frames/%05d.jpg"
MASKS = "masks/%05d.png"


@dataclass
class ClipScore:
    clip: str
    parts: list[str]
    references: list[int]
    scored_frames: int
    J: float
    F: float
    mIoU: float
    warp_error: float
    fps: float


def keyframes(annotated: list[int], k: int) -> list[int]:
    """K evenly spaced annotated frames, always including the first."""
    if k >= len(annotated):
        return list(annotated)
    picks = np.linspace(0, len(annotated), k, endpoint=False)
    return sorted({annotated[int(math.floor(p))] for p in picks})


def _part_name(text: str, index: int) -> str:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    return name if name and name[0].isalpha() else f"part{index}"


def is_video_clip(folder: str) -> bool:
    return os.path.isdir(os.path.join(folder, "frames")) and os.path.isdir(os.path.join(folder, "masks")) \
        and not os.path.isdir(os.path.join(folder, "objects"))  # PASCAL-Part stills carry objects/: not a video


def score_clip(folder: str, k: int, settings: Settings, progress: Callable | None = None) -> ClipScore | None:
    """Segment one clip from K ground-truth references and score it; None if nothing is left to score."""
    clip = os.path.basename(os.path.normpath(folder))
    plate = os.path.join(folder, PLATE)
    masks = os.path.join(folder, MASKS)
    frames = discover_frames(plate)
    frame_set = set(frames)
    annotated = [f for f in discover_frames(masks) if f in frame_set]
    refs = keyframes(annotated, k)
    scored = [f for f in annotated if f not in refs]
    if not scored:
        return None
    with open(os.path.join(folder, "labels.json"), encoding="utf-8") as handle:
        names = {int(i): n for i, n in json.load(handle)["labels"].items()}
    ref_labels = {f: read_label_map(frame_path(masks, f)) for f in refs}
    present = sorted({int(i) for lab in ref_labels.values() for i in np.unique(lab) if i > 0})
    parts = [_part_name(names.get(i, f"part{i}"), i) for i in present]
    remap = np.zeros(max(names) + 1 if names else 1, np.int32)
    remap[present] = np.arange(1, len(present) + 1)
    with tempfile.TemporaryDirectory(prefix=f"smite-bench-{clip}-") as tmp:
        ref_entries = []
        for f, lab in ref_labels.items():
            path = os.path.join(tmp, f"ref.{f:05d}.png")
            _write_labels(path, remap[np.clip(lab, 0, len(remap) - 1)])
            ref_entries.append(Reference(frame=f, labels=path))
        shot = ShotSpec(plate=plate, frames=tuple(frames), parts=tuple(parts), references=tuple(ref_entries),
                        source=f"{clip} (bench)")
        out = os.path.join(tmp, "out", "matte.####.exr")
        start = time.perf_counter()
        segment_shot(shot, out, settings, progress=progress)
        fps = len(frames) / (time.perf_counter() - start)
        mattes = {f: read_matte(frame_path(out, f))[1] for f in frames}
    k_parts = len(parts)
    conf = ConfusionAccumulator(k_parts + 1)
    js = np.zeros((len(scored), k_parts))
    fs = np.zeros((len(scored), k_parts))
    for row, f in enumerate(scored):
        gt = read_label_map(frame_path(masks, f))
        gt = remap[np.clip(gt, 0, len(remap) - 1)]
        pred = _labels(mattes[f])
        conf.add(pred, gt)
        for p in range(1, k_parts + 1):
            js[row, p - 1] = jaccard(pred == p, gt == p)
            fs[row, p - 1] = boundary_f(pred == p, gt == p)
    warp = _flicker(plate, frames, mattes)
    return ClipScore(clip, parts, refs, len(scored), float(js.mean(0).mean()), float(fs.mean(0).mean()),
                     100.0 * conf.miou(), warp, fps)


def _labels(mattes: np.ndarray) -> np.ndarray:
    """Hard labels from part mattes `(K, H, W)`: background where no part reaches 0.5 of the mass."""
    bg = np.clip(1.0 - mattes.sum(0, keepdims=True), 0.0, 1.0)
    return np.concatenate([bg, mattes]).argmax(0).astype(np.int32)


def _flicker(plate: str, frames: list[int], mattes: dict[int, np.ndarray]) -> float:
    errors = []
    prev = read_rgb(frame_path(plate, frames[0]))
    for a, b in zip(frames, frames[1:]):
        cur = read_rgb(frame_path(plate, b))
        e = warping_error(mattes[a], mattes[b], prev, cur)
        if not math.isnan(e):
            errors.append(e)
        prev = cur
    return float(np.mean(errors)) if errors else float("nan")


def _write_labels(path: str, labels: np.ndarray) -> None:
    write_image(path, labels.astype(np.uint8)[..., None], dtype="uint8")


def run_bench(data_dir: str, k: int, settings: Settings, progress: Callable | None = None) -> list[ClipScore]:
    clips = sorted(d for d in os.listdir(data_dir) if is_video_clip(os.path.join(data_dir, d)))
    scores = []
    for clip in clips:
        score = score_clip(os.path.join(data_dir, clip), k, settings, progress)
        if score is not None:
            scores.append(score)
    return scores


def format_table(scores: list[ClipScore], k: int, settings: Settings) -> str:
    head = f"smite bench: backend={settings.backend} keyframes={k} temporal={'on' if settings.temporal else 'off'}"
    lines = [head, f"{'clip':<24} {'refs':<14} {'J':>6} {'F':>6} {'mIoU':>6} {'warp':>8} {'fps':>6}"]
    for s in scores:
        refs = ",".join(map(str, s.references))
        lines.append(f"{s.clip:<24} {refs:<14} {s.J:6.3f} {s.F:6.3f} {s.mIoU:6.1f} {s.warp_error:8.5f} {s.fps:6.1f}")
    if scores:
        mean = summary(scores)
        lines.append(f"{'mean':<24} {'':<14} {mean['J']:6.3f} {mean['F']:6.3f} {mean['mIoU']:6.1f} "
                     f"{mean['warp_error']:8.5f} {mean['fps']:6.1f}")
    return "\n".join(lines)


def summary(scores: list[ClipScore]) -> dict[str, float]:
    return {key: float(np.nanmean([getattr(s, key) for s in scores])) for key in ("J", "F", "mIoU", "warp_error", "fps")}


def to_json(scores: list[ClipScore], k: int, settings: Settings) -> dict:
    return {"keyframes": k, "settings": settings.to_dict(), "clips": [asdict(s) for s in scores],
            "mean": summary(scores) if scores else {}}
