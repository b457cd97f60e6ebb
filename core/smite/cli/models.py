"""`smite models`: write the tiny test model, or fetch SD 2.1-base where internet exists.

Nothing else in SMITE downloads; this command is the one explicit, opt-in exception. The original
repository (stabilityai/stable-diffusion-2-1-base) went offline in November 2025, so the default is the
community mirror with the original as a fallback. Whatever was downloaded must have SD 2.1-base's configs
(a wrong model would run and give poor mattes without a word), and where it came from (repository,
resolved commit) is written beside it, where `load_backbone` and `smite doctor` read it.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import MissingModelError
from ..model.backbone import DEFAULT_REPOS, MODEL_DIR_ENV, make_tiny, sd21_base_mismatches, write_source

DEFAULT_MODEL_DIR = os.path.join("~", ".cache", "smite", "models")
# configs, tokenizer files and the three networks' safetensors: what load_backbone reads, nothing more
PATTERNS = ["model_index.json", "*/*.json", "*/*.txt", "unet/*.safetensors", "vae/*.safetensors",
            "text_encoder/*.safetensors"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    tiny = sub.add_parser("make-tiny", help="write a tiny random SD (diffusers format) for tests and demos")
    tiny.add_argument("dir", help="output folder")
    tiny.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    fetch = sub.add_parser("fetch", help="download SD 2.1-base with huggingface_hub (needs internet)")
    fetch.add_argument("--repo", help=f"Hugging Face repository (default {DEFAULT_REPOS[0]}, "
                                      f"then {DEFAULT_REPOS[1]} if that fails)")
    fetch.add_argument("--revision", help="branch, tag or commit (default main); the commit fetched is recorded")
    fetch.add_argument("--dest", help=f"target folder (default ${MODEL_DIR_ENV} or {DEFAULT_MODEL_DIR}/<repo name>)")
    fetch.add_argument("--no-check", action="store_true",
                       help="accept configs other than SD 2.1-base's (e.g. SD 1.5 from --repo)")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def fetch(repo: str | None = None, dest: str | None = None, revision: str | None = None, check: bool = True) -> str:
    """Download a diffusers SD repo (default: DEFAULT_REPOS in order) into `dest`; returns the folder.

    The revision is resolved to a commit first and that commit downloaded, so the recorded commit is what
    is on disk. MissingModelError (one line) when no repository can be fetched or the configs are not
    SD 2.1-base's (unless `check` is False).
    """
    repos = [repo] if repo else list(DEFAULT_REPOS)
    root = os.environ.get(MODEL_DIR_ENV, DEFAULT_MODEL_DIR)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise MissingModelError(
            f"cannot fetch {repos[0]}: HF_HUB_OFFLINE is set; copy a diffusers SD folder here and pass --model")
    try:
        import huggingface_hub
    except ImportError:
        raise MissingModelError(
            "cannot fetch models: huggingface_hub is not installed (install/setup.sh --extras diffusion)") from None
    failures = []
    for candidate in repos:
        target = os.path.expanduser(dest or os.path.join(root, candidate.split("/")[-1]))
        try:  # network, auth, a repository taken offline: all mean "not from here", said in one line
            commit = huggingface_hub.model_info(candidate, revision=revision).sha
            folder = huggingface_hub.snapshot_download(repo_id=candidate, revision=commit or revision,
                                                       local_dir=target, allow_patterns=PATTERNS)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{candidate}: {_first_line(exc)}")
            continue
        problems = sd21_base_mismatches(folder) if check else []
        if problems:
            raise MissingModelError(
                f"{candidate} (in {folder}) is not Stable Diffusion 2.1-base: {'; '.join(problems)}; "
                "pass --no-check to keep another SD, or --repo a SD 2.1-base copy")
        write_source(folder, candidate, revision or "main", commit)
        return folder
    raise MissingModelError(
        f"cannot fetch Stable Diffusion (no internet or no access?): {' | '.join(failures)}; "
        "copy a diffusers SD folder by hand and pass --model")


def run(args: argparse.Namespace) -> int:
    if args.models_command == "make-tiny":
        folder = make_tiny(args.dir, seed=args.seed)
        print(f"tiny model: {os.path.abspath(folder)}")
    else:
        folder = fetch(args.repo, args.dest, args.revision, check=not args.no_check)
        print(f"model: {folder} (use --model {folder} or set $SMITE_MODEL)")
    sys.stdout.flush()
    return 0
