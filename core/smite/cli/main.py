"""`smite` command line: one small module per subcommand, dispatched from here.

Every deliberate error is a `SmiteError`: printed as one line, exit status from its class
(README lists them), so a farm wrapper can tell bad input from a missing model or an OOM. Usage
errors are one line too (exit 2), and SIGTERM, what farm managers send, ends a run like Ctrl-C:
finished frames kept, one line, exit 143 (128 + 15, the shell's convention).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import tempfile
import threading

from .. import __version__
from ..hostapi.errorcodes import EXIT_BAD_INPUT, EXIT_MISSING_MODEL, EXIT_OUT_OF_MEMORY
from ..errors import SmiteError

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM

# subcommand -> module under smite.cli providing add_arguments(parser) + run(args) -> int, or main(argv) -> int
COMMANDS = {
    "segment": ("segment", "segment a shot into per-part EXR mattes"),
    "demo": ("demo", "segment the bundled sample shot into ./demo-out/"),
    "bench": ("bench", "measure quality and speed on a folder of clips with ground truth"),
    "doctor": ("doctor", "show versions, devices and which backends/trackers are usable"),
    "serve": ("serve", "JSON-RPC server on stdin/stdout for host applications"),
    "farm": ("farm", "write farm job descriptions: OpenJD, OpenCue, Deadline"),
    "learn": ("learn", "learn part vectors from reference masks into a part model (.smite)"),
    "models": ("models", "write the tiny test model or fetch Stable Diffusion (needs internet)"),
    "import-official": ("import_official", "turn the authors' ckpt_best.pt into a part model (.smite)"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors as one line naming the fix, not a usage block (subparsers inherit it)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"smite: error: {' '.join(message.split())} (see: {self.prog} --help)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so every cleanup path is the same one."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _missing(name: str, exc: ImportError):
    """The run of a command whose module cannot be imported: one line naming the dependency, exit 3."""
    what = getattr(exc, "name", None) or str(exc)

    def run(args: argparse.Namespace) -> int:
        print(f"smite: error: `smite {name}` needs {what}, which cannot be imported ({exc}); "
              "install it into the core venv (see: smite doctor)", file=sys.stderr)
        return EXIT_MISSING_MODEL

    return run


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; with ``only`` (a command name) just that command's module is imported.

    Each command's module imports its heavy packages, so building every subparser costs seconds;
    `main` builds only the one typed (``smite serve`` answers at once). A command whose module
    cannot be imported stays a choice and exits 3 naming the missing package, never "invalid choice".
    """
    parser = OneLineParser(prog="smite", description="Few-shot, temporally consistent video part mattes.")
    parser.add_argument("--version", action="version", version=f"smite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if only is not None and name != only:
            continue
        try:
            mod = importlib.import_module(f"smite.cli.{module}")
        except ImportError as exc:  # an optional dependency of this command is missing or broken
            p = sub.add_parser(name, help=help_text, description=help_text, add_help=False)
            p.add_argument("argv", nargs=argparse.REMAINDER)
            p.set_defaults(_run=_missing(name, exc), _missing=True)
            continue
        if hasattr(mod, "add_arguments"):
            p = sub.add_parser(name, help=help_text, description=help_text)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
        else:  # a command with its own parser: main(argv) gets everything after its name
            p = sub.add_parser(name, help=help_text, description=help_text, add_help=False)
            p.add_argument("argv", nargs=argparse.REMAINDER)
            p.set_defaults(_run=lambda args, _main=mod.main: _main(args.argv))
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words[0] if words and words[0] in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "_missing", False):  # what parse_args says; a missing command takes anything
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    native = NativeStderr()
    if args.command in FOLD_NATIVE_STDERR:
        native.start()
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="smite: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        code, message = _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        extra = native.stop()
    if message is None:
        sys.stderr.write(extra)  # a successful run passes native warnings on unchanged
    else:
        lines = list(dict.fromkeys(line.strip() for line in extra.splitlines() if line.strip()))
        if lines and code not in (EXIT_INTERRUPTED, EXIT_TERMINATED):
            message += f" ({'; '.join(lines)[:300]})"
        print(message, file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> tuple[int, str | None]:
    """(exit status, the one line to print or None) of the command."""
    try:
        return int(args._run(args) or 0), None
    except SmiteError as exc:
        return exc.exit_code, f"smite: error: {exc}"
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        code = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        return code, f"smite: {what}; finished frames are kept, run again to resume"
    except MemoryError:  # last resort: inputs are size-checked, but a plate can still outgrow this machine
        return EXIT_OUT_OF_MEMORY, "smite: error: out of memory (try smaller --frames chunks or a lower work_max_side)"
    except RecursionError:
        return EXIT_BAD_INPUT, "smite: error: an input file is nested too deeply to read"


FOLD_NATIVE_STDERR = ("segment", "demo", "learn", "bench")  # not `serve`: its client drains stderr live
NATIVE_STDERR_KEEP = 64 * 1024


class NativeStderr:
    """Collects what C libraries write straight to fd 2 during a command (libpng's "libpng error: ...").

    Python's own stderr (our lines, progress bars, logging) keeps going to the terminal through a copy
    of fd 2; the collected text comes back from `stop`, so an error folds it into its one line and a
    successful run passes it on. Does nothing when stderr is not fd 2 (tests capture it).
    """

    def __init__(self) -> None:
        self._saved: int | None = None
        self._capture = None
        self._python_stderr = None

    def start(self) -> None:
        try:
            if sys.stderr.fileno() != 2:
                return
        except (AttributeError, OSError, ValueError):
            return
        sys.stderr.flush()
        self._capture = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        self._python_stderr = sys.stderr
        sys.stderr = open(os.dup(self._saved), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                          errors="backslashreplace")
        os.dup2(self._capture.fileno(), 2)

    def stop(self) -> str:
        if self._saved is None or self._capture is None:
            return ""
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        sys.stderr = self._python_stderr  # (a logging handler may keep the copy: it still reaches the terminal)
        self._capture.seek(0)
        text = self._capture.read(NATIVE_STDERR_KEEP).decode("utf-8", "replace")
        self._capture.close()
        self._capture = None
        return text


if __name__ == "__main__":
    raise SystemExit(main())
