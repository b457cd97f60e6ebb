"""Quality and speed on clips with ground truth (`smite bench`).

Two clip layouts are read (`--data` is a folder of clip folders, or one clip folder):
- ours (`shared/data`): `frames/NNNNN.jpg`, `masks/NNNNN.png` label maps, `labels.json`;
- SMITE-50 (the authors' data set, `bench_smite50`): `frames_numbers.txt`, one folder of per-part PNGs
  per annotated frame, and the video; it is cut to a multiple of 4 frames as the authors do.
K evenly spaced ground-truth frames (always the first) become references and every other
ground-truth frame is scored. Mattes go through the real engine (EXR files in a temp folder), so
frames/s is what a user gets.

Our measures per clip: J (IoU) and F (DAVIS boundary F, 0.008 of the diagonal) at plate resolution,
averaged over the scored frames and then over parts; mIoU over parts incl. background (from one
confusion matrix per clip); temporal warping error (flicker) between consecutive output frames where
the plate's forward-backward flow agrees; frames/s of `segment_shot`. Parts absent from every chosen
reference cannot be learned from them: for our measures they are left out and their ground-truth
pixels count as background (the table says which parts were scored).
Next to them, on the same scored frames, the authors' own evaluation (`metrics.smite_scores`: 512²
label maps, every part of the clip incl. background, unlearned parts included and scoring 0).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import cv2
import numpy as np

from . import bench_smite50 as s50
from .config import Reference, Settings, ShotSpec
from .engine import segment_shot
from .errors import BadInputError
from .io.image import read_label_map, read_rgb, write_image
from .io.matte import read_matte
from .io.sequence import discover_frames, frame_path
from .metrics import ConfusionAccumulator, boundary_f, jaccard, smite_scores, to_eval_size, warping_error

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
    layout: str = "shared"
    frames: int = 0  # frames segmented (SMITE-50: after the cut to a multiple of 4)
    smite: dict = field(default_factory=dict)  # the authors' metrics.json numbers on the scored frames


@dataclass
class Clip:
    """One clip with ground truth, whatever its layout: what scoring needs."""

    name: str
    layout: str
    plate: str  # frame pattern of the plate
    frames: list[int]  # frames to segment
    annotated: list[int]  # frames with ground truth, all in `frames`
    names: dict[int, str]  # label id -> name; 0 is background
    read_gt: Callable[[int], np.ndarray]  # label map of a frame at its native size (ids of `names`)


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


def is_clip(folder: str) -> bool:
    return is_video_clip(folder) or s50.is_smite50_clip(folder)


def load_clip(folder: str, workdir: str) -> Clip:
    """Read a clip of either layout; a SMITE-50 video is decoded into `workdir`."""
    name = os.path.basename(os.path.normpath(folder))
    if s50.is_smite50_clip(folder):
        return _load_smite50(folder, name, workdir)
    plate = os.path.join(folder, PLATE)
    masks = os.path.join(folder, MASKS)
    frames = discover_frames(plate)
    frame_set = set(frames)
    annotated = [f for f in discover_frames(masks) if f in frame_set]
    with open(os.path.join(folder, "labels.json"), encoding="utf-8") as handle:
        names = {int(i): n for i, n in json.load(handle)["labels"].items()}
    return Clip(name, "shared", plate, frames, annotated, names, lambda f: read_label_map(frame_path(masks, f)))


def _load_smite50(folder: str, name: str, workdir: str) -> Clip:
    numbers = s50.read_frame_numbers(os.path.join(folder, s50.FRAME_NUMBERS))
    ann_dirs = s50.annotation_folders(folder)
    if len(ann_dirs) != len(numbers):
        raise BadInputError(f"{folder}: {s50.FRAME_NUMBERS} lists {len(numbers)} frames but {len(ann_dirs)} "
                            "folders hold part PNGs")
    pngs = {n: s50.part_pngs(d) for n, d in zip(numbers, ann_dirs)}
    stems = [os.path.splitext(os.path.basename(p))[0] for p in pngs[numbers[0]]]
    for n, files in pngs.items():
        if len(files) != len(stems):
            raise BadInputError(f"{folder}: annotated frame {n} has {len(files)} part PNGs, frame {numbers[0]} "
                                f"has {len(stems)} (part k is the k-th PNG, so every frame needs all)")
    kind, source = s50.plate_source(folder)
    plate = source if kind == "sequence" else s50.decode_video(source, os.path.join(workdir, "plate"), s50.MAX_LENGTH)
    frames = discover_frames(plate)
    frames = frames[: s50.eval_length(len(frames), numbers)]
    frame_set = set(frames)
    annotated = sorted(n for n in set(numbers) if n in frame_set)
    names = {0: "background", **{i + 1: s for i, s in enumerate(stems)}}
    return Clip(name, "smite50", plate, frames, annotated, names, lambda f: s50.read_part_labels(pngs[f]))


def score_clip(folder: str, k: int, settings: Settings, progress: Callable | None = None) -> ClipScore | None:
    """Segment one clip from K ground-truth references and score it; None if nothing is left to score."""
    clip_name = os.path.basename(os.path.normpath(folder))
    with tempfile.TemporaryDirectory(prefix=f"smite-bench-{clip_name}-") as tmp:
        clip = load_clip(folder, tmp)
        return _score(clip, k, settings, tmp, progress)


def _fit(gt: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A ground-truth label map at the plate's size (nearest neighbour when the masks differ in size)."""
    gt = np.asarray(gt)
    if gt.shape != shape:
        gt = cv2.resize(gt.astype(np.int32), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return gt


def _score(clip: Clip, k: int, settings: Settings, tmp: str, progress: Callable | None) -> ClipScore | None:
    refs = keyframes(clip.annotated, k)
    scored = [f for f in clip.annotated if f not in refs]
    if not scored:
        return None
    frames, names = clip.frames, clip.names
    shape = read_rgb(frame_path(clip.plate, frames[0])).shape[:2]
    ref_labels = {f: _fit(clip.read_gt(f), shape) for f in refs}
    present = sorted({int(i) for lab in ref_labels.values() for i in np.unique(lab) if i > 0})
    parts = [_part_name(names.get(i, f"part{i}"), i) for i in present]
    remap = np.zeros(max(names) + 1 if names else 1, np.int32)
    remap[present] = np.arange(1, len(present) + 1)
    back = np.array([0, *present], np.int32)  # our label -> the clip's label id
    ref_entries = []
    for f, lab in ref_labels.items():
        path = os.path.join(tmp, f"ref.{f:05d}.png")
        _write_labels(path, remap[np.clip(lab, 0, len(remap) - 1)])
        ref_entries.append(Reference(frame=f, labels=path))
    shot = ShotSpec(plate=clip.plate, frames=tuple(frames), parts=tuple(parts), references=tuple(ref_entries),
                    source=f"{clip.name} (bench)")
    out = os.path.join(tmp, "out", "matte.####.exr")
    start = time.perf_counter()
    segment_shot(shot, out, settings, progress=progress)
    fps = len(frames) / (time.perf_counter() - start)
    mattes = {f: read_matte(frame_path(out, f))[1] for f in frames}
    k_parts = len(parts)
    conf = ConfusionAccumulator(k_parts + 1)
    js = np.zeros((len(scored), k_parts))
    fs = np.zeros((len(scored), k_parts))
    eval_pred, eval_gt = [], []
    for row, f in enumerate(scored):
        gt_native = np.asarray(clip.read_gt(f))
        gt = remap[np.clip(_fit(gt_native, shape), 0, len(remap) - 1)]
        pred = _labels(mattes[f])
        conf.add(pred, gt)
        for p in range(1, k_parts + 1):
            js[row, p - 1] = jaccard(pred == p, gt == p)
            fs[row, p - 1] = boundary_f(pred == p, gt == p)
        eval_pred.append(to_eval_size(back[pred]))
        eval_gt.append(to_eval_size(gt_native))
    warp = _flicker(clip.plate, frames, mattes)
    official = _smite_numbers(np.stack(eval_pred), np.stack(eval_gt), names)
    return ClipScore(clip.name, parts, refs, len(scored), float(js.mean(0).mean()), float(fs.mean(0).mean()),
                     100.0 * conf.miou(), warp, fps, clip.layout, len(frames), official)


def _smite_numbers(pred: np.ndarray, gt: np.ndarray, names: dict[int, str]) -> dict:
    """The authors' metrics for the clip's classes 0..max label id; per-part IoU keyed by part name."""
    num_classes = max(max(names, default=0), int(gt[gt < 255].max(initial=0))) + 1
    if not (gt[(gt > 0) & (gt < 255)]).any():
        return {}  # their F and J need a foreground object in the scored frames
    scores = smite_scores(pred, gt, num_classes)
    scores["iou_per_part"] = {names.get(c, f"part{c}"): v for c, v in enumerate(scores["iou_per_part"])}
    return scores


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


def find_clips(data_dir: str) -> list[str]:
    """Clip folders under `data_dir` (either layout), sorted; `data_dir` itself when it is a clip."""
    if is_clip(data_dir):
        return [data_dir]
    return [os.path.join(data_dir, d) for d in sorted(os.listdir(data_dir)) if is_clip(os.path.join(data_dir, d))]


def run_bench(data_dir: str, k: int, settings: Settings, progress: Callable | None = None) -> list[ClipScore]:
    scores = []
    for folder in find_clips(data_dir):
        score = score_clip(folder, k, settings, progress)
        if score is not None:
            scores.append(score)
    return scores


SMITE_KEYS = (("sF", "f_measure"), ("sJ", "jaccard"), ("smIoU", "mean_iou"))


def format_table(scores: list[ClipScore], k: int, settings: Settings) -> str:
    """Our measures, then the authors' (sF, sJ, smIoU: SMITE's `metrics.json`, 512², all parts incl. background)."""
    head = f"smite bench: backend={settings.backend} keyframes={k} temporal={'on' if settings.temporal else 'off'}"
    theirs = " ".join(f"{label:>6}" for label, _ in SMITE_KEYS)
    lines = [head, f"{'clip':<24} {'refs':<14} {'J':>6} {'F':>6} {'mIoU':>6} {'warp':>8} {'fps':>6} | {theirs}"]
    for s in scores:
        refs = ",".join(map(str, s.references))
        lines.append(f"{s.clip:<24} {refs:<14} {s.J:6.3f} {s.F:6.3f} {s.mIoU:6.1f} {s.warp_error:8.5f} {s.fps:6.1f} | "
                     + _smite_cells(s.smite))
    if scores:
        mean = summary(scores)
        lines.append(f"{'mean':<24} {'':<14} {mean['J']:6.3f} {mean['F']:6.3f} {mean['mIoU']:6.1f} "
                     f"{mean['warp_error']:8.5f} {mean['fps']:6.1f} | " + _smite_cells(mean.get("smite", {})))
    lines.append("sF, sJ, smIoU: SMITE's own evaluation (authors' src/metrics.py) on the same scored frames: "
                 "512x512 labels, F/J over ground-truth parts, mIoU (%) over all parts incl. background")
    return "\n".join(lines)


def _smite_cells(numbers: dict) -> str:
    cells = []
    for label, key in SMITE_KEYS:
        value = numbers.get(key)
        cells.append(f"{'-':>6}" if value is None else (f"{value:6.1f}" if key == "mean_iou" else f"{value:6.3f}"))
    return " ".join(cells)


def summary(scores: list[ClipScore]) -> dict:
    """Means over clips of our measures, and under "smite" of the authors' (over clips that have them)."""
    mean: dict = {key: float(np.nanmean([getattr(s, key) for s in scores]))
                  for key in ("J", "F", "mIoU", "warp_error", "fps")}
    theirs = [s.smite for s in scores if s.smite]
    if theirs:
        mean["smite"] = {key: float(np.mean([t[key] for t in theirs])) for _, key in SMITE_KEYS + (("", "mae"),)}
    return mean


def to_json(scores: list[ClipScore], k: int, settings: Settings) -> dict:
    return {"keyframes": k, "settings": settings.to_dict(), "clips": [asdict(s) for s in scores],
            "mean": summary(scores) if scores else {}}
