"""`smite farm openjd|opencue|deadline`: write a farm job for a shot (nothing is submitted).

The job runs `python -m smite learn` once when a part model must be trained, then
`python -m smite segment --frames A-B --quiet` per chunk; see `smite.farm`.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..config import load_shot
from ..errors import OutputError
from ..farm.job import DEFAULT_CHUNK, DEFAULT_GPU_MEMORY_GB, FarmJob
from ..io.sequence import check_output_pattern, parse_frame_range
from .segment import add_settings_arguments, settings_from_args

FORMATS = ("openjd", "opencue", "deadline")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, help="openjd (canonical, runs with 'openjd run'), opencue, deadline")
    parser.add_argument("--shot", required=True, help="shot manifest (JSON)")
    parser.add_argument("--out", required=True, help="output pattern, e.g. out/mattes.####.exr")
    parser.add_argument("--frames", help="contiguous frame range to render (default: the whole shot)")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help=f"frames per task (default {DEFAULT_CHUNK})")
    parser.add_argument("--context", type=int, help="extra frames read on each side of a chunk (default 8)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter of the SMITE venv on the workers (default: this one)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per task (default 1; 0 for CPU nodes)")
    parser.add_argument("--gpu-memory", type=int, default=DEFAULT_GPU_MEMORY_GB, metavar="GB",
                        help=f"GPU memory per task for OpenCue (default {DEFAULT_GPU_MEMORY_GB})")
    parser.add_argument("--name", help="job name (default: smite_<manifest name>)")
    parser.add_argument("--show", help="OpenCue show (default $SHOW or 'smite')")
    parser.add_argument("--learn-job-id", help="Deadline: id of an already submitted Learn job to depend on")
    parser.add_argument("--output",
                        help="file to write (openjd, opencue; default stdout) or folder (deadline; default .)")
    add_settings_arguments(parser)


def _passed_options(args: argparse.Namespace) -> tuple[str, ...]:
    """Settings options given here, spelled again for the tasks' `smite segment`."""
    options: list[str] = []
    if args.temporal:
        options += ["--temporal", args.temporal]
    if args.settings:
        options += ["--settings", os.path.abspath(args.settings)]
    for item in args.set:
        options += ["--set", item]
    return tuple(options)


def build_job(args: argparse.Namespace) -> FarmJob:
    settings = settings_from_args(args)  # fails here, not on the farm, when a setting is wrong
    check_output_pattern(args.out)
    shot = load_shot(args.shot)
    frames = parse_frame_range(args.frames) if args.frames else None
    return FarmJob.for_shot(
        args.shot, shot, args.out, frames, name=args.name, chunk=args.chunk, context=settings.context,
        backend=args.backend, model=args.model, parts=args.parts, options=_passed_options(args),
        python=args.python, gpus=args.gpus, gpu_memory_gb=args.gpu_memory,
    )


def _write(text: str, output: str | None) -> None:
    if not output or output == "-":
        sys.stdout.write(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror}") from None
    print(f"wrote {output}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    job = build_job(args)
    if args.format == "openjd":
        from ..farm.openjd import openjd_template, to_text, validate_template

        template = openjd_template(job)
        validate_template(template)
        _write(to_text(template), args.output)
    elif args.format == "opencue":
        from ..farm.opencue import opencue_spec

        _write(opencue_spec(job, show=args.show) + "\n", args.output)
    else:
        from ..farm.deadline import deadline_files

        folder = args.output or "."
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {folder}: {exc.strerror}") from None
        for name, text in deadline_files(job, learn_job_id=args.learn_job_id).items():
            _write(text, os.path.join(folder, name))
    return 0
