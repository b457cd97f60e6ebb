"""The SMITE-50 ground-truth layout, read the way the authors' evaluation reads it.

One clip folder per video (their `--gt_path`):

    clip/frames_numbers.txt     one line "[i0, i1, ...]": the video frame index of each annotated frame
    clip/<frame folder>/*.png   one folder per annotated frame (natural sort order = order of the list);
                                one binary PNG per part, natural sort order = part order (part k = the
                                k-th PNG, background is label 0); PNGs may sit one folder deeper
    clip/<video>.mp4 or clip/frames/NNNNN.jpg|png   the plate (frame number = video frame index)

A part PNG is grey (`convert('L')`) above 127.5; where parts overlap the smaller one wins. The video
is truncated to a multiple of 4 frames ending just after the last annotated frame (`eval_length`).
"""

from __future__ import annotations

import glob
import os
import re

import cv2
import numpy as np
from PIL import Image

from .errors import BadInputError
from .io.sequence import discover_frames

FRAME_NUMBERS = "frames_numbers.txt"
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
MAX_LENGTH = 288  # authors' scripts/common/common_inference_params.sh:5 (video_length=288)


def natural_key(text: str) -> list:
    """Sort key that orders "frame2" before "frame10" (the `natsort` order their reader uses)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def is_smite50_clip(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, FRAME_NUMBERS))


def read_frame_numbers(path: str) -> list[int]:
    """Annotated frame indices from the first line of `frames_numbers.txt` ("[0, 10, 20]")."""
    with open(path, encoding="utf-8") as handle:
        line = handle.readline().strip()
    if "[" not in line or "]" not in line:
        raise BadInputError(f"{path}: expected a list like [0, 10, 20] on the first line, got {line!r}")
    body = line.split("[", 1)[1].split("]", 1)[0]
    try:
        return [int(x) for x in body.split(",") if x.strip()]
    except ValueError:
        raise BadInputError(f"{path}: frame numbers must be integers, got {line!r}") from None


def part_pngs(frame_folder: str) -> list[str]:
    """The part PNGs of one annotated frame in part order; looks one folder deeper when there are none."""
    pngs = sorted(glob.glob(os.path.join(frame_folder, "*.png")), key=natural_key)
    if not pngs:
        subs = sorted((d for d in os.listdir(frame_folder) if os.path.isdir(os.path.join(frame_folder, d))),
                      key=natural_key)
        if subs:
            pngs = sorted(glob.glob(os.path.join(frame_folder, subs[0], "*.png")), key=natural_key)
    return pngs


def annotation_folders(clip: str) -> list[str]:
    """Folders of the clip that hold part PNGs (directly or one level down), in natural order."""
    names = sorted((d for d in os.listdir(clip) if os.path.isdir(os.path.join(clip, d)) and d != "frames"),
                   key=natural_key)
    return [os.path.join(clip, d) for d in names if part_pngs(os.path.join(clip, d))]


def read_part_labels(pngs: list[str]) -> np.ndarray:
    """Label map `(H, W)` int32 of one annotated frame: 0 background, k = the k-th PNG.

    Each PNG is read as grey and thresholded above 127.5; a pixel claimed by several parts goes to
    the part of smallest area (ties: the earlier PNG).
    """
    if not pngs:
        raise BadInputError("an annotated frame has no part PNG")
    masks = [np.asarray(Image.open(p).convert("L")) > 127.5 for p in pngs]
    shape = masks[0].shape
    if any(m.shape != shape for m in masks):
        raise BadInputError(f"part PNGs of one frame differ in size: {', '.join(pngs)}")
    labels = np.zeros(shape, np.int32)
    taken = np.zeros(shape, bool)
    for k in np.argsort([m.sum() for m in masks], kind="stable"):
        own = masks[k] & ~taken
        labels[own] = k + 1
        taken |= own
    return labels


def eval_length(n_frames: int, annotated: list[int], max_length: int = MAX_LENGTH) -> int:
    """Frames of the video the authors segment and score: a multiple of 4 ending 1-4 frames after the last annotation.

    The video is first cut to `max_length` frames. When more than 3 frames follow the last annotated
    one, it is cut after the 4th, 3rd, 2nd or 1st of them, the first of these that leaves a multiple of
    4 frames; otherwise it is kept whole (then its length need not be a multiple of 4).
    """
    n = min(int(n_frames), int(max_length))
    if not annotated:
        return n
    after = [i for i in range(n) if i > max(annotated)]
    if len(after) > 3:
        for pick in (3, 2, 1, 0):
            keep = after[pick] + 1
            if keep % 4 == 0:
                return keep
    return n


def plate_source(clip: str) -> tuple[str, str]:
    """("sequence", pattern) for `frames/NNNNN.jpg|png`, else ("video", path) for the one video file."""
    for ext in ("jpg", "png"):
        pattern = os.path.join(clip, "frames", f"%05d.{ext}")
        if os.path.isdir(os.path.dirname(pattern)) and discover_frames(pattern):
            return "sequence", pattern
    videos = sorted(f for f in os.listdir(clip) if f.lower().endswith(VIDEO_EXTENSIONS))
    if len(videos) != 1:
        found = ", ".join(videos) if videos else "none"
        raise BadInputError(f"{clip}: expected frames/NNNNN.jpg or exactly one video file (found: {found})")
    return "video", os.path.join(clip, videos[0])


def decode_video(path: str, out_dir: str, max_frames: int) -> str:
    """Write the first `max_frames` frames of a video as lossless PNGs; returns their `%05d` pattern."""
    os.makedirs(out_dir, exist_ok=True)
    pattern = os.path.join(out_dir, "%05d.png")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise BadInputError(f"cannot open video {path} (OpenCV without this codec?)")
    try:
        index = 0
        while index < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            cv2.imwrite(pattern % index, bgr)
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise BadInputError(f"video {path} has no readable frame")
    return pattern
