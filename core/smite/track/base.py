"""The point-tracker interface every tracking backend implements.

Voting and E_track only need "where is this pixel in the other frames, and can it be seen there",
so a tracker is anything that turns query points into `Tracks`. The weight-free flow tracker
(`smite.track.flow`) and the optional CoTracker backend share this contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor


@dataclass
class Tracks:
    """Point tracks through a clip.

    points:  (T, N, 2) float, (x, y) in pixels of the video that was tracked (pixel centres at integers).
    visible: (T, N) bool; once a point is lost it is reported invisible (its position is then not meaningful).
    """

    points: Tensor
    visible: Tensor

    def __post_init__(self) -> None:
        if self.points.ndim != 3 or self.points.shape[-1] != 2:
            raise ValueError(f"Tracks.points must be (T, N, 2), got {tuple(self.points.shape)}")
        if tuple(self.visible.shape) != tuple(self.points.shape[:2]):
            raise ValueError(
                f"Tracks.visible must be {tuple(self.points.shape[:2])}, got {tuple(self.visible.shape)}"
            )
        if self.visible.dtype != torch.bool:
            self.visible = self.visible.bool()


@runtime_checkable
class Tracker(Protocol):
    """Tracks query points forward and backward through a video.

    `track(video, queries)`:
      video:   (T, H, W, 3) float32 in [0, 1].
      queries: (N, 3) float rows (t, x, y); t is the query's frame index, (x, y) in video pixels.
    Returns `Tracks` with T frames and N points. Each point is followed forward from its own frame
    to T-1 and backward to 0; at its query frame it sits exactly on the query and is visible.
    """

    name: str

    def track(self, video: np.ndarray, queries: np.ndarray) -> Tracks: ...
