"""A clip's working frames and flows, streamed: small rings in memory, the rest in the scratch cache.

Why: the weight-free backend sweeps a shot three times (forward, backward, forward again) and each
sweep needs only a few frames around the current one, but a sweep needs what an earlier one
computed. `ClipStream` hands out working frames and pair flows by frame index, from a bounded
ring, else from the scratch cache, else computed (and cached), so memory stays the size of the
rings whatever the shot's length.

Content keys: a frame's key is its shot number plus its plate file's size and mtime (cheap, no
read; a re-rendered plate gets a new key). Everything derived from frames is named by a hash of
the keys it depends on, so the scratch cache never returns data computed from other inputs.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

import cv2
import numpy as np

from ..frames import FrameSource
from ..scratch import Scratch
from .flow import PairFlows, grey_frame, working_size

T = TypeVar("T")


def content_key(*parts: object) -> str:
    """A short hex hash of `parts` (their str): names a scratch entry by what it was computed from."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=12).hexdigest()


def frame_key(number: int, path: str) -> str:
    """A frame's identity for the scratch cache: shot number, plate size and mtime (see module doc)."""
    try:
        st = os.stat(path)
        return content_key("frame", number, st.st_size, st.st_mtime_ns)
    except OSError:
        return content_key("frame", number, "missing")


class Ring(Generic[T]):
    """The `size` most recently used values by key; `get(key, make)` computes a missing one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, T] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


class ClipStream:
    """Working frames `(h, w, 3)` and pair flows `(2, h, w, 3)` of a clip by index, streamed.

    pair(i) is the packed flow between frames i and i+1 (`PairFlows.packed`): [0] the step
    i -> i+1, [1] the step i+1 -> i. `packed(t, direction)` reads like `DenseFlows.packed`, so
    `flow.chain` tracks points through a window of the stream. `ring` frames of both are held: a
    window that reads every frame it spans (the temporal module reads their flows and colours)
    would otherwise load each frame from the scratch cache once per frame it is a neighbour of.
    """

    def __init__(self, source: FrameSource, max_side: int, preset: str, scratch: Scratch, ring: int,
                 report: Callable[[str, int, int, str], None]) -> None:
        self.source = source
        self.frames = source.frame_numbers
        self.size = working_size(*source.size, max_side)
        self.keys = [frame_key(f, source.path(f)) for f in self.frames]
        self.scratch = scratch
        self.preset = preset
        self._report = report
        self._flows: PairFlows | None = None
        self._work: Ring[np.ndarray] = Ring(ring)
        self._grey: Ring[np.ndarray] = Ring(3)
        self._pairs: Ring[np.ndarray] = Ring(ring)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def cached(self, kind: str, name: str, shape: tuple[int, ...], make: Callable[[], np.ndarray]) -> np.ndarray:
        """The scratch entry `kind/name`, or `make()` written there first."""
        value = self.scratch.load(kind, name, shape)
        if value is None:
            value = make()
            self.scratch.save(kind, name, value)
        return value

    def work(self, i: int) -> np.ndarray:
        """Frame i at working size, (h, w, 3) float32 (INTER_AREA from the plate)."""
        h, w = self.size

        def shrink() -> np.ndarray:
            return cv2.resize(self.source.get(self.frames[i]), (w, h), interpolation=cv2.INTER_AREA)

        return self._work.get(i, lambda: self.cached("work", self.keys[i], (h, w, 3), shrink))

    def pair_key(self, i: int) -> str:
        return content_key("pair", self.keys[i], self.keys[i + 1])

    def pair(self, i: int) -> np.ndarray:
        """(2, h, w, 3) packed flows between frames i and i+1."""
        return self._pairs.get(i, lambda: self.cached("flow", self.pair_key(i), (2, *self.size, 3),
                                                      lambda: self._compute_pair(i)))

    def packed(self, t: int, direction: int) -> np.ndarray:
        """(h, w, 3) [flow_x, flow_y, ok] for the step from frame t to t + direction."""
        return self.pair(t)[0] if direction == 1 else self.pair(t - 1)[1]

    def grey(self, i: int) -> np.ndarray:
        """Frame i at working size as DIS reads it: (h, w) uint8 grey."""
        return self._grey.get(i, lambda: grey_frame(self.work(i), self.size))

    def match(self, i: int, target: np.ndarray) -> np.ndarray:
        """(h, w, 3) [flow_x, flow_y, ok] from frame i straight to the grey frame `target` (`grey`), not via
        the frames between; ok: it passes the forward-backward test against the flow back (`PairFlows.checked`)."""
        return self._pair_flows().checked(self.grey(i), target)

    def _pair_flows(self) -> PairFlows:
        if self._flows is None:
            self._flows = PairFlows(self.preset)
        return self._flows

    def _compute_pair(self, i: int) -> np.ndarray:
        self._report("flow", i + 1, self.num_frames - 1, "optical flow")
        return self._pair_flows().packed(self.grey(i), self.grey(i + 1))

    def close(self) -> None:
        if self._flows is not None:
            self._flows.close()
            self._flows = None
