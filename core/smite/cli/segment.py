"""`smite segment`: a shot manifest in, one matte EXR per frame out."""

from __future__ import annotations

import argparse
import json
import sys

from ..backends import BACKEND_NAMES
from ..config import BACKEND_SETTINGS, SETTINGS_VERSION, SHARED_UNTIL_3, Settings, is_retired_setting, load_shot, \
    read_json_file, setting_path, upgrade_settings_dict
from ..engine import segment_shot
from ..errors import BadInputError
from ..io.sequence import parse_frame_range
from ..model.settings import PRESETS
from .progress import Progress


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that map onto `Settings` fields (shared by segment, demo and bench)."""
    parser.add_argument("--backend", choices=BACKEND_NAMES, help="segmentation backend (default propagate)")
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
    parser.add_argument("--settings", metavar="JSON", help="settings file (JSON object of Settings fields; version 1 files are upgraded)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (repeatable); propagate.KEY or diffusion.KEY names the "
                             "backend, a bare KEY is placed where it is unique (e.g. carry_decay: propagate)")


def parse_set_items(items: list[str]) -> dict:
    """`--set KEY=VALUE` items -> settings JSON (this version's shape: each backend's own nested).

    ``propagate.KEY`` and ``diffusion.KEY`` name their backend; a bare KEY is placed by
    `config.setting_path` (shared, else the one backend that has it), so the old flat names
    (``--set carry_decay=0.9``) and ``smite learn --set kv_phase=false`` keep working; a bare name of
    `config.SHARED_UNTIL_3` (``refine_radius``) sets every backend's, as it did when shared. Values are
    JSON where they parse as JSON, strings otherwise.
    """
    data: dict = {"version": SETTINGS_VERSION}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInputError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if is_retired_setting(key):  # a file may still name it and loads without it; asked for here, say so
            raise BadInputError(f"setting '{key}' is retired and does nothing; remove it from --set")
        if key in SHARED_UNTIL_3:  # every backend has one: a bare name sets each, as a version-2 file does
            for section in BACKEND_SETTINGS:
                data.setdefault(section, {})[key] = parsed
            continue
        section, name = setting_path(key)
        (data if section is None else data.setdefault(section, {}))[name] = parsed
    return data


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings file (any version), then `--set` items, then the named options, each over the last."""
    data: dict = {"version": SETTINGS_VERSION}
    if getattr(args, "settings", None):
        loaded = read_json_file(args.settings, "settings file")
        if not isinstance(loaded, dict):
            raise BadInputError(f"settings file {args.settings} must hold a JSON object, got {type(loaded).__name__}")
        data = upgrade_settings_dict(loaded)
    overrides = parse_set_items(getattr(args, "set", []) or [])
    diffusion = overrides.setdefault("diffusion", {})
    for option, name in (("preset", "preset"), ("model", "model"), ("parts", "part_model"), ("tracker", "tracker"),
                         ("tracker_checkpoint", "tracker_checkpoint")):
        if getattr(args, option, None):
            diffusion[name] = getattr(args, option)
    if getattr(args, "backend", None):
        overrides["backend"] = args.backend
    if getattr(args, "temporal", None):
        overrides["temporal"] = args.temporal == "on"
    if getattr(args, "context", None) is not None:
        overrides["context"] = args.context
    for key, value in overrides.items():
        if key in BACKEND_SETTINGS:  # merged field by field into the file's
            for part in (data.get(key), value):
                if part is not None and not isinstance(part, dict):
                    raise BadInputError(f"setting '{key}' must be an object of {key} settings, got {part!r}")
            value = {**(data.get(key) or {}), **value}
        data[key] = value
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
        if result.scratch is not None and result.scratch.used:  # a backend that needs none (diffusion) says nothing
            print(result.scratch.describe(), file=sys.stderr)
    return 0
