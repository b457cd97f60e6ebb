"""`smite bench`: quality and speed tables on clips with ground truth."""

from __future__ import annotations

import argparse
import os

from ..bench import format_table, run_bench, to_json
from ..errors import BadInputError
from ..hostapi.atomic import write_json
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
        write_json(args.json, to_json(scores, args.keyframes, settings), sort_keys=True)
    return 0
