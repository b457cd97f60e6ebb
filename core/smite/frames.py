"""The plate frames of one run, colour-converted to model space, streamed with a bounded read-ahead.

Backends pull frames from here and downsample to their own working size; the engine pulls them
again at plate resolution for edge refinement. Nothing holds the whole shot: the source keeps the
`keep` frames asked for last, shares any frame a caller still holds (a diffusion window's frames,
so the next overlapping window reads none of them twice), and a background thread reads up to
`prefetch` frames ahead in the direction the caller is walking, so decoding overlaps the work.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Sequence

import numpy as np

from .errors import FrameError
from .io.color import ColorConverter
from .io.image import image_size, read_rgb
from .io.sequence import frame_path, require_frames

KEEP_FRAMES = 2  # frames asked for last, kept whatever the caller does with them
PREFETCH_FRAMES = 3  # frames read ahead on the background thread


class FrameSource:
    """Random access to a shot's frames as `(H, W, 3)` float32 display-referred sRGB in [0, 1]."""

    def __init__(self, plate: str, frame_numbers: Sequence[int], colorspace: str, *,
                 keep: int = KEEP_FRAMES, prefetch: int = PREFETCH_FRAMES) -> None:
        self.plate = plate
        self.frame_numbers = list(frame_numbers)
        require_frames(plate, self.frame_numbers)
        width, height = image_size(frame_path(plate, self.frame_numbers[0]))
        self.size = (height, width)
        self._color = ColorConverter(colorspace)
        self._position = {f: i for i, f in enumerate(self.frame_numbers)}
        self._keep, self._prefetch = keep, prefetch
        self._recent: OrderedDict[int, np.ndarray] = OrderedDict()
        self._shared: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()
        self._ahead: dict[int, Future] = {}
        self._reader: ThreadPoolExecutor | None = None
        self._last = -1

    def __len__(self) -> int:
        return len(self.frame_numbers)

    def path(self, frame: int) -> str:
        return frame_path(self.plate, frame)

    def get(self, frame: int) -> np.ndarray:
        """The frame with shot number `frame`, in model space (do not modify it: it may be shared)."""
        rgb = self._recent.get(frame)
        if rgb is None:
            rgb = self._shared.get(frame)
        if rgb is None:
            future = self._ahead.pop(frame, None)
            rgb = future.result() if future is not None else self._read(frame)
        self._remember(frame, rgb)
        self._read_ahead(frame)
        return rgb

    def close(self) -> None:
        """Stop reading ahead (frames already returned stay valid)."""
        for future in self._ahead.values():
            future.cancel()
        self._ahead.clear()
        if self._reader is not None:
            self._reader.shutdown(wait=True)
            self._reader = None

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------
    def _read(self, frame: int) -> np.ndarray:
        rgb = self._color.to_model(read_rgb(self.path(frame)))
        if rgb.shape[:2] != self.size:
            raise FrameError(
                f"frame {frame} ({self.path(frame)}) is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"the shot's first frame is {self.size[1]}x{self.size[0]}"
            )
        return rgb

    def _remember(self, frame: int, rgb: np.ndarray) -> None:
        self._recent[frame] = rgb
        self._recent.move_to_end(frame)
        while len(self._recent) > self._keep:
            self._recent.popitem(last=False)
        self._shared[frame] = rgb

    def _read_ahead(self, frame: int) -> None:
        """Queue reads of the next `prefetch` frames in the walking direction; drop reads left behind.

        A read that fails (a missing or broken frame) raises only when that frame is asked for.
        """
        if self._prefetch <= 0 or frame not in self._position:
            return
        i = self._position[frame]
        step = 1 if i >= self._last else -1
        self._last = i
        ahead = [self.frame_numbers[j] for j in range(i + step, i + step * (self._prefetch + 1), step)
                 if 0 <= j < len(self.frame_numbers)]
        for f in [f for f in self._ahead if f not in ahead]:
            self._ahead.pop(f).cancel()
        for f in ahead:
            if f not in self._ahead and f not in self._recent and f not in self._shared:
                if self._reader is None:
                    self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smite-frames")
                self._ahead[f] = self._reader.submit(self._read, f)
