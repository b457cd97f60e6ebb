"""smite.hostapi.protocol: framing, message shapes, validation and error codes (in-memory streams)."""

from __future__ import annotations

import io
import json

import pytest

from smite.hostapi import errorcodes, protocol
from smite.hostapi.protocol import LineReader, LineTooLongError, RpcError, check_request, decode, encode


def test_encode_is_one_line_of_strict_json():
    msg = protocol.result(7, {"text": "a\nb\r\u2028c", "n": 1.5, "path": "/tmp/ü"})
    data = encode(msg)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == msg
    with pytest.raises(ValueError):
        encode(protocol.result(1, float("nan")))


def test_builders_have_the_jsonrpc_shapes():
    assert protocol.request(1, "status", {}) == {"jsonrpc": "2.0", "id": 1, "method": "status", "params": {}}
    assert protocol.notification("log", {"level": "info", "message": "m"}) == {
        "jsonrpc": "2.0", "method": "log", "params": {"level": "info", "message": "m"}}
    assert "params" not in protocol.request(2, "status")
    assert protocol.result("x", None) == {"jsonrpc": "2.0", "id": "x", "result": None}
    err = protocol.error(3, protocol.INVALID_PARAMS, "param 'shot'\n is missing", {"param": "shot"})
    assert err == {"jsonrpc": "2.0", "id": 3,
                   "error": {"code": -32602, "message": "param 'shot' is missing", "data": {"param": "shot"}}}
    assert "data" not in protocol.error(None, -32700, "bad")["error"]


def test_codes_are_reexported_from_errorcodes():
    for name in ("PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS", "INTERNAL_ERROR",
                 "SMITE_ERROR", "BAD_INPUT", "OUTPUT_ERROR", "MISSING_MODEL", "OUT_OF_MEMORY", "CANCELLED",
                 "SERVER_BUSY"):
        assert getattr(protocol, name) == getattr(errorcodes, name)
    assert protocol.METHODS == ("initialize", "learn", "segment", "status", "cancel", "shutdown")
    assert protocol.NOTIFICATIONS == ("progress", "log", "done")


def test_rpc_error_round_trip_and_malformed_error_objects():
    exc = RpcError(-32001, "missing frame 12:\n /a/b.0012.exr", {"frame": 12})
    assert str(exc) == "missing frame 12: /a/b.0012.exr"
    back = RpcError.from_dict(exc.to_dict())
    assert (back.code, back.message, back.data) == (exc.code, exc.message, exc.data)
    assert RpcError.from_dict("nonsense").code == protocol.INTERNAL_ERROR
    assert RpcError.from_dict({"code": True, "message": "x"}).code == protocol.INTERNAL_ERROR


def test_decode_reports_parse_errors_as_rpc_errors():
    assert decode(b'{"a": 1}') == {"a": 1}
    for bad in (b"{", b"not json", b"\xff\xfe{}"):
        with pytest.raises(RpcError) as info:
            decode(bad)
        assert info.value.code == protocol.PARSE_ERROR
        assert "\n" not in info.value.message


def test_line_reader_splits_lines_and_skips_blanks():
    stream = io.BytesIO(b'{"a":1}\n\n  \r\n{"b":2}\r\n{"c":3}')  # last line has no newline
    reader = LineReader(stream)
    assert [json.loads(line) for line in reader] == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert reader.read() is None


def test_line_reader_rejects_long_lines_and_goes_on():
    limit = 32
    exact = b"x" * limit
    long_line = b"y" * (limit * 5 + 3)
    stream = io.BytesIO(exact + b"\n" + long_line + b"\n" + b"after\n" + b"z" * (limit + 1))
    reader = LineReader(stream, max_line=limit)
    assert reader.read() == exact  # exactly at the limit is fine
    with pytest.raises(LineTooLongError) as info:
        reader.read()
    assert info.value.code == protocol.INVALID_REQUEST and str(limit) in info.value.message
    assert reader.read() == b"after"  # the rest of the long line was dropped, nothing leaked
    with pytest.raises(LineTooLongError):
        reader.read()  # an over-long unterminated tail
    assert reader.read() is None


def test_line_reader_skips_a_long_line_in_chunks():
    # The skip reads in bounded chunks; a line far longer than one chunk must still be skipped whole.
    long_line = b"q" * (LineReader._CHUNK * 3 + 17)
    reader = LineReader(io.BytesIO(long_line + b"\nok\n"), max_line=100)
    with pytest.raises(LineTooLongError):
        reader.read()
    assert reader.read() == b"ok"


@pytest.mark.parametrize(
    "msg, fragment",
    [
        ([{"jsonrpc": "2.0", "id": 1, "method": "status"}], "batch"),
        ("status", "JSON object"),
        ({"id": 1, "method": "status"}, "jsonrpc"),
        ({"jsonrpc": "1.0", "id": 1, "method": "status"}, "jsonrpc"),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "status"}, "'id'"),
        ({"jsonrpc": "2.0", "id": True, "method": "status"}, "'id'"),
        ({"jsonrpc": "2.0", "id": 1}, "'method'"),
        ({"jsonrpc": "2.0", "id": 1, "method": 3}, "'method'"),
        ({"jsonrpc": "2.0", "id": 1, "method": "segment", "params": ["a", "b"]}, "'params'"),
    ],
)
def test_check_request_rejects_invalid_requests(msg, fragment):
    with pytest.raises(RpcError) as info:
        check_request(msg)
    assert info.value.code == protocol.INVALID_REQUEST
    assert fragment in info.value.message


def test_check_request_accepts_requests_and_notifications():
    assert check_request({"jsonrpc": "2.0", "id": "a", "method": "status"}) == ("a", "status", {})
    assert check_request({"jsonrpc": "2.0", "method": "cancel", "params": {"job": "j"}}) == (
        None, "cancel", {"job": "j"})
    assert check_request({"jsonrpc": "2.0", "id": 4, "method": "status", "params": None}) == (4, "status", {})


def test_is_response():
    assert protocol.is_response(protocol.result(1, None))
    assert protocol.is_response(protocol.error(1, -32600, "x"))
    assert not protocol.is_response(protocol.request(1, "status"))
    assert not protocol.is_response(protocol.notification("done", {}))
