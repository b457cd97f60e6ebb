"""`smite learn`: references in, a part model file (`.smite`) out."""

from __future__ import annotations

import argparse
import sys

from ..config import Settings, load_shot
from ..errors import BadInputError
from ..method.learn import examples_from_folder, learn_examples, learn_parts
from ..model.backbone import load_backbone
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


def run(args: argparse.Namespace) -> int:
    job = learn_settings_from_args(args)
    settings = job.diffusion
    progress = Progress(args.quiet)
    try:
        if args.shot:
            shot = load_shot(args.shot)
            backbone = load_backbone(settings.model or None)
            result = learn_parts(shot, args.out, settings, seed=job.seed, backbone=backbone, holdout=args.holdout,
                                 progress=progress)
        else:
            if not args.parts:
                raise BadInputError("--refs needs --parts a,b,c (label id k is the k-th name)")
            parts = [p.strip() for p in args.parts.split(",") if p.strip()]
            examples = examples_from_folder(args.refs, len(parts))
            backbone = load_backbone(settings.model or None)
            result = learn_examples(examples, parts, args.out, settings, seed=job.seed, backbone=backbone,
                                    progress=progress)
    finally:
        progress.close()
    if not args.quiet:
        val = "" if result.val_miou is None else f", held-out mIoU {result.val_miou:.3f} (step {result.best_step})"
        print(f"learned {', '.join(result.parts)} in {result.steps} step(s), final loss {result.losses[-1]:.4f}"
              f"{val}: {result.path}", file=sys.stderr)
    return 0
