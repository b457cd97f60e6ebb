"""Exception hierarchy of the core.

Every error the core raises on purpose is a `SmiteError`; each subclass carries the JSON-RPC
code and the exit status that stand for it, so the CLI, the server and host clients agree.
Messages are one line and name the file, frame or part at fault.
"""

from __future__ import annotations

from .hostapi import errorcodes as codes


class SmiteError(Exception):
    """Base of all deliberate core errors."""

    code: int = codes.SMITE_ERROR
    exit_code: int = codes.EXIT_FAILURE

    def __init__(self, message: str, **data: object) -> None:
        super().__init__(" ".join(str(message).split()))
        self.data = data

    @property
    def message(self) -> str:
        return str(self)


class BadInputError(SmiteError):
    """Something the user gave us is wrong: manifest, frames, masks, options."""

    code = codes.BAD_INPUT
    exit_code = codes.EXIT_BAD_INPUT


class ManifestError(BadInputError):
    """The shot manifest is malformed or inconsistent."""


class FrameError(BadInputError):
    """A plate frame is missing, unreadable or holds non-finite pixels."""


class ReferenceMaskError(BadInputError):
    """A reference mask is inconsistent with the shot (size, part names, empty)."""


class OutputError(BadInputError):
    """The output location is unusable (not writable, no frame token)."""

    code = codes.OUTPUT_ERROR


class MissingModelError(SmiteError):
    """Weights, a part model or an optional dependency is not available."""

    code = codes.MISSING_MODEL
    exit_code = codes.EXIT_MISSING_MODEL


class OutOfMemoryError(SmiteError):
    """The accelerator ran out of memory even after retrying with smaller windows."""

    code = codes.OUT_OF_MEMORY
    exit_code = codes.EXIT_OUT_OF_MEMORY


class CancelledError(SmiteError):
    """The job was cancelled; finished frames stay, nothing partial is left."""

    code = codes.CANCELLED
    exit_code = codes.EXIT_CANCELLED

