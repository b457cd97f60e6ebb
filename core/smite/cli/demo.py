"""`smite demo`: segment the bundled sample (PUMaVOS chair reflection) from one keyframe."""

from __future__ import annotations

import argparse
import os
import sys

from ..config import load_shot
from ..engine import segment_shot
from ..errors import MissingModelError
from .progress import Progress
from .segment import add_settings_arguments, settings_from_args

# The sample lives in the repository (tests/data), next to the editable install made by install/setup.sh.
SAMPLE_ENV = "SMITE_DEMO_SHOT"
SAMPLE_SHOT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "data", "chair", "shot.json")


def sample_shot_path() -> str:
    path = os.environ.get(SAMPLE_ENV) or os.path.normpath(SAMPLE_SHOT)
    if not os.path.isfile(path):
        raise MissingModelError(f"bundled sample not found at {path} (set ${SAMPLE_ENV} to a shot manifest)")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo-out", help="output folder (default ./demo-out)")
    parser.add_argument("--quiet", action="store_true", help="no bar; one 'PROGRESS done/total' line per frame")
    add_settings_arguments(parser)


# Without a real Stable Diffusion, the diffusion demo runs the whole SMITE pipeline on a tiny random
# model at 64 px: it shows the plumbing (learn, inflated attention, guided denoising, EXRs), not quality.
TINY_DEMO = {"resolution": 64, "learn_steps": 30, "kv_phase": False, "window": 8, "overlap": 4, "guide_iters": 3}


def _tiny_diffusion(settings, out: str):
    if settings.backend != "diffusion" or settings.diffusion.model or os.environ.get("SMITE_MODEL"):
        return settings
    from ..model.backbone import make_tiny

    folder = make_tiny(os.path.join(out, "tiny-sd"), seed=settings.seed)
    print(f"no Stable Diffusion model given (--model or $SMITE_MODEL): using a tiny random one at {folder}; "
          "its mattes show the pipeline, not SMITE's quality", file=sys.stderr)
    return settings.replace(diffusion=settings.diffusion.replace(model=str(folder), **TINY_DEMO))


def run(args: argparse.Namespace) -> int:
    shot = load_shot(sample_shot_path())
    settings = _tiny_diffusion(settings_from_args(args), args.out)
    out_pattern = os.path.join(args.out, "mattes.####.exr")
    progress = Progress(args.quiet)
    try:
        result = segment_shot(shot, out_pattern, settings, preview=True, progress=progress)
    finally:
        progress.close()
    print(f"sample: {shot.source} ({len(shot.frames)} frames, parts: {', '.join(shot.parts)}, "
          f"keyframe {shot.reference_frames[0]}, backend {settings.backend})")
    print(f"mattes: {os.path.abspath(out_pattern)} ({len(result.written)} written, {len(result.skipped)} already done)")
    print(f"preview: {os.path.abspath(result.preview or '')}")
    sys.stdout.flush()
    return 0
