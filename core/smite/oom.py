"""Retry GPU work with a smaller setting when the accelerator runs out of memory.

Why: a farm node's GPU may hold less memory than the artist's, or share it with another task.
Rather than fail the chunk, the work is redone with a smaller window or chunk; only when nothing
smaller is left does the task fail, as `OutOfMemoryError` (exit status 4), which a farm can
route to a bigger node. The helper knows nothing about what is shrunk: the caller supplies the
attempt and the shrinking rule.
"""

from __future__ import annotations

import gc
import logging
from typing import Callable, Optional, TypeVar

import torch

from .errors import OutOfMemoryError

log = logging.getLogger(__name__)

S = TypeVar("S")
R = TypeVar("R")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA/MPS out-of-memory errors (older torch raises a bare RuntimeError)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_accelerator_memory() -> None:
    """Drop cached blocks so the next attempt starts from what is really free."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_with_oom_retry(
    attempt: Callable[[S], R],
    setting: S,
    shrink: Optional[Callable[[S], Optional[S]]],
    *,
    what: str = "job",
) -> R:
    """`attempt(setting)`; on out-of-memory retry with `shrink(setting)` until it returns None.

    `shrink` gives the next smaller setting (a window, a chunk size, a Settings object) or None
    when there is nothing smaller; None for `shrink` means no retry. Errors other than running out
    of memory pass through untouched. Raises `OutOfMemoryError` naming `what`.
    """
    tried = []
    while True:
        try:
            return attempt(setting)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(exc):
                raise
            tried.append(setting)
            del exc  # the traceback pins the failed attempt's tensors
            free_accelerator_memory()
            smaller = shrink(setting) if shrink is not None else None
            if smaller is None:
                raise OutOfMemoryError(f"{what}: out of accelerator memory after {len(tried)} attempt(s)") from None
            log.warning("%s: out of accelerator memory with %s; retrying with %s", what, setting, smaller)
            setting = smaller


def halve(value: int, minimum: int = 1) -> Optional[int]:
    """A shrinking rule for sizes: half of `value`, or None once `minimum` is reached."""
    return None if value <= minimum else max(minimum, value // 2)
