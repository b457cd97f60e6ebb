"""`smite serve` as a process (issue 10): answers `initialize` before any heavy import, names a dependency
that cannot be imported instead of crashing, and ends on SIGTERM with status 143 and nothing half-written.

Every test starts the real command (`python -m smite serve`, the way `SmiteClient` does) as a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from smite.hostapi import protocol

CORE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core")
HEAVY = ("torch", "cv2", "OpenImageIO", "diffusers", "numpy")
TIMEOUT = 120.0


def _env(*paths: str) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, CORE]), "OMP_NUM_THREADS": "1"}


def _lines(proc: subprocess.Popen):
    """(kind, value) for each output line: ("msg", dict) for protocol messages, ("import", module) otherwise."""
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").strip()
        if line.startswith("{"):
            yield "msg", json.loads(line)
        elif line.startswith("import time:") and "|" in line:
            yield "import", line.rsplit("|", 1)[1].strip()


def test_initialize_is_answered_before_torch_or_opencv_is_imported():
    """`-X importtime` writes a line as each import finishes; with stderr and the protocol on one pipe the
    order of writes is kept, so any heavy module imported before the reply shows up before it."""
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "smite", "serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env())
    try:
        proc.stdin.write(protocol.encode(protocol.request(1, "initialize", {"client": "test"})))
        proc.stdin.flush()
        before, reply = [], None
        lines = _lines(proc)
        for kind, value in lines:
            if kind == "msg" and value.get("id") == 1:
                reply = value
                break
            if kind == "import":
                before.append(value)
        assert reply is not None and "result" in reply, reply
        assert "smite.server.handlers" in before  # the importtime lines really are on this pipe
        assert [m for m in before if m.split(".")[0] in HEAVY] == []
        assert reply["result"]["device"] == {"type": "pending"}
        assert reply["result"]["capabilities"]["backends"] == reply["result"]["backends"]
        proc.stdin.write(protocol.encode(protocol.request(2, "shutdown")))
        proc.stdin.close()
        after = [value for kind, value in lines if kind == "import"]
        assert "torch" in after  # the engine is loaded in the background, after the reply
        assert proc.wait(TIMEOUT) == 0
    finally:
        proc.kill()
        proc.wait()


BROKEN_TORCH = 'raise OSError("libtorch_cpu.so: cannot open shared object file: No such file or directory")\n'
SERVE_WITHOUT = r"""
import sys
for name in sys.argv[1:]:
    sys.modules[name] = None  # how Python itself blocks an import: `import cv2` raises ModuleNotFoundError
from smite.cli.main import main
sys.exit(main(["serve"]))
"""


def _server_lacking(dependency: str, tmp_path) -> subprocess.Popen:
    """A server whose ``dependency`` is broken (torch: a shared library that will not load) or missing (cv2)."""
    paths, hidden = [], []
    if dependency == "torch":
        fake = tmp_path / "broken" / "torch"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text(BROKEN_TORCH)
        paths.append(str(fake.parent))
    else:
        hidden.append(dependency)
    return subprocess.Popen([sys.executable, "-c", SERVE_WITHOUT, *hidden], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(*paths))


class Conversation:
    """Send requests to a server process and collect its replies and notifications."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.seen: list = []
        self._next = 0

    def send(self, method: str, params=None) -> int:
        self._next += 1
        self.proc.stdin.write(protocol.encode(protocol.request(self._next, method, params or {})))
        self.proc.stdin.flush()
        return self._next

    def until(self, match):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            assert line, "the server exited: " + self.proc.stderr.read().decode("utf-8", "replace")
            msg = json.loads(line)
            self.seen.append(msg)
            if match(msg):
                return msg
        raise AssertionError("no matching message")

    def reply(self, msg_id: int) -> dict:
        return self.until(lambda m: m.get("id") == msg_id)

    def call(self, method: str, params=None) -> dict:
        return self.reply(self.send(method, params))

    def done(self, job: str) -> dict:
        return self.until(lambda m: m.get("method") == "done" and m["params"]["job"] == job)["params"]


@pytest.mark.parametrize("dependency", ["torch", "cv2"])
def test_a_dependency_that_cannot_be_imported_is_an_error_naming_it(dependency, make_shot, tmp_path):
    proc = _server_lacking(dependency, tmp_path)
    talk = Conversation(proc)
    try:
        shot = str(make_shot(frames="0-2"))
        out = str(tmp_path / "o" / "m.####.exr")
        # A job that needs the engine before anything loaded it: its `done` names the dependency.
        job = talk.call("segment", {"shot": shot, "out": out})["result"]["job"]
        err = talk.done(job)["error"]
        assert err["code"] == protocol.MISSING_MODEL and err["data"]["dependency"] == dependency, err
        assert err["message"].startswith(f"segment needs {dependency}, which cannot be imported"), err
        # Once known, the request itself is refused at once, and the device says why it is unknown.
        info = talk.call("initialize")["result"]
        assert info["device"]["type"] == "unknown" and info["device"]["dependency"] == dependency
        err = talk.call("learn", {"shot": shot, "out": str(tmp_path / "m.smite")})["error"]
        assert err["code"] == protocol.MISSING_MODEL and f"learn needs {dependency}" in err["message"]
        assert talk.call("status")["result"]["device"]["dependency"] == dependency  # still serving
        assert talk.call("shutdown")["result"]["ok"] is True
        assert proc.wait(TIMEOUT) == 0
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "o").exists() or os.listdir(tmp_path / "o") == []


def test_sigterm_cancels_the_jobs_and_exits_143_leaving_only_finished_frames(make_shot, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "smite", "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env())
    talk = Conversation(proc)
    try:
        shot = str(make_shot(frames="0-39"))
        running = talk.call("segment", {"shot": shot, "out": str(tmp_path / "a" / "m.####.exr")})["result"]["job"]
        queued = talk.call("segment", {"shot": shot, "out": str(tmp_path / "b" / "m.####.exr")})["result"]["job"]
        talk.until(lambda m: m.get("method") == "progress" and m["params"]["job"] == running
                   and m["params"]["stage"] == "segment" and m["params"]["done"] >= 1)
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=TIMEOUT)
        talk.seen += [json.loads(line) for line in rest.splitlines()]
        assert proc.returncode == 143, err
    finally:
        proc.kill()
        proc.wait()
    assert err.decode().strip().splitlines()[-1] == "smite: terminated; finished frames are kept, run again to resume"
    done = {m["params"]["job"]: m["params"] for m in talk.seen if m.get("method") == "done"}
    for job in (running, queued):
        assert done[job]["error"]["code"] == protocol.CANCELLED, done
    folder = tmp_path / "a"
    names = [n for n in os.listdir(folder) if n != ".smite-scratch"]  # the scratch cache stays for the resume
    assert names and all(n.startswith("m.") and n.endswith(".exr") for n in names), names  # no temp, no claim
    assert len(names) < 40
    assert not (tmp_path / "b").exists() or os.listdir(tmp_path / "b") == []
