"""`smite bench`: quality and speed tables on clips with ground truth."""

from __future__ import annotations

import argparse
import json
import os

from ..bench import format_table, run_bench, to_json
from ..errors import BadInputError
from .progress import Progress
from .segment import add_settings_arguments, settings_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="folder of clip folders, or one clip folder: ours (frames/, masks/, labels.json) "
                        "or SMITE-50 (frames_numbers.txt, per-part PNG folders, the video)")
    parser.add_argument("--keyframes", type=int, default=1, help="ground-truth frames given as references (default 1)")
    parser.add_argument("--json", metavar="OUT.json", help="also write the numbers as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the table")
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.data):
        raise BadInputError(f"bench data folder not found: {args.data}")
    if args.keyframes < 1:
        raise BadInputError(f"--keyframes must be >= 1, got {args.keyframes}")
    settings = settings_from_args(args)
    progress = None if args.quiet else Progress()
    try:
        scores = run_bench(args.data, args.keyframes, settings, progress)
    finally:
        if progress is not None:
            progress.close()
    print(format_table(scores, args.keyframes, settings))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(to_json(scores, args.keyframes, settings), handle, indent=2, sort_keys=True)
        os.replace(tmp, args.json)
    return 0
