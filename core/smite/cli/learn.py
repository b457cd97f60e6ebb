"""`smite learn`: references in, a part model file (`.smite`) out.

The references are read here (`--refs`) or by `engine.learn_parts` (`--shot`); learning itself
(`method.learn`) reads and writes nothing.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from dataclasses import replace

import numpy as np

from ..config import Settings, load_shot
from ..engine import learn_parts
from ..errors import BadInputError, ReferenceMaskError
from ..io.image import read_label_map, read_rgb
from ..method.learn import Example, LearnResult, PartLearner
from ..model.backbone import load_backbone
from ..model.parts import save_part_model
from .segment import parse_set_items
from .progress import Progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--shot", help="shot manifest: learn from its references")
    src.add_argument("--refs", metavar="DIR", help="folder with images/ (or frames/) and masks/ of the same names")
    parser.add_argument("--parts", help="comma-separated part names for --refs (label id k = k-th name)")
    parser.add_argument("--model", help="Stable Diffusion folder or .safetensors/.ckpt (default $SMITE_MODEL)")
    parser.add_argument("--out", required=True, help="part model file to write, e.g. parts.smite")
    parser.add_argument("--steps", type=int, help="learning steps (default 300 epochs x references)")
    parser.add_argument("--holdout", type=int,
                        help="with --shot: reference frame kept for validation (best state kept)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (repeatable), e.g. --set kv_phase=false or --set seed=3; "
                             "learning reads the diffusion settings and the seed")
    parser.add_argument("--quiet", action="store_true", help="no bar; one 'PROGRESS done/total' line per step")


def learn_settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from `--set` (same syntax as `smite segment`); learning reads the diffusion ones and the seed."""
    data = parse_set_items(args.set or [])
    diffusion = data.setdefault("diffusion", {})
    if args.model:
        diffusion["model"] = args.model
    if args.steps is not None:
        diffusion["learn_steps"] = args.steps
    return Settings.from_dict(data)


def examples_from_folder(folder: str, num_parts: int) -> list[Example]:
    """References from `folder/{images|frames}/NAME.*` with label maps `folder/masks/NAME.png`."""
    candidates = [os.path.join(folder, d) for d in ("images", "frames")]
    images_dir = next((d for d in candidates if os.path.isdir(d)), None)
    if images_dir is None or not os.path.isdir(os.path.join(folder, "masks")):
        raise BadInputError(f"reference folder {folder} needs images/ (or frames/) and masks/ subfolders")
    examples = []
    for path in sorted(glob.glob(os.path.join(images_dir, "*"))):
        stem = os.path.splitext(os.path.basename(path))[0]
        masks = glob.glob(os.path.join(glob.escape(folder), "masks", glob.escape(stem) + ".*"))
        if not masks:
            continue
        labels = read_label_map(masks[0])
        if int(labels.max()) > num_parts:
            raise ReferenceMaskError(
                f"label map {masks[0]} has label id {int(labels.max())} but only {num_parts} part(s) were named")
        examples.append(Example(read_rgb(path), labels.astype(np.uint8), stem))
    if not examples:
        raise BadInputError(f"no image in {images_dir} has a label map of the same name in {folder}/masks")
    return examples


def learn_from_folder(folder: str, parts: list[str], out_path: str, job: Settings, progress: Progress) -> LearnResult:
    """`--refs`: learn from a reference folder and write the part model to `out_path`."""
    examples = examples_from_folder(folder, len(parts))
    settings = job.diffusion
    result = PartLearner(load_backbone(settings.model or None), settings, job.seed)(examples, parts, progress=progress)
    save_part_model(out_path, result.model)
    return replace(result, path=out_path)


def run(args: argparse.Namespace) -> int:
    job = learn_settings_from_args(args)
    progress = Progress(args.quiet)
    try:
        if args.shot:
            result = learn_parts(load_shot(args.shot), args.out, job, holdout=args.holdout,
                                 progress=progress)
        else:
            if not args.parts:
                raise BadInputError("--refs needs --parts a,b,c (label id k is the k-th name)")
            parts = [p.strip() for p in args.parts.split(",") if p.strip()]
            result = learn_from_folder(args.refs, parts, args.out, job, progress)
    finally:
        progress.close()
    if not args.quiet:
        val = "" if result.val_miou is None else f", held-out mIoU {result.val_miou:.3f} (step {result.best_step})"
        print(f"learned {', '.join(result.parts)} in {result.steps} step(s), final loss {result.losses[-1]:.4f}"
              f"{val}: {result.path}", file=sys.stderr)
    return 0
