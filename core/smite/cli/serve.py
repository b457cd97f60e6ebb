"""`smite serve`: run the JSON-RPC server on stdin/stdout for a host (Nuke, Blender) to drive.

Not meant to be typed by hand: `smite.hostapi.client.SmiteClient` starts it. The protocol is moved to a
private copy of stdout first, so nothing a library prints can corrupt it. SIGTERM (what a farm manager
or a host closing sends) is turned into `Terminated` by `smite.cli.main`, as for every command: the
jobs are cancelled, the running one stops at a frame boundary (the engine writes each matte under a
temporary name, so nothing half-written is left), and the process exits 143; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from ..hostapi.protocol import MAX_LINE_BYTES

INTERRUPT_WAIT_S = 10.0  # how long an interrupted server waits for the running job to reach a frame boundary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smite serve",
        description="JSON-RPC 2.0 server (one JSON object per line on stdin/stdout) used by the host plugins.",
    )
    parser.add_argument("--max-line", type=int, default=MAX_LINE_BYTES, metavar="BYTES",
                        help="longest accepted message line (default: %(default)s)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="smite log records at this level and above are sent to the client as `log`")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from ..server import LogForwarder, Server, protect_stdout

    out = protect_stdout()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    server = Server(out)
    forwarder = LogForwarder(server, getattr(logging, args.log_level.upper()))
    smite_log = logging.getLogger("smite")
    smite_log.addHandler(forwarder)
    smite_log.setLevel(min(smite_log.getEffectiveLevel(), forwarder.level))
    try:
        return server.serve(sys.stdin.buffer)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as `smite.cli.main.Terminated`: main picks the status
        server.close(timeout=INTERRUPT_WAIT_S)
        raise
    finally:
        smite_log.removeHandler(forwarder)
        out.flush()


if __name__ == "__main__":  # through the CLI's main, so SIGTERM and exit statuses are handled in one place
    from .main import main as cli_main

    sys.exit(cli_main(["serve", *sys.argv[1:]]))
