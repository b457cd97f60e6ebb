"""smite.server under hostile input (issue 14): it answers every request, never dies, stays bounded.

Each test is named after a behaviour that failed before the fix. The fake engine and sink are the
ones of test_server.py.
"""

from __future__ import annotations

import gc
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest

from smite.hostapi import protocol
from smite.io.sequence import MAX_FRAMES
from smite.server import MAX_JOBS, Server
from test_server import TIMEOUT, FakeEngine, Sink, ask, error_of, server, shot  # noqa: F401 - fixtures

SURROGATE = "\ud800"


def raw(srv: Server, text: str) -> None:
    """Send one line written as JSON text (so a test can put escapes like \\ud800 anywhere)."""
    srv.handle_line(text.encode("ascii"))


# --- lone UTF-16 surrogates ------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["id", "method", "job", "out", "shot", "base_dir", "frames", "settings key",
                                   "part name"])
def test_lone_surrogate_in_any_field_is_answered_not_fatal(server, shot, tmp_path, field):
    out = str(tmp_path / "m.####.exr")
    params = {"shot": shot["path"], "out": out}
    method, msg_id = "segment", 41
    if field == "id":
        msg_id, method = SURROGATE, "status"
        params = {}
    elif field == "method":
        method = SURROGATE
    elif field == "job":
        method, params = "cancel", {"job": SURROGATE}
    elif field in ("out", "shot", "base_dir", "frames"):
        params[field] = out + SURROGATE if field == "out" else SURROGATE
    elif field == "settings key":
        params["settings"] = {SURROGATE: 1}
    else:
        params["shot"] = {**shot["dict"], "parts": [SURROGATE]}
        params["base_dir"] = shot["dir"]
    line = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})  # ASCII escapes
    raw(server, line)
    reply = server.sink.reply(msg_id)
    if field == "id":
        assert "result" in reply
    else:
        err = error_of(reply)
        assert err["code"] in (protocol.INVALID_PARAMS, protocol.METHOD_NOT_FOUND, protocol.BAD_INPUT,
                               protocol.OUTPUT_ERROR), err
    assert ask(server, "status")["result"]["running"] is None  # still serving
    assert server.fake.calls == []


def test_encode_never_fails_on_lone_surrogates():
    data = protocol.encode({"jsonrpc": "2.0", "id": SURROGATE, "error": {"code": 1, "message": "x" + SURROGATE}})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data)["id"] == SURROGATE
    assert protocol.encode({"m": "café"}) == '{"m":"café"}\n'.encode("utf-8")  # ordinary text stays UTF-8


HOSTILE_LINES = [
    '{"jsonrpc":"2.0","id":"\\ud800","method":"status"}',
    '{"jsonrpc":"2.0","id":2,"method":"\\udfff"}',
    '{"jsonrpc":"2.0","id":3,"method":"cancel","params":{"job":"\\ud800"}}',
    '{"jsonrpc":"2.0","id":4,"method":"segment","params":{"shot":"\\ud800.json","out":"o.####.exr"}}',
    '{"jsonrpc":"2.0","id":5,"method":"segment","params":{"shot":"s.json","out":"\\ud800.####.exr"}}',
    "[" * 100_000,
    '{"jsonrpc":"2.0","id":6,"method":"segment","params":{"shot":"s.json","out":"o.####.exr","frames":"0-100000000"}}',
    '{"jsonrpc":"2.0","id":7,"method":"shutdown"}',
]


