"""`smite doctor`: what this machine can run, and why not where it can't."""

from __future__ import annotations

import argparse
import importlib
import os
import platform

from .. import __version__


def _version(module: str, attr: str = "__version__") -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure, whatever it is
        return f"not usable ({type(exc).__name__}: {exc})"
    return str(getattr(mod, attr, "installed"))


def _device() -> str:
    try:
        import torch
    except ImportError:
        return "torch missing"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"CUDA {torch.version.cuda}: {', '.join(names)}"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "Apple MPS"
    return f"CPU only ({os.cpu_count()} cores)"


def _describe_model(path: str) -> str:
    """A model folder or file: what it is (SD 2.1-base configs or how it differs) and where it came from."""
    from ..model.backbone import describe_source, read_source, sd21_base_mismatches

    if not os.path.exists(path):
        return f"{path} (missing)"
    if not os.path.isdir(path):
        return f"{path} (single file: needs a diffusers config folder beside it)"
    problems = sd21_base_mismatches(path)
    kind = "SD 2.1-base configs" if not problems else f"not SD 2.1-base: {problems[0]}"
    source = read_source(path)
    return f"{path} ({kind}" + (f", fetched from {describe_source(source)})" if source else ")")


def model_rows() -> list[tuple[str, str]]:
    """Where the diffusion backend's SD would come from, and how to point it at a local copy."""
    try:
        from ..model.backbone import DEFAULT_REPOS, MODEL_DIR_ENV, MODEL_ENV
        from .models import DEFAULT_MODEL_DIR
    except ImportError as exc:  # torch missing: the rows above already say so
        return [("SD model", f"unavailable ({exc})")]
    rows = []
    if os.environ.get(MODEL_ENV):
        rows.append(("SD model", f"${MODEL_ENV} = {_describe_model(os.path.expanduser(os.environ[MODEL_ENV]))}"))
    root = os.path.expanduser(os.environ.get(MODEL_DIR_ENV, DEFAULT_MODEL_DIR))
    fetched = sorted(os.path.join(root, d) for d in (os.listdir(root) if os.path.isdir(root) else [])
                     if os.path.isfile(os.path.join(root, d, "model_index.json")))
    rows += [("SD model", f"fetched: {_describe_model(f)}") for f in fetched]
    rows.append(("SD model", (
        "point --model (or $SMITE_MODEL) at a local diffusers copy of SD 2.1-base (folder with model_index.json, unet/, "
        "vae/, text_encoder/, tokenizer/, scheduler/) or a .safetensors/.ckpt with that folder beside it; "
        f"`smite models fetch` downloads {DEFAULT_REPOS[0]} (the original {DEFAULT_REPOS[1]} went offline in "
        "Nov 2025 and is only the fallback)")))
    return rows


def report() -> list[tuple[str, str]]:
    rows = [
        ("smite", __version__),
        ("python", platform.python_version()),
        ("platform", platform.platform()),
        ("torch", _version("torch")),
        ("device", _device()),
        ("numpy", _version("numpy")),
        ("opencv", _version("cv2")),
        ("OpenImageIO", _version("OpenImageIO")),
        ("OpenColorIO", _version("PyOpenColorIO")),
    ]
    from ..io.color import config_uri

    rows.append(("OCIO config", config_uri()))
    rows.append(("backend propagate", "usable (weight-free, CPU)"))
    diffusers = _version("diffusers")
    rows.append(("backend diffusion", "needs diffusers: " + diffusers if diffusers.startswith("not") else
                 f"diffusers {diffusers}; needs a local SD 2.1-base/1.5 model (--model or $SMITE_MODEL)"))
    rows += model_rows()
    rows.append(("tracker flow", "usable (OpenCV DIS optical flow, weight-free)"))
    from ..track.cotracker import LICENCE, cotracker_available

    rows.append(("tracker cotracker", (
        "cotracker importable" if cotracker_available() else "cotracker not importable (optional; or a torch.hub cache)"
    ) + f"; {LICENCE}; needs --tracker-checkpoint PATH (local .pth or torch.hub folder)"))
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    rows = report()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
