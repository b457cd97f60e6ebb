"""Progress reporting for long commands: a bar for people, one line per step for farms."""

from __future__ import annotations

import sys
from tqdm import tqdm


class Progress:
    """A callable `(stage, done, total, message)` sink.

    Interactive: a tqdm bar on stderr per stage. `quiet`: one machine-readable `PROGRESS <done>/<total>`
    line per frame written or learning step on stdout (render-farm log parsers key on it), nothing
    else: preparation stages (flow, carries) stay silent so the count means frames.
    """

    QUIET_STAGES = ("segment", "learn")

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._bar: tqdm | None = None
        self._stage = ""

    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None:
        if self.quiet:
            if stage in self.QUIET_STAGES:
                print(f"PROGRESS {done}/{total}", flush=True)
            return
        if self._bar is None or stage != self._stage:
            self.close()
            self._bar = tqdm(total=total, desc=stage, unit="frame", file=sys.stderr, dynamic_ncols=True)
            self._stage = stage
        self._bar.n = done
        self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

