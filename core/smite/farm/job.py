"""One farm job, whatever the farm: a Learn task when a part model must be trained, then chunks.

The OpenJD, OpenCue and Deadline writers all translate this one description, so the three farms
run the same commands: `python -m smite learn …` once, then `python -m smite segment --frames
A-B --quiet …` per chunk. Paths are made absolute here, because a farm task starts in a
folder of its own.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from ..config import ShotSpec
from ..errors import BadInputError
from ..hostapi.farmcmd import DEFAULT_CHUNK  # frames per task: one default for hosts and farms
from ..io.sequence import format_frame_range

DEFAULT_GPU_MEMORY_GB = 16  # what a SMITE window needs on a GPU node (weight-free backend needs far less)


@dataclass(frozen=True)
class FarmJob:
    """What to run on the farm.

    shot, out: absolute manifest path and matte pattern (`…/mattes.####.exr`).
    frames: the contiguous run of shot frames to render, in order.
    chunk: frames per Segment task. context: `--context` for every chunk (None: the settings' own).
    backend, model, parts: passed through to `smite segment`; `parts` is also Learn's output.
    options: further `smite segment` options as flag/value pairs (`--set`, `KEY=VALUE`, …);
        Learn gets the `--set` ones.
    python: the interpreter of the SMITE venv on the workers (`python -m smite`).
    """

    name: str
    shot: str
    out: str
    frames: tuple[int, ...]
    chunk: int = DEFAULT_CHUNK
    context: int | None = None
    backend: str | None = None
    model: str | None = None
    parts: str | None = None
    options: tuple[str, ...] = ()
    python: str = field(default_factory=lambda: sys.executable)
    gpus: int = 1
    gpu_memory_gb: int = DEFAULT_GPU_MEMORY_GB

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise BadInputError(f"--chunk must be at least 1, got {self.chunk}")
        if not self.frames:
            raise BadInputError("the farm job has no frames")
        if list(self.frames) != list(range(self.frames[0], self.frames[-1] + 1)):
            raise BadInputError(
                f"farm jobs need a contiguous frame range, got {format_frame_range(list(self.frames))}"
            )

    @classmethod
    def for_shot(cls, shot_path: str, shot: ShotSpec, out: str, frames: list[int] | None = None, **kwargs) -> "FarmJob":
        """A job over `frames` (default: the whole shot) with absolute paths; checks frames lie in the shot."""
        chosen = sorted(shot.frames if frames is None else frames)
        outside = sorted(set(chosen) - set(shot.frames))
        if outside:
            shot_range = format_frame_range(list(shot.frames))
            raise BadInputError(f"frame {outside[0]} is outside the shot's frames {shot_range}")
        for key in ("model", "parts"):
            if kwargs.get(key):
                kwargs[key] = os.path.abspath(kwargs[key])
        name = kwargs.pop("name", None) or f"smite_{os.path.splitext(os.path.basename(shot_path))[0]}"
        return cls(name=name, shot=os.path.abspath(shot_path), out=os.path.abspath(out), frames=tuple(chosen), **kwargs)

    @property
    def first(self) -> int:
        return self.frames[0]

    @property
    def last(self) -> int:
        return self.frames[-1]

    @property
    def frame_range(self) -> str:
        return f"{self.first}-{self.last}" if self.last > self.first else str(self.first)

    @property
    def needs_learn(self) -> bool:
        """A part model is trained first only for the diffusion backend, and only if it is not there yet."""
        return self.backend == "diffusion" and bool(self.parts) and not os.path.exists(self.parts)

    def chunks(self) -> list[tuple[int, int]]:
        """(first, last) frame of every Segment task, in order; the last may be shorter."""
        return [(a, min(a + self.chunk - 1, self.last)) for a in range(self.first, self.last + 1, self.chunk)]

    def segment_args(self, frames: str) -> list[str]:
        """Arguments after the interpreter for one chunk; `frames` is the farm's token for its range."""
        args = ["-m", "smite", "segment", "--shot", self.shot, "--out", self.out, "--frames", frames, "--quiet"]
        if self.context is not None:
            args += ["--context", str(self.context)]
        args += self._model_args()
        return args + list(self.options)

    def learn_args(self) -> list[str]:
        """Arguments after the interpreter for the Learn task (writes the part model `parts`)."""
        args = ["-m", "smite", "learn", "--shot", self.shot, "--out", str(self.parts), "--quiet"]
        if self.model:
            args += ["--model", self.model]
        for flag, value in zip(self.options[::2], self.options[1::2]):
            if flag == "--set":  # learn takes setting overrides, not segment's --temporal/--settings
                args += [flag, value]
        return args

    def _model_args(self) -> list[str]:
        args = []
        if self.backend:
            args += ["--backend", self.backend]
        if self.model:
            args += ["--model", self.model]
        if self.parts:
            args += ["--parts", self.parts]
        return args
