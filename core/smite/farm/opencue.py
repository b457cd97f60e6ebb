"""OpenCue job for a SMITE shot, built with PyOutline (`opencue-pyoutline`).

Two Shell layers: Learn (one frame, only when a part model must be trained) and Segment over the
frame range with the chunk size, each asking for a GPU; Segment depends on Learn layer-on-layer.
Each Segment task gets Cuebot's `#FRAMESPEC#` token, the frames of that task ("1001-1016"), which
`smite segment --frames` reads as is and which, unlike `#FRAME_END#`, never runs past the range.
The serialized form is the Cue job spec XML (cjsl) that `opencue.api.launchSpec` submits; it is
written without a Cuebot, submission itself needs one (`cuerun`/`launchSpec`, see README).
"""

from __future__ import annotations

import getpass
import logging
import os
import shlex
import tempfile
from typing import Any

from ..errors import MissingModelError
from .job import FarmJob

FRAMESPEC = "#FRAMESPEC#"


def _outline_modules() -> tuple[Any, Any, Any]:
    for name in ("outline", "FileSequence"):
        logging.getLogger(name).setLevel(logging.WARNING)  # PyOutline logs every step at INFO
    try:
        import outline
        import outline.cuerun
        from outline.modules.shell import Shell
    except ImportError as exc:
        raise MissingModelError(f"OpenCue jobs need opencue-pyoutline (pip install opencue-pyoutline): {exc}") from None
    return outline, outline.cuerun, Shell


def _command(job: FarmJob, args: list[str]) -> str:
    """One shell line: Cuebot joins a command list with spaces, so every argument is quoted here."""
    return " ".join(shlex.quote(a) for a in [job.python, *args])


def opencue_outline(job: FarmJob, show: str | None = None, shot: str | None = None, user: str | None = None) -> Any:
    """The `outline.Outline` of the job (see module doc); `show`/`shot` default to $SHOW/$SHOT."""
    outline, _, Shell = _outline_modules()
    show = show or os.environ.get("SHOW") or "smite"
    shot = shot or os.environ.get("SHOT") or job.name
    ol = outline.Outline(job.name, frame_range=job.frame_range, show=show, shot=shot, user=user or getpass.getuser())
    gpu = {"gpus": job.gpus, "gpu_memory": f"{job.gpu_memory_gb}g"} if job.gpus > 0 else {}
    learn = None
    if job.needs_learn:
        learn = Shell("learn", command=_command(job, job.learn_args()), range=str(job.first), chunk=1, **gpu)
        ol.add_layer(learn)
    segment = Shell("segment", command=_command(job, job.segment_args(FRAMESPEC)), range=job.frame_range,
                    chunk=job.chunk, **gpu)
    ol.add_layer(segment)
    if learn is not None:
        segment.depend_all(learn)
    return ol


def opencue_spec(job: FarmJob, **names: str | None) -> str:
    """The Cue job spec XML for `opencue_outline(job, **names)`, commands run directly (no pycuerun).

    PyOutline sets up a session folder before serializing; it goes to a temporary folder here, so
    writing a spec leaves nothing under ~/.opencue.
    """
    outline, cuerun, _ = _outline_modules()
    before = outline.config.get("outline", "session_dir")
    with tempfile.TemporaryDirectory(prefix="smite-opencue-") as sessions:
        outline.config.set("outline", "session_dir", sessions)
        try:
            ol = opencue_outline(job, **names)
            return cuerun.OutlineLauncher(ol, nomail=True, pause=False).serialize(use_pycuerun=False)
        finally:
            outline.config.set("outline", "session_dir", before)
