"""The plate frames of one run, read once, colour-converted to model space.

Backends pull frames from here and downsample to their own working size; the engine pulls them
again at plate resolution for edge refinement. Frames stay in memory while the shot is small and
are re-read from disk otherwise, so a 4K shot does not need its whole plate in RAM.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np

from .errors import FrameError
from .io.color import ColorConverter
from .io.image import image_size, read_rgb
from .io.sequence import frame_path, require_frames

KEEP_IN_MEMORY_BYTES = 1536 * 1024 * 1024  # keep every frame cached below this plate size
RECENT_FRAMES = 24  # otherwise keep the most recent few (voting windows revisit neighbours)


class FrameSource:
    """Random access to a shot's frames as `(H, W, 3)` float32 display-referred sRGB in [0, 1]."""

    def __init__(self, plate: str, frame_numbers: Sequence[int], colorspace: str) -> None:
        self.plate = plate
        self.frame_numbers = list(frame_numbers)
        require_frames(plate, self.frame_numbers)
        width, height = image_size(frame_path(plate, self.frame_numbers[0]))
        self.size = (height, width)
        self._color = ColorConverter(colorspace)
        total = len(self.frame_numbers) * height * width * 3 * 4
        self._capacity = len(self.frame_numbers) if total <= KEEP_IN_MEMORY_BYTES else RECENT_FRAMES
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.frame_numbers)

    def path(self, frame: int) -> str:
        return frame_path(self.plate, frame)

    def get(self, frame: int) -> np.ndarray:
        """The frame with shot number `frame`, in model space."""
        if frame in self._cache:
            self._cache.move_to_end(frame)
            return self._cache[frame]
        rgb = self._color.to_model(read_rgb(self.path(frame)))
        if rgb.shape[:2] != self.size:
            raise FrameError(
                f"frame {frame} ({self.path(frame)}) is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"the shot's first frame is {self.size[1]}x{self.size[0]}"
            )
        self._cache[frame] = rgb
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return rgb
