"""The contract every backend implements (SAM 2 style predictor), declared on `BackendBase`.

`init_state` takes the shot's frames, `add_reference` feeds keyframe maps, and `propagate` yields
one frame at a time so the engine can write, report progress and honour cancel between frames.
What else the engine asks of a backend is declared here with a default, never probed: the identity
of its weights (`model_hash`), how far back a chunk must load (`first_needed`), smaller settings
after an out-of-memory error (`shrink_settings`) and the settings that decide its mattes
(`result_settings`). Progress is passed in at construction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np

from ..config import Settings
from ..frames import FrameSource
from ..scratch import Scratch

ProgressFn = Callable[[str, int, int, str], None]  # (stage, done, total, message)


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


class BackendBase(ABC):
    """A segmentation backend (weight-free propagation or SMITE diffusion); see module doc.

    `progress`, when given, receives (stage, done, total, message) for the work a backend does
    before its first frame (flow, carries), so a long shot never sits at 0%.
    """

    name: ClassVar[str]  # the key of `backends.BACKENDS`, stored in every matte

    def __init__(self, settings: Settings, *, progress: ProgressFn | None = None) -> None:
        self.settings = settings
        self._progress = progress

    def report(self, stage: str, done: int, total: int, message: str = "") -> None:
        if self._progress is not None:
            self._progress(stage, done, total, message)

    # -- what the engine asks besides the predictor API ---------------------------------------
    @property
    def model_hash(self) -> str:
        """Identity of the weights that decide the mattes; "" for a backend without weights."""
        return ""

    def first_needed(self, first: int) -> int:
        """Earliest frame a chunk starting at frame `first` must load (by default `first` itself)."""
        return first

    def shrink_settings(self, settings: Settings) -> Settings | None:
        """Settings needing less memory after an out-of-memory error, or None (the default: no retry)."""
        return None

    def result_settings(self) -> dict[str, Any]:
        """The settings that decide this backend's mattes: stored in each matte and hashed into its job."""
        return self.settings.result_dict(self.name)

    # -- predictor API --------------------------------------------------------------------------
    def init_state(self, source: FrameSource, parts: Sequence[str]) -> VideoState:
        return VideoState(source=source, parts=tuple(parts))

    def add_reference(self, state: VideoState, frame: int, probs: np.ndarray) -> None:
        if frame not in state.frame_numbers:
            raise KeyError(f"reference frame {frame} is not among the loaded frames")
        state.references[frame] = probs
        self.references_changed(state)

    def references_changed(self, state: VideoState) -> None:
        """Drop cached results that depend on the references (nothing by default)."""

    @abstractmethod
    def propagate(self, state: VideoState, frames: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield `(frame_number, probs (K+1, h, w))` in frame order; h, w may be below plate size."""