def test_real_server_process_survives_surrogates_nesting_and_huge_ranges(tmp_path):
    """The installed `smite serve` answers each hostile line and exits 0 (it used to exit 1 on a surrogate)."""
    data = ("\n".join(HOSTILE_LINES) + "\n").encode("ascii")
    proc = subprocess.run([sys.executable, "-m", "smite.cli.serve"], input=data, capture_output=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    by_id = {r["id"]: r for r in replies if "id" in r}
    assert set(by_id) == {SURROGATE, 2, 3, 4, 5, 6, 7, None}
    assert by_id[None]["error"]["code"] == protocol.PARSE_ERROR  # the 100,000 '[' line
    assert by_id[6]["error"]["code"] == protocol.INVALID_PARAMS
    assert by_id[7]["result"]["ok"] is True


# --- nesting and huge ranges -------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000, "[" * 100_000 + "]" * 100_000])
def test_deeply_nested_json_is_a_parse_error_not_an_internal_error(server, text):
    raw(server, text)
    err = error_of(server.sink.messages[-1])
    assert err["code"] == protocol.PARSE_ERROR and "nested too deeply" in err["message"]


@pytest.mark.parametrize("frames", ["0-10000000", "0-100000000", "1-99999999999999999999x1", f"1-{MAX_FRAMES + 1}",
                                    list(range(MAX_FRAMES + 1))])
def test_huge_frame_ranges_are_refused_at_once(server, shot, tmp_path, frames):
    start = time.monotonic()
    err = error_of(ask(server, "segment", {"shot": shot["path"], "out": str(tmp_path / "m.####.exr"),
                                           "frames": frames}))
    assert time.monotonic() - start < 5.0
    assert err["code"] == protocol.INVALID_PARAMS and str(MAX_FRAMES) in err["message"]


def test_large_inline_shot_is_planned_in_linear_time(server, tmp_path):
    """20,000 frames used to take 10 s (a set rebuilt per frame); now one folder listing."""
    plate = tmp_path / "plate"
    plate.mkdir()
    for f in range(1, 20_001):
        (plate / f"p.{f:05d}.png").write_bytes(b"")
    (tmp_path / "ref.png").write_bytes(b"")
    shot_dict = {"plate": "plate/p.#####.png", "frames": "1-20000", "parts": ["a"],
                 "references": [{"frame": 1, "labels": "ref.png"}]}
    start = time.monotonic()
    reply = ask(server, "segment", {"shot": shot_dict, "base_dir": str(tmp_path),
                                    "out": str(tmp_path / "o" / "m.####.exr"), "frames": "19990-20000"})
    assert "result" in reply, reply
    os.remove(plate / "p.12345.png")
    err = error_of(ask(server, "segment", {"shot": shot_dict, "base_dir": str(tmp_path),
                                           "out": str(tmp_path / "o" / "m.####.exr")}))
    assert "missing frame 12345" in err["message"]
    assert time.monotonic() - start < 5.0


def test_status_and_cancel_answer_while_a_segment_is_being_planned(server, shot, tmp_path, monkeypatch):
    release = threading.Event()
    planning = threading.Event()
    real = Server._shot

    def slow_shot(spec, base):
        planning.set()
        assert release.wait(TIMEOUT)
        return real(spec, base)

    monkeypatch.setattr(Server, "_shot", staticmethod(slow_shot))
    server.handle_line(protocol.encode(protocol.request(1, "segment", {"shot": shot["path"],
                                                                       "out": str(tmp_path / "m.####.exr")})))
    assert planning.wait(TIMEOUT)
    assert ask(server, "status")["result"]["jobs"] == []  # answered while request 1 is still planning
    assert error_of(ask(server, "cancel", {"job": "job-x"}))["code"] == protocol.INVALID_PARAMS
    release.set()
    job = server.sink.reply(1)["result"]["job"]
    assert server.sink.done(job)["result"]["written"] == [1, 2, 3, 4, 5]


# --- bounded memory ---------------------------------------------------------------------------------

def test_job_queue_is_bounded(server, shot, tmp_path):
    server.fake.gate = threading.Event()
    params = {"shot": shot["path"], "out": str(tmp_path / "m.####.exr")}
    first = ask(server, "segment", params)["result"]["job"]
    assert server.fake.started.wait(TIMEOUT)
    for _ in range(MAX_JOBS):
        assert "result" in ask(server, "segment", params)
    err = error_of(ask(server, "segment", params))
    assert err["code"] == protocol.SERVER_BUSY and str(MAX_JOBS) in err["message"]
    server.fake.gate.set()
    server.sink.done(first)


class Counter:
    """An ``out`` stream that only counts lines, so the test measures the server, not a sink."""

    def __init__(self) -> None:
        self.lines = 0
        self.done = threading.Semaphore(0)

    def write(self, data: bytes) -> int:
        self.lines += 1
        if b'"method":"done"' in data:
            self.done.release()
        return len(data)

    def flush(self) -> None:
        pass


class InstantEngine:
    def segment_shot(self, shot, out_pattern, settings, *, frames=None, preview=False, force=False,
                     progress=None, cancel=None):
        return {"written": list(frames or shot.frames), "skipped": []}


def test_memory_is_given_back_after_many_large_requests(shot, tmp_path):
    """Six 1,000,000-frame requests used to keep ~40 MB each; finished jobs now drop their engine call."""
    out = Counter()
    srv = Server(out, engine=InstantEngine(), shutdown_wait=TIMEOUT)
    line = protocol.encode(protocol.request(1, "segment", {
        # a movie-file plate has no frame token, so planning checks no frame files (none are needed here)
        "shot": {**shot["dict"], "plate": "plate.mov", "frames": f"1-{MAX_FRAMES}"}, "base_dir": shot["dir"],
        "out": str(tmp_path / "m.####.exr"), "frames": list(range(1, MAX_FRAMES + 1, 2))}))
    try:
        srv.handle_line(line)  # warm-up: imports, caches
        assert out.done.acquire(timeout=TIMEOUT)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(12):
            srv.handle_line(line)
        for _ in range(12):
            assert out.done.acquire(timeout=TIMEOUT)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    finally:
        srv.close(timeout=TIMEOUT)
    one_request = 50_000 * 36  # the frame list alone: 50,000 Python ints of ~36 bytes each
    assert grown < one_request, f"{grown / 1e6:.1f} MB kept after 12 requests"


# --- fuzz -------------------------------------------------------------------------------------------

FUZZ_MESSAGES = 2000
FUZZ_SEED = 14


def _fuzz_lines(rng: random.Random, shot: dict, tmp: str) -> tuple[list[bytes], set, int]:
    """Seeded hostile traffic: (lines, ids that must get exactly one reply, number of id-less error replies)."""
    lines: list[bytes] = []
    want_ids: set = set()
    null_replies = 0
    junk_values = [None, True, 0, -1, 2**70, 1.5, "", SURROGATE, "x" * 300, [], [1, "a"], {}, {"a": {"b": []}},
                   "0-100000000", "1-x", "../../IMG_####.jpg", "/dev/zero", "\x00", "\u202e"]
    methods = list(protocol.METHODS) + ["frobnicate", "", SURROGATE, "m_segment", "__init__", "_submit"]
    methods.remove("shutdown")
    for n in range(FUZZ_MESSAGES):
        kind = rng.random()
        msg_id: object = n if rng.random() < 0.7 else f"id-{n}-{SURROGATE if rng.random() < 0.2 else ''}"
        if kind < 0.12:  # not JSON, not UTF-8, not an object, or nested too deep
            lines.append(rng.choice([b"{", b"\xff\xfe", b"[1,2]", b"42", b'"s"', b"[" * 5000, b"{\"a\":" * 3000,
                                     b"nul\x00l", bytes(rng.randrange(256) for _ in range(20)).replace(b"\n", b"")]))
            if lines[-1].strip():
                null_replies += 1
            continue
        if kind < 0.18:  # an id of the wrong type
            lines.append(json.dumps({"jsonrpc": "2.0", "id": rng.choice([[1], {"a": 1}, 1.5, True]),
                                     "method": "status"}).encode())
            null_replies += 1
            continue
        method = rng.choice(methods)
        if method in ("segment", "learn"):
            params = {"shot": rng.choice([shot["path"], shot["dict"], SURROGATE, 7]),
                      "out": rng.choice([os.path.join(tmp, f"o{n}", "m.####.exr"), "m.exr", "../../IMG_####.jpg",
                                         os.path.join(tmp, "m.####.exr" + SURROGATE)]),
                      "base_dir": shot["dir"]}
            if method == "segment" and rng.random() < 0.5:
                params["frames"] = rng.choice(["2-4", "0-100000000", "0-10000000", [1, 3], "9", "", [True]])
            if rng.random() < 0.3:
                params[rng.choice(["settings", "preview", "force", "frames", "extra"])] = rng.choice(junk_values)
        elif method in ("status", "cancel"):
            params = {"job": rng.choice([f"job-{os.getpid()}-{rng.randrange(1, 50)}", SURROGATE, 5, None])}
            if method == "status" and rng.random() < 0.5:
                params = {}
        else:
            params = {rng.choice(["client", "x", SURROGATE]): rng.choice(junk_values)} if rng.random() < 0.5 else {}
        msg = {"jsonrpc": rng.choice(["2.0"] * 9 + ["1.0"]), "method": method, "params": params}
        if rng.random() < 0.05:
            msg["params"] = rng.choice(junk_values)
        if rng.random() < 0.95:
            msg["id"] = msg_id
            want_ids.add(msg_id)
        else:  # a notification: no reply, unless it is not even a valid request (then one with id null)
            try:
                protocol.check_request(msg)
            except protocol.RpcError:
                null_replies += 1
        lines.append(json.dumps(msg).encode())
    lines.append(protocol.encode(protocol.request("last", "shutdown")))
    want_ids.add("last")
    return lines, want_ids, null_replies


def test_fuzzed_server_answers_every_request_and_never_dies(shot, tmp_path):
    rng = random.Random(FUZZ_SEED)
    lines, want_ids, null_replies = _fuzz_lines(rng, shot, str(tmp_path))
    sink = Sink()
    srv = Server(sink, engine=FakeEngine(), shutdown_wait=TIMEOUT)
    start = time.monotonic()
    rc = srv.serve(io.BytesIO(b"\n".join(lines) + b"\n"))
    took = time.monotonic() - start
    assert rc == 0
    assert took < 60.0, f"{len(lines)} messages took {took:.1f} s"
    replies = [m for m in sink.messages if "method" not in m]
    ids = [r.get("id") for r in replies]
    assert sorted(map(repr, (i for i in ids if i is not None))) == sorted(map(repr, want_ids))  # exactly one each
    assert ids.count(None) == null_replies
    assert all("result" in r or ("error" in r and "\n" not in r["error"]["message"]) for r in replies)
    assert not any(r.get("error", {}).get("code") == protocol.INTERNAL_ERROR for r in replies), \
        [r for r in replies if r.get("error", {}).get("code") == protocol.INTERNAL_ERROR][:3]
    jobs = [r["result"]["job"] for r in replies 
            if isinstance(r.get("result"), dict) and isinstance(r["result"].get("queued"), int)]
    done = [m["params"]["job"] for m in sink.messages if m.get("method") == "done"]
    # every accepted job ended exactly once (a segment sent as a notification queues a job too)
    assert jobs and set(jobs) <= set(done) and len(done) == len(set(done))
    assert not any(os.path.exists(p) for p in ("IMG_0001.jpg", os.path.join(shot["dir"], "..", "..", "IMG_0001.jpg")))
