"""The predictor interface every backend implements (SAM 2 style).

`init_state` takes the shot's frames, `add_reference` feeds keyframe maps, and `propagate` yields
one frame at a time so the engine can write, report progress and honour cancel between frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from ..config import Settings
from ..frames import FrameSource
from ..scratch import Scratch


@dataclass
class VideoState:
    """One run of a backend.

    source: the plate frames (model space, plate resolution, pulled on demand).
    parts: part names; class index i+1 is parts[i], 0 is background.
    references: `{frame_number: (K+1, H, W)}` class probabilities at plate resolution.
    cache: backend-private data.
    scratch: the job's scratch cache on disk for what outlives a backend's memory window (the engine
      sets it; None: a backend that needs one makes a private temporary one).
    """

    source: FrameSource
    parts: tuple[str, ...]
    references: dict[int, np.ndarray] = field(default_factory=dict)
    cache: dict[str, object] = field(default_factory=dict)
    scratch: Scratch | None = None

    @property
    def frame_numbers(self) -> list[int]:
        return self.source.frame_numbers


class Backend(Protocol):
    """A segmentation backend: weight-free propagation or SMITE diffusion."""

    name: str

    def init_state(self, source: FrameSource, parts: Sequence[str]) -> VideoState:
        ...

    def add_reference(self, state: VideoState, frame: int, probs: np.ndarray) -> None:
        ...

    def propagate(self, state: VideoState, frames: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield `(frame_number, probs (K+1, h, w))` in frame order; h, w may be below plate size."""
        ...


class BackendBase:
    """The predictor bookkeeping every backend shares; subclasses implement `propagate`.

    `progress`, when the engine sets it, receives (stage, done, total, message) for the work a
    backend does before its first frame (flow, carries), so a long shot never sits at 0%.
    """

    name = "base"
    progress: Callable[[str, int, int, str], None] | None = None

    def report(self, stage: str, done: int, total: int, message: str = "") -> None:
        if self.progress is not None:
            self.progress(stage, done, total, message)

    def init_state(self, source: FrameSource, parts: Sequence[str]) -> VideoState:
        return VideoState(source=source, parts=tuple(parts))

    def add_reference(self, state: VideoState, frame: int, probs: np.ndarray) -> None:
        if frame not in state.frame_numbers:
            raise KeyError(f"reference frame {frame} is not among the loaded frames")
        state.references[frame] = probs
        self.references_changed(state)

    def references_changed(self, state: VideoState) -> None:
        """Drop cached results that depend on the references (nothing by default)."""


def make_backend(settings: Settings) -> Backend:
    """The backend named in the settings; imports lazily so the weight-free path needs no diffusers."""
    if settings.backend == "propagate":
        from .propagate import PropagateBackend

        return PropagateBackend(settings)
    from .diffusion import DiffusionBackend

    return DiffusionBackend(settings)
