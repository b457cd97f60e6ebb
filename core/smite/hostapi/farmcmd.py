"""Farm job files from a host: the ``smite farm`` commands, where their files go, one-line errors.

Standard library only, Python 3.9-safe.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .locate import core_environment

# The farm job is written by the core itself (``<core python> -m smite farm …``, a subprocess), so a
# farm run and an interactive Segment read the same shot.json and settings, and the job format lives
# in one place. Nothing is submitted: the artist (or a pipeline tool) submits the files.

DEFAULT_CHUNK = 16  # frames per farm task (the core's default too)
FARM_DIR = "farm"
TIMEOUT_S = 120.0  # writing job files takes seconds; a hung interpreter must not hang the host thread


class FarmError(RuntimeError):
    """The one line an artist sees when writing the farm files failed."""


def farm_paths(cache_dir: str) -> Dict[str, str]:
    """Where the job files go: ``<cache>/farm/job.yaml`` (OpenJD) and ``<cache>/farm/deadline/``."""
    farm = os.path.join(os.path.abspath(cache_dir), FARM_DIR)
    return {"openjd": os.path.join(farm, "job.yaml"), "deadline": os.path.join(farm, "deadline")}


def farm_commands(python: str, shot: str, out: str, cache_dir: str, chunk: int = DEFAULT_CHUNK,
                  backend: str = "", parts: str = "", model: str = "") -> List[Tuple[str, List[str]]]:
    """``[(format, argv)]`` for ``smite farm openjd`` and ``smite farm deadline``.

    ``parts``/``model`` (part model, SD model) only matter to the diffusion backend, so they are
    passed only with it: with the weight-free backend they would change the mattes' job
    metadata and make a farm run redo frames an interactive run already wrote.
    """
    if int(chunk) < 1:
        raise FarmError(f"farm chunk must be at least 1, got {chunk}")
    common = ["--shot", shot, "--out", out, "--chunk", str(int(chunk))]
    if backend:
        common += ["--backend", backend]
    if backend == "diffusion":
        if parts:
            common += ["--parts", parts]
        if model:
            common += ["--model", model]
    paths = farm_paths(cache_dir)
    return [(fmt, [python, "-m", "smite", "farm", fmt] + common + ["--output", paths[fmt]])
            for fmt in ("openjd", "deadline")]


def _error_line(fmt: str, proc: Any) -> str:
    """The command's last non-empty stderr line (the core prints its error as one line)."""
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    tail = lines[-1] if lines else f"exit status {proc.returncode}"
    return f"smite farm {fmt} failed: {tail}"


def _written(stderr: str) -> List[str]:
    return [ln.strip()[len("wrote "):] for ln in (stderr or "").splitlines() if ln.strip().startswith("wrote ")]


def write_farm_files(commands: Sequence[Tuple[str, List[str]]], core: str = "",
                     runner: Callable[..., Any] = subprocess.run, timeout: float = TIMEOUT_S,
                     environ: Optional[Mapping[str, str]] = None) -> Dict[str, List[str]]:
    """Run `farm_commands`; ``{format: [written files]}``. Raises FarmError with one line.

    The commands run in `core_environment` (``core`` on ``PYTHONPATH``, the host's Python
    variables removed). ``runner`` (``subprocess.run``) is injectable for tests.
    """
    env = core_environment(core, environ=environ)
    written: Dict[str, List[str]] = {}
    for fmt, argv in commands:
        output = argv[argv.index("--output") + 1]
        folder = output if fmt == "deadline" else os.path.dirname(output)
        try:
            os.makedirs(folder, exist_ok=True)
            proc = runner(argv, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise FarmError(f"smite farm {fmt} did not finish in {timeout:.0f} s") from None
        except OSError as exc:
            raise FarmError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            raise FarmError(_error_line(fmt, proc))
        written[fmt] = _written(proc.stderr) or [output]
    return written


def summary(written: Mapping[str, Sequence[str]]) -> str:
    """One status line naming every file written: ``farm files in /c/farm: job.yaml, deadline/job_info.job, …``."""
    files = [os.path.abspath(path) for fmt in written for path in written[fmt]]
    if not files:
        return "farm: nothing written"
    root = os.path.commonpath([os.path.dirname(f) for f in files])
    names = [os.path.relpath(f, root).replace(os.sep, "/") for f in files]
    return f"farm files in {root}: " + ", ".join(names)
