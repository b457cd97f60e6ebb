"""smite.server: dispatch, param errors, job queue, progress, cancel, shutdown — with a fake engine.

The fake engine walks the requested frames, reports progress after each and checks the cancel
event between frames, like the real one; a gate lets a test hold a job mid-flight.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from smite.hostapi import protocol
from smite.errors import CancelledError, FrameError
from smite.server import LogForwarder, Server

TIMEOUT = 10.0


class Sink:
    """A binary ``out`` stream that parses what the server writes and lets a test wait for it."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.cond = threading.Condition()

    def write(self, data: bytes) -> int:
        with self.cond:
            assert data.endswith(b"\n") and data.count(b"\n") == 1
            self.messages.append(json.loads(data))
            self.cond.notify_all()
        return len(data)

    def flush(self) -> None:
        pass

    def wait_for(self, pred, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for msg in self.messages:
                    if pred(msg):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching message; got {self.messages}")
                self.cond.wait(left)

    def reply(self, msg_id) -> dict:
        return self.wait_for(lambda m: m.get("id") == msg_id and "method" not in m)

    def done(self, job: str) -> dict:
        return self.wait_for(lambda m: m.get("method") == "done" and m["params"]["job"] == job)["params"]

    def notes(self, method: str, job: str) -> list[dict]:
        with self.cond:
            return [m["params"] for m in self.messages if m.get("method") == method and m["params"].get("job") == job]


class FakeResult:
    def __init__(self, written):
        self.written = written

    def to_dict(self):
        return {"written": self.written, "skipped": []}


class FakeEngine:
    """Records calls; ``gate`` (if set) must be opened before each frame after the first; ``fail`` raises."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.frames_done: list[int] = []
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.fail: BaseException | None = None
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def segment_shot(self, shot, out_pattern, settings, *, frames=None, preview=False, force=False,
                     progress=None, cancel=None):
        self.calls.append({"shot": shot, "out": out_pattern, "settings": settings, "frames": frames,
                           "preview": preview, "force": force})
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.started.set()
            if self.fail is not None:
                raise self.fail
            todo = list(shot.frames if frames is None else frames)
            written = []
            for i, frame in enumerate(todo):
                if i and self.gate is not None:
                    assert self.gate.wait(TIMEOUT)
                if cancel is not None and cancel.is_set():
                    raise CancelledError(f"cancelled after {len(written)} new frame(s)")
                logging.getLogger("smite.engine").info("frame %d", frame)
                written.append(frame)
                self.frames_done.append(frame)
                progress("segment", i + 1, len(todo), f"frame {frame}")
            return FakeResult(written)
        finally:
            with self.lock:
                self.active -= 1

    def learn_parts(self, shot, out_path, settings, *, progress=None, cancel=None):
        self.calls.append({"method": "learn", "shot": shot, "out": out_path, "settings": settings})
        progress("learn", 1, 1, "done")
        return {"out": out_path, "parts": list(shot.parts)}

    def device_info(self):
        return {"type": "fake"}


@pytest.fixture
def shot(tmp_path):
    """A manifest whose plate frames 1-5 and reference label map exist (contents are never read here)."""
    plate = tmp_path / "plate"
    plate.mkdir()
    for f in range(1, 6):
        (plate / f"p.{f:04d}.png").write_bytes(b"")
    (tmp_path / "ref.png").write_bytes(b"")
    manifest = {"plate": "plate/p.####.png", "frames": "1-5", "parts": ["seat", "legs"],
                "references": [{"frame": 1, "labels": "ref.png"}]}
    path = tmp_path / "shot.json"
    path.write_text(json.dumps(manifest))
    return {"path": str(path), "dict": manifest, "dir": str(tmp_path)}


@pytest.fixture
def server():
    engine = FakeEngine()
    sink = Sink()
    srv = Server(sink, engine=engine, shutdown_wait=TIMEOUT)
    srv.sink, srv.fake = sink, engine
    yield srv
    if engine.gate is not None:
        engine.gate.set()
    srv.close(timeout=TIMEOUT)


_ids = iter(range(1, 10_000))


def ask(srv: Server, method: str, params=None) -> dict:
    """Send one request through `handle_line` and return its reply."""
    msg_id = next(_ids)
    srv.handle_line(protocol.encode(protocol.request(msg_id, method, params)))
    return srv.sink.reply(msg_id)


def error_of(reply: dict) -> dict:
    assert "error" in reply, reply
    assert "\n" not in reply["error"]["message"]
    return reply["error"]


def test_initialize_reports_versions_and_capabilities(server):
    info = ask(server, "initialize", {"client": "test"})["result"]
    assert info["protocol"] == protocol.PROTOCOL_VERSION
    assert info["methods"] == list(protocol.METHODS)
    assert "propagate" in info["backends"]
    assert info["device"] == {"type": "fake"}
    assert info["server"]["pid"] == os.getpid()


def test_malformed_and_invalid_messages_get_errors_and_serving_goes_on(server):
    server.handle_line(b"{not json")
    assert error_of(server.sink.messages[-1])["code"] == protocol.PARSE_ERROR
    assert server.sink.messages[-1]["id"] is None
    server.handle_line(b'[{"jsonrpc": "2.0", "id": 1, "method": "status"}]')
    assert error_of(server.sink.messages[-1])["code"] == protocol.INVALID_REQUEST
    server.handle_line(b'{"jsonrpc": "2.0", "id": 77, "method": "status", "params": [1]}')
    assert error_of(server.sink.reply(77))["code"] == protocol.INVALID_REQUEST
    reply = ask(server, "frobnicate")
    assert error_of(reply)["code"] == protocol.METHOD_NOT_FOUND and "frobnicate" in reply["error"]["message"]
    assert ask(server, "status")["result"]["jobs"] == []


def test_notifications_get_no_reply_even_on_error(server):
    server.handle_line(b'{"jsonrpc": "2.0", "method": "frobnicate"}')
    server.handle_line(b'{"jsonrpc": "2.0", "method": "status"}')
    assert server.sink.messages == []


@pytest.mark.parametrize(
    "params, name",
    [
        ({"out": "o.####.exr"}, "shot"),
        ({"shot": None, "out": "o.####.exr"}, "shot"),
        ({"shot": 3, "out": "o.####.exr"}, "shot"),
        ({"shot": "SHOT"}, "out"),
        ({"shot": "SHOT", "out": 5}, "out"),
        ({"shot": "SHOT", "out": "o.####.exr", "preview": "yes"}, "preview"),
        ({"shot": "SHOT", "out": "o.####.exr", "force": 1}, "force"),
        ({"shot": "SHOT", "out": "o.####.exr", "frames": "1-x"}, "frames"),
        ({"shot": "SHOT", "out": "o.####.exr", "frames": 2.5}, "frames"),
        ({"shot": "SHOT", "out": "o.####.exr", "settings": [1]}, "settings"),
        ({"shot": "SHOT", "out": "o.####.exr", "colour": "red"}, "colour"),
    ],
)
def test_bad_params_name_the_param(server, shot, params, name):
    params = {k: (shot["path"] if v == "SHOT" else v) for k, v in params.items()}
    err = error_of(ask(server, "segment", params))
    assert err["code"] == protocol.INVALID_PARAMS
    assert f"'{name}'" in err["message"]
    assert err["data"]["param"] == name
    assert server.fake.calls == []


def test_missing_files_and_bad_settings_are_bad_input(server, shot, tmp_path):
    out = str(tmp_path / "out" / "m.####.exr")
    missing = str(tmp_path / "nope.json")
    err = error_of(ask(server, "segment", {"shot": missing, "out": out}))
    assert err["code"] == protocol.BAD_INPUT and missing in err["message"]

    os.remove(os.path.join(shot["dir"], "plate", "p.0003.png"))
    err = error_of(ask(server, "segment", {"shot": shot["path"], "out": out}))
    assert err["code"] == protocol.BAD_INPUT and "missing frame 3" in err["message"]
    assert err["data"]["type"] == "FrameError" and err["data"]["frame"] == 3
    assert "result" in ask(server, "segment", {"shot": shot["path"], "out": out, "frames": "4-5"})

    os.remove(os.path.join(shot["dir"], "ref.png"))
    err = error_of(ask(server, "segment", {"shot": shot["path"], "out": out, "frames": "4-5"}))
    assert err["code"] == protocol.BAD_INPUT and "ref.png" in err["message"]

    err = error_of(ask(server, "segment", {"shot": {"plate": "x.####.png"}, "out": out}))
    assert err["code"] == protocol.BAD_INPUT and "frames" in err["message"]
    err = error_of(ask(server, "segment", {"shot": shot["path"], "out": out, "settings": {"vote_windw": 3}}))
    assert err["code"] == protocol.BAD_INPUT and "vote_windw" in err["message"]
    err = error_of(ask(server, "segment", {"shot": shot["path"], "out": str(tmp_path / "m.exr")}))
    assert err["code"] == protocol.OUTPUT_ERROR


def test_segment_replies_then_streams_progress_then_done(server, shot, tmp_path):
    out = str(tmp_path / "m.####.exr")
    params = {"shot": shot["dict"], "base_dir": shot["dir"], "out": out, "frames": "2-4",
              "settings": {"vote_window": 5}, "preview": True, "force": True}
    reply = ask(server, "segment", params)
    job = reply["result"]["job"]
    assert reply["result"]["queued"] == 0
    done = server.sink.done(job)
    assert done == {"job": job, "result": {"written": [2, 3, 4], "skipped": []}}
    progress = server.sink.notes("progress", job)
    assert [(p["stage"], p["done"], p["total"], p["message"]) for p in progress] == [
        ("segment", 1, 3, "frame 2"), ("segment", 2, 3, "frame 3"), ("segment", 3, 3, "frame 4")]
    order = [m.get("id") or m.get("method") for m in server.sink.messages]
    assert order.index(reply["id"]) < order.index("progress")  # a client always learns the job id first
    call = server.fake.calls[0]
    assert call["frames"] == [2, 3, 4] and call["preview"] is True and call["force"] is True
    assert call["settings"].vote_window == 5 and call["out"] == out
    assert call["shot"].plate == os.path.join(shot["dir"], "plate", "p.####.png")
    status = ask(server, "status", {"job": job})["result"]["job"]
    assert status["state"] == "done" and status["done"] == 3 and status["result"]["written"] == [2, 3, 4]


def test_jobs_queue_and_run_one_at_a_time(server, shot, tmp_path):
    server.fake.gate = threading.Event()
    base = {"shot": shot["path"], "frames": "1-3"}
    first = ask(server, "segment", {**base, "out": str(tmp_path / "a.####.exr")})["result"]
    assert server.fake.started.wait(TIMEOUT)
    second = ask(server, "segment", {**base, "out": str(tmp_path / "b.####.exr")})["result"]
    third = ask(server, "learn", {"shot": shot["path"], "out": str(tmp_path / "parts.smite")})["result"]
    assert (first["queued"], second["queued"], third["queued"]) == (0, 1, 2)
    status = ask(server, "status")["result"]
    assert status["running"] == first["job"] and status["queued"] == [second["job"], third["job"]]
    states = {j["job"]: j["state"] for j in status["jobs"]}
    assert states == {first["job"]: "running", second["job"]: "queued", third["job"]: "queued"}
    server.fake.gate.set()
    assert "result" in server.sink.done(first["job"])
    assert "result" in server.sink.done(second["job"])
    assert server.sink.done(third["job"])["result"] == {"out": str(tmp_path / "parts.smite"), "parts": ["seat", "legs"]}
    assert server.fake.max_active == 1
    assert server.fake.frames_done == [1, 2, 3, 1, 2, 3]


def test_host_settings_with_nested_diffusion_reach_the_engine(server, shot, tmp_path):
    """What the Nuke and Blender frontends send: the part model and SD folder under "diffusion"."""
    part_model = str(tmp_path / "chair.smite")
    settings = {"backend": "diffusion", "diffusion": {"part_model": part_model, "model": "/models/sd21"}}
    job = ask(server, "learn", {"shot": shot["path"], "out": part_model,
                                "settings": {"backend": "diffusion", "diffusion": {"model": "/models/sd21"}}})
    assert server.sink.done(job["result"]["job"])["result"]["out"] == part_model
    job = ask(server, "segment", {"shot": shot["path"], "out": str(tmp_path / "m.####.exr"), "settings": settings})
    assert "result" in server.sink.done(job["result"]["job"])
    learn, segment = server.fake.calls
    assert learn["method"] == "learn" and learn["out"] == part_model
    assert learn["shot"].parts == ("seat", "legs") and learn["settings"].diffusion.model == "/models/sd21"
    assert segment["settings"].backend == "diffusion"
    assert segment["settings"].diffusion.part_model == part_model
    assert segment["settings"].diffusion.model == "/models/sd21"
    bad = ask(server, "segment", {"shot": shot["path"], "out": str(tmp_path / "m.####.exr"),
                                  "settings": {"diffusion": {"part_modle": part_model}}})
    assert "part_modle" in error_of(bad)["message"]


def test_cancel_running_job_stops_between_frames(server, shot, tmp_path):
    server.fake.gate = threading.Event()
    job = ask(server, "segment", {"shot": shot["path"], "out": str(tmp_path / "m.####.exr")})["result"]["job"]
    server.sink.wait_for(lambda m: m.get("method") == "progress")  # frame 1 done, engine waits at the gate
    reply = ask(server, "cancel", {"job": job})["result"]
    assert reply == {"job": job, "state": "cancelling"}
    server.fake.gate.set()
    done = server.sink.done(job)
    assert done["error"]["code"] == protocol.CANCELLED
    assert server.fake.frames_done == [1]
    assert ask(server, "status", {"job": job})["result"]["job"]["state"] == "cancelled"
    assert ask(server, "cancel", {"job": job})["result"]["state"] == "cancelled"  # idempotent


def test_cancel_queued_job_removes_it(server, shot, tmp_path):
    server.fake.gate = threading.Event()
    base = {"shot": shot["path"], "frames": "1-2"}
    first = ask(server, "segment", {**base, "out": str(tmp_path / "a.####.exr")})["result"]["job"]
    second = ask(server, "segment", {**base, "out": str(tmp_path / "b.####.exr")})["result"]["job"]
    assert ask(server, "cancel", {"job": second})["result"] == {"job": second, "state": "cancelled"}
    assert server.sink.done(second)["error"]["code"] == protocol.CANCELLED
    server.fake.gate.set()
    assert "result" in server.sink.done(first)
    assert len(server.fake.calls) == 1
    err = error_of(ask(server, "cancel", {"job": "job-nope"}))
    assert err["code"] == protocol.INVALID_PARAMS and "job-nope" in err["message"]
    assert error_of(ask(server, "cancel", {}))["data"]["param"] == "job"


def test_engine_errors_become_done_errors_and_serving_goes_on(server, shot, tmp_path):
    out = str(tmp_path / "m.####.exr")
    server.fake.fail = FrameError("cannot read frame 3: /x/p.0003.png", frame=3)
    job = ask(server, "segment", {"shot": shot["path"], "out": out})["result"]["job"]
    err = server.sink.done(job)["error"]
    assert err["code"] == protocol.BAD_INPUT
    assert err["message"] == "cannot read frame 3: /x/p.0003.png"
    assert err["data"] == {"type": "FrameError", "frame": 3}

    server.fake.fail = ZeroDivisionError("boom\nsecond line")
    job = ask(server, "segment", {"shot": shot["path"], "out": out})["result"]["job"]
    err = server.sink.done(job)["error"]
    assert err["code"] == protocol.INTERNAL_ERROR and err["message"] == "ZeroDivisionError: boom second line"
    assert "ZeroDivisionError" in err["data"]["traceback"]
    assert ask(server, "status", {"job": job})["result"]["job"]["state"] == "failed"

    server.fake.fail = None
    job = ask(server, "segment", {"shot": shot["path"], "out": out})["result"]["job"]
    assert server.sink.done(job)["result"]["written"] == [1, 2, 3, 4, 5]


def test_log_records_are_forwarded_with_their_job(server, shot, tmp_path):
    handler = LogForwarder(server)
    logger = logging.getLogger("smite")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        job = ask(server, "segment", {"shot": shot["path"], "out": str(tmp_path / "m.####.exr"), "frames": "2"})
        job = job["result"]["job"]
        server.sink.done(job)
        logging.getLogger("smite.other").warning("outside\njob")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    logs = [m["params"] for m in server.sink.messages if m.get("method") == "log"]
    assert {"level": "info", "message": "frame 2", "logger": "smite.engine", "job": job} in logs
    assert {"level": "warning", "message": "outside job", "logger": "smite.other"} in logs


def test_serve_shutdown_cancels_running_job_and_returns_zero(shot, tmp_path):
    engine, sink = FakeEngine(), Sink()
    engine.gate = threading.Event()
    srv = Server(sink, engine=engine, shutdown_wait=TIMEOUT)
    r, w = os.pipe()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", srv.serve(os.fdopen(r, "rb"))))
    thread.start()
    writer = os.fdopen(w, "wb", buffering=0)
    for msg_id, name in ((1, "m"), (2, "n")):
        params = {"shot": shot["path"], "out": str(tmp_path / f"{name}.####.exr")}
        writer.write(protocol.encode(protocol.request(msg_id, "segment", params)))
    job = sink.reply(1)["result"]["job"]
    queued = sink.reply(2)["result"]["job"]
    sink.wait_for(lambda m: m.get("method") == "progress")
    writer.write(protocol.encode(protocol.request(3, "shutdown")))
    assert sink.reply(3)["result"] == {"ok": True, "cancelled": [queued, job]}
    engine.gate.set()
    thread.join(TIMEOUT)
    writer.close()
    assert result["rc"] == 0
    assert sink.done(job)["error"]["code"] == protocol.CANCELLED
    assert sink.done(queued)["error"]["code"] == protocol.CANCELLED
    assert len(engine.calls) == 1


def test_serve_answers_oversized_lines_and_goes_on():
    import io

    sink = Sink()
    srv = Server(sink, engine=FakeEngine(), max_line=64)
    stream = io.BytesIO(b'{"jsonrpc":"2.0","id":1,"method":"status","params":{"pad":"' + b"x" * 200 + b'"}}\n'
                        + protocol.encode(protocol.request(2, "status")))
    assert srv.serve(stream) == 0  # end of input: the server stops by itself
    assert sink.messages[0]["error"]["code"] == protocol.INVALID_REQUEST and "64" in sink.messages[0]["error"]["message"]
    assert sink.reply(2)["result"]["jobs"] == []


STRAY_PRINTS = r"""
import os, sys
from smite.server import Server, protect_stdout
out = protect_stdout()
print("stray print from a library")
os.write(1, b"stray C-level write\n")
sys.exit(Server(out, engine=object()).serve(sys.stdin.buffer))
"""


def test_stray_prints_never_reach_the_protocol_stream():
    requests = protocol.encode(protocol.request(1, "status")) + protocol.encode(protocol.request(2, "shutdown"))
    proc = subprocess.run([sys.executable, "-c", STRAY_PRINTS], input=requests, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [1, 2]
    assert b"stray print from a library" in proc.stderr and b"stray C-level write" in proc.stderr


def test_serve_module_runs_as_a_command():
    requests = b"garbage\n" + protocol.encode(protocol.request(1, "shutdown"))
    proc = subprocess.run([sys.executable, "-m", "smite.cli.serve"], input=requests, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert replies[0]["error"]["code"] == protocol.PARSE_ERROR
    assert replies[1] == {"jsonrpc": "2.0", "id": 1, "result": {"ok": True, "cancelled": []}}
