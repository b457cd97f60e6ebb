"""Host-side rules the Nuke node and the Blender add-on share: frame lists, job settings, farm files.

Both frontends run inside a host's own Python (no torch, maybe 3.9) and translate the artist's
input into what the core reads. Where that translation is the same for every host it lives
here, once: Nuke imports it after `nuke_smite.hostconfig` puts the core on ``sys.path``, Blender
loads it privately through `blender_smite.corelink` (like `smite.client`). Standard library only,
Python 3.9-safe, no relative imports (corelink loads it under another package name).
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

# A part name becomes an EXR layer (`smite_<part>.A`), a Nuke layer and a Blender socket name.
PART_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

# --- frame lists --------------------------------------------------------------------------------

_FRAME_ITEM = re.compile(r"(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?")  # 12, 10-40, 10-40x10 (every 10th)


def parse_frames(text: str) -> List[int]:
    """Frames an artist typed (``"1001, 1010-1012 1020-1040x10"``), sorted and unique; ``[]`` when empty.

    Raises ValueError with one line naming the item it cannot read.
    """
    frames = set()
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        match = _FRAME_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"keyframes: cannot read {item!r} (write frames like 1001, 1010-1012 or 1010-1040x10)")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3)) if match.group(3) else 1
        if last < first:
            raise ValueError(f"keyframes: {item!r} ends before it starts")
        if step < 1:
            raise ValueError(f"keyframes: the step of {item!r} must be at least 1")
        frames.update(range(first, last + 1, step))
    return sorted(frames)


def format_frames(frames: Iterable[int]) -> str:
    """Frames as the core's range text: consecutive runs collapse (``"1-3,7"``); ``""`` for none.

    `parse_frames` reads it back, and so does the core's shot ``frames`` field.
    """
    values = sorted(set(int(f) for f in frames))
    items: List[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        items.append(str(values[i]) if j == i else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(items)


# --- job settings ---------------------------------------------------------------------------------

def job_settings(method: str, backend: str, part_model: str = "", sd_model: str = "") -> Dict[str, Any]:
    """The ``settings`` object of a server ``segment``/``learn`` call (``smite.config.Settings`` format).

    The diffusion backend's own settings nest under ``"diffusion"``: ``part_model`` (the .smite
    file) and ``model`` (the SD folder). Segment sends them only with the diffusion backend, so
    the weight-free backend's mattes keep the same job metadata (and resume) whatever those
    fields hold; Learn always trains on SD, so it sends ``model`` when one is set.
    """
    settings: Dict[str, Any] = {"backend": backend}
    diffusion: Dict[str, str] = {}
    if method == "segment" and backend == "diffusion" and part_model:
        diffusion["part_model"] = part_model
    if (method == "learn" or backend == "diffusion") and sd_model:
        diffusion["model"] = sd_model
    if diffusion:
        settings["diffusion"] = diffusion
    return settings


def segment_part_model(chosen: str, default_path: str) -> str:
    """Part model a Segment uses: the artist's file, else Learn's default file once it exists, else ``""``.

    ``""`` lets the diffusion backend learn from the shot's references itself, instead of failing
    on a default file Learn never wrote.
    """
    if chosen:
        return chosen
    return default_path if os.path.isfile(default_path) else ""


# --- environment of a core-venv subprocess --------------------------------------------------------

# Variables that point a host's embedded interpreter (Nuke's, Blender's) at its own libraries; a core
# venv started with them imports the host's packages or does not start at all.
HOST_PYTHON_VARS = ("PYTHONHOME", "PYTHONPATH")


def core_environment(core: str = "", extra: Optional[Mapping[str, str]] = None,
                     environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment for a core subprocess (``smite serve``, ``smite farm``): the host's without
    `HOST_PYTHON_VARS`, plus ``extra``; ``core`` (the core's source folder) first on ``PYTHONPATH``
    so a checkout that is not pip-installed in the venv works too. The one place this rule lives.
    """
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in HOST_PYTHON_VARS}
    env.update(extra or {})
    if core:
        env["PYTHONPATH"] = os.pathsep.join([core] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


# --- farm job files -------------------------------------------------------------------------------
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
