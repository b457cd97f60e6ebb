"""`smite import-official`: the authors' `ckpt_best.pt` as a SMITE part model (.smite).

The checkpoint holds part vectors and full attn2 k/v weights (see smite.model.official); the part model
stores k/v as deltas from the given Stable Diffusion and its backbone hash, so `smite segment --parts`
then refuses any other model, as for parts from `smite learn`.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import BadInputError
from ..model.backbone import load_backbone
from ..model.official import official_to_part_model, read_official
from ..model.parts import save_part_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ckpt", metavar="CKPT", help="the authors' checkpoint, e.g. logs/log_car_…/ckpt_best.pt")
    parser.add_argument("--parts", required=True,
                        help="comma-separated part names: the words of its --prompt after 'background', in order")
    parser.add_argument("--model", help="the Stable Diffusion it was trained on, SD 2.1-base for the authors' "
                                        "defaults (their utils/args.py:14); folder or file, default $SMITE_MODEL")
    parser.add_argument("--out", required=True, help="part model file to write, e.g. parts.smite")
    parser.add_argument("--base-prompt", default="",
                        help="text encoded for the token columns after the parts (default empty, as the authors' "
                             "reference pass; their --prompt reproduces their guided pass and training)")


def run(args: argparse.Namespace) -> int:
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts:
        raise BadInputError("--parts needs at least one name, e.g. --parts body,light,plate,wheel,window")
    ckpt = read_official(args.ckpt)  # before loading SD: a wrong file fails in a second, not a minute
    backbone = load_backbone(args.model)
    model = official_to_part_model(ckpt, backbone, parts, base_prompt=args.base_prompt)
    save_part_model(args.out, model)
    print(f"imported {', '.join(model.parts)} ({len(model.kv_deltas)} k/v weight(s)) for backbone "
          f"{model.backbone_hash}: {args.out}", file=sys.stderr)
    return 0
