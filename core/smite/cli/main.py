"""`smite` command line: one small module per subcommand, dispatched from here.

Every deliberate error is a `SmiteError`: printed as one line, exit status from its class
(README lists them), so a farm wrapper can tell bad input from a missing model or an OOM.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..errors import SmiteError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smite", description="Few-shot, temporally consistent video part mattes.")
    parser.add_argument("--version", action="version", version=f"smite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(f"smite.cli.{module}")
        except ImportError:  # an optional command whose module is not installed
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="smite: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args._run(args) or 0)
    except SmiteError as exc:
        print(f"smite: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("smite: interrupted; finished frames are kept, run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
