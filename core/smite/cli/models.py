"""`smite models`: write the tiny test model, or fetch SD 2.1-base where internet exists.

Nothing else in SMITE downloads; this command is the one explicit, opt-in exception.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import MissingModelError
from ..model.backbone import DEFAULT_REPO, MODEL_DIR_ENV, make_tiny

DEFAULT_MODEL_DIR = os.path.join("~", ".cache", "smite", "models")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    tiny = sub.add_parser("make-tiny", help="write a tiny random SD (diffusers format) for tests and demos")
    tiny.add_argument("dir", help="output folder")
    tiny.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    fetch = sub.add_parser("fetch", help="download SD 2.1-base with huggingface_hub (needs internet)")
    fetch.add_argument("--repo", default=DEFAULT_REPO, help=f"Hugging Face repository (default {DEFAULT_REPO})")
    fetch.add_argument("--dest", help=f"target folder (default ${MODEL_DIR_ENV} or {DEFAULT_MODEL_DIR}/<repo name>)")


def fetch(repo: str, dest: str | None = None) -> str:
    """Download a diffusers SD repo into `dest`; MissingModelError (one line) when that is impossible."""
    root = os.environ.get(MODEL_DIR_ENV, DEFAULT_MODEL_DIR)
    dest = os.path.expanduser(dest or os.path.join(root, repo.split("/")[-1]))
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise MissingModelError(
            f"cannot fetch {repo}: HF_HUB_OFFLINE is set; copy a diffusers SD folder here and pass --model")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MissingModelError(
            "cannot fetch models: huggingface_hub is not installed (install/setup.sh --extras diffusion)") from None
    patterns = ["model_index.json", "*/*.json", "*/*.txt", "unet/*.safetensors", "vae/*.safetensors",
                "text_encoder/*.safetensors"]
    try:
        return snapshot_download(repo_id=repo, local_dir=dest, allow_patterns=patterns)
    except Exception as exc:  # network, auth, missing repo: all mean "no model", said in one line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise MissingModelError(
            f"cannot fetch {repo} into {dest} (no internet or no access?): {reason}; "
            "copy a diffusers SD folder by hand and pass --model"
        ) from None


def run(args: argparse.Namespace) -> int:
    if args.models_command == "make-tiny":
        folder = make_tiny(args.dir, seed=args.seed)
        print(f"tiny model: {os.path.abspath(folder)}")
    else:
        folder = fetch(args.repo, args.dest)
        print(f"model: {folder} (use --model {folder} or set $SMITE_MODEL)")
    sys.stdout.flush()
    return 0
