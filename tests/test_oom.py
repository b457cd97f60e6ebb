"""OOM retry: a fake out-of-memory error shrinks the setting until the work fits, or fails as exit 4."""

import pytest
import torch

from smite.errors import OutOfMemoryError
from smite.hostapi.errorcodes import EXIT_OUT_OF_MEMORY
from smite.oom import halve, is_out_of_memory, run_with_oom_retry


def _needs_at_most(limit, calls):
    """An attempt that 'runs out of memory' while its window is above `limit`."""

    def attempt(window):
        calls.append(window)
        if window > limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {window} GiB")
        return f"done with {window}"

    return attempt


def test_retries_with_smaller_windows_until_it_fits():
    calls = []
    assert run_with_oom_retry(_needs_at_most(4, calls), 16, halve) == "done with 4"
    assert calls == [16, 8, 4]


def test_no_retry_when_it_fits_first():
    calls = []
    assert run_with_oom_retry(_needs_at_most(100, calls), 16, halve) == "done with 16"
    assert calls == [16]


def test_raises_out_of_memory_error_when_nothing_smaller_is_left():
    calls = []
    with pytest.raises(OutOfMemoryError, match="chunk 1-8.*3 attempt") as info:
        run_with_oom_retry(_needs_at_most(0, calls), 4, halve, what="chunk 1-8")
    assert calls == [4, 2, 1]
    assert info.value.exit_code == EXIT_OUT_OF_MEMORY
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_no_shrink_rule_means_one_attempt():
    calls = []
    with pytest.raises(OutOfMemoryError):
        run_with_oom_retry(_needs_at_most(0, calls), 8, None)
    assert calls == [8]


def test_other_errors_pass_through_untouched():
    def attempt(window):
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        run_with_oom_retry(attempt, 8, halve)


def test_recognises_old_style_runtime_errors():
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(MemoryError())


def test_halve():
    assert [halve(16), halve(3), halve(2), halve(1)] == [8, 1, 1, None]
    assert halve(9, minimum=5) == 5 and halve(5, minimum=5) is None


def test_diffusion_backend_shrinks_chunk_then_window_then_gives_up():
    from smite.backends.diffusion import DiffusionBackend
    from smite.config import Settings

    settings = Settings(backend="diffusion")
    backend = DiffusionBackend(settings)
    seen = []
    current = settings
    while current is not None:
        seen.append((current.diffusion.guide_chunk, current.diffusion.window, current.diffusion.overlap))
        current = backend.shrink_settings(current)
    assert seen == [(4, 16, 8), (2, 16, 8), (1, 16, 8), (1, 8, 4), (1, 4, 2), (1, 2, 1)]
