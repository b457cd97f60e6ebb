"""`smite segment`: a shot manifest in, one matte EXR per frame out."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..config import Settings, load_shot, read_json_file
from ..engine import segment_shot
from ..errors import BadInputError
from ..io.sequence import parse_frame_range
from ..model.settings import PRESETS, DiffusionSettings
from .progress import Progress


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that map onto `Settings` fields (shared by segment, demo and bench)."""
    parser.add_argument("--backend", choices=["propagate", "diffusion"], help="segmentation backend (default propagate)")
    parser.add_argument("--temporal", choices=["on", "off"], help="SMITE temporal module: voting + low-pass (default on)")
    parser.add_argument("--model", help="diffusion: local Stable Diffusion folder or single file (default $SMITE_MODEL)")
    parser.add_argument("--parts", help="diffusion: part model (.smite) from `smite learn` (default: learn first)")
    parser.add_argument("--tracker", choices=["flow", "cotracker"],
                        help="diffusion: point tracker for voting (default flow; cotracker is CC BY-NC)")
    parser.add_argument("--tracker-checkpoint", metavar="PATH",
                        help="diffusion: local CoTracker3 checkpoint (.pth) or torch.hub folder for --tracker cotracker")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="diffusion: a named set of settings under any explicit ones; official = the authors' "
                             "shipped inference (reference pass only, 18-frame windows; default: guided SMITE)")
    parser.add_argument("--settings", metavar="JSON", help="settings file (JSON object of Settings fields)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (repeatable); diffusion.KEY=VALUE for the diffusion backend")


def parse_set_items(items: list[str]) -> tuple[dict, dict]:
    """`--set KEY=VALUE` items -> (Settings fields, DiffusionSettings fields).

    `diffusion.KEY` always goes to the diffusion settings; a bare KEY does too when only the
    diffusion settings have it (so `smite learn --set kv_phase=false` reads naturally). Values are
    JSON where they parse as JSON, strings otherwise.
    """
    top_fields = {f.name for f in dataclasses.fields(Settings)}
    diffusion_fields = {f.name for f in dataclasses.fields(DiffusionSettings)}
    top: dict = {}
    diffusion: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInputError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if key.startswith("diffusion."):
            diffusion[key.split(".", 1)[1]] = parsed
        elif key in diffusion_fields and key not in top_fields:
            diffusion[key] = parsed
        else:
            top[key] = parsed
    return top, diffusion


def settings_from_args(args: argparse.Namespace) -> Settings:
    data: dict = {}
    if getattr(args, "settings", None):
        loaded = read_json_file(args.settings, "settings file")
        if not isinstance(loaded, dict):
            raise BadInputError(f"settings file {args.settings} must hold a JSON object, got {type(loaded).__name__}")
        data.update(loaded)
    top, diffusion = parse_set_items(getattr(args, "set", []) or [])
    data.update(top)
    if not isinstance(data.get("diffusion") or {}, dict):
        raise BadInputError(f"setting 'diffusion' must be an object of diffusion settings, got {data['diffusion']!r}")
    diffusion = {**dict(data.get("diffusion") or {}), **diffusion}
    if getattr(args, "preset", None):
        diffusion["preset"] = args.preset
    if getattr(args, "model", None):
        diffusion["model"] = args.model
    if getattr(args, "parts", None):
        diffusion["part_model"] = args.parts
    if getattr(args, "tracker", None):
        diffusion["tracker"] = args.tracker
    if getattr(args, "tracker_checkpoint", None):
        diffusion["tracker_checkpoint"] = args.tracker_checkpoint
    if diffusion:
        data["diffusion"] = diffusion
    if getattr(args, "backend", None):
        data["backend"] = args.backend
    if getattr(args, "temporal", None):
        data["temporal"] = args.temporal == "on"
    if getattr(args, "context", None) is not None:
        data["context"] = args.context
    return Settings.from_dict(data)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shot", required=True, help="shot manifest (JSON)")
    parser.add_argument("--out", required=True, help="output pattern, e.g. out/mattes.####.exr")
    parser.add_argument("--frames", help="frame range to write, e.g. 1001-1050 (default: the whole shot)")
    parser.add_argument("--context", type=int, help="extra frames read on each side of --frames (default 8)")
    parser.add_argument("--preview", action="store_true", help="also write <name>.smite-preview.png beside the mattes, a contact sheet")
    parser.add_argument("--force", action="store_true", help="redo frames that are already complete")
    parser.add_argument("--quiet", action="store_true", help="no bar; one 'PROGRESS done/total' line per frame")
    parser.add_argument("--scratch", metavar="DIR",
                        help="scratch cache for long shots and farm chunks (default: .smite-scratch beside the mattes)")
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> int:
    shot = load_shot(args.shot)
    settings = settings_from_args(args)
    frames = parse_frame_range(args.frames) if args.frames is not None else None  # "" is an error, not "all"
    progress = Progress(args.quiet)
    try:
        result = segment_shot(shot, args.out, settings, frames=frames, preview=args.preview, force=args.force,
                              progress=progress, scratch=args.scratch)
    finally:
        progress.close()
    if not args.quiet:
        print(f"wrote {len(result.written)} frame(s), {len(result.skipped)} already complete: {args.out}", file=sys.stderr)
        if result.preview:
            print(f"preview: {result.preview}", file=sys.stderr)
        if result.scratch is not None:
            print(result.scratch.describe(), file=sys.stderr)
    return 0
