"""Seconds from starting `smite serve` to its answer to ``initialize`` (issue 10: at most 0.3 s).

    PYTHONPATH=core python bench/serve_startup.py [--runs 5]

Starts the server as a host does (a subprocess of this interpreter), sends one ``initialize`` line,
and prints the best and median wall time from process start until the reply line arrives. The
engine is loaded in the background after that reply, so each run then waits for it before exiting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_S = 0.3  # issue 10


def once() -> float:
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "core")}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "smite", "serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    request = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"client": "bench"}}
    proc.stdin.write((json.dumps(request) + "\n").encode())
    proc.stdin.flush()
    reply = json.loads(proc.stdout.readline())
    took = time.perf_counter() - start
    proc.stdin.close()
    proc.wait(timeout=30)
    if "result" not in reply:
        raise SystemExit(f"initialize failed: {reply}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    times = [once() for _ in range(parser.parse_args().runs)]
    print(f"smite serve answers initialize in {min(times):.3f} s (best), {statistics.median(times):.3f} s (median); "
          f"target {TARGET_S:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
