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
