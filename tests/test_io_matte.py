"""Matte EXR: exact channel names, half/zips, metadata round trip, resume checks."""

import json
import os

import numpy as np
import OpenImageIO as oiio
import pytest

from smite.errors import BadInputError, FrameError
from smite.io.matte import matte_is_complete, read_matte, write_matte

PARTS = ["tail", "head", "body_2"]  # deliberately not in alphabetical order
META = {"smite/backend": "propagate", "smite/version": "0.1.0", "smite/settings": '{"a": 1}', "smite/job": "job-7"}


def _probs(seed=0):
    return np.random.default_rng(seed).random((3, 6, 5), dtype=np.float32)


@pytest.fixture
def matte(tmp_path):
    path = str(tmp_path / "mattes.1001.exr")
    probs = _probs()
    write_matte(path, probs, PARTS, META)
    return path, probs


def test_header_channels_format_and_attributes(matte):
    path, _ = matte
    inp = oiio.ImageInput.open(path)
    spec = inp.spec()
    inp.close()
    assert sorted(spec.channelnames) == sorted(["smite_tail.A", "smite_head.A", "smite_body_2.A"])
    assert spec.format == oiio.HALF
    assert all(spec.channelformat(i) == oiio.HALF for i in range(spec.nchannels))
    assert spec.get_string_attribute("compression") == "zips"
    assert json.loads(spec.get_string_attribute("smite/parts")) == PARTS
    for key, value in META.items():
        assert spec.get_string_attribute(key) == value


def test_round_trip_keeps_part_order_and_half_precision(matte):
    path, probs = matte
    parts, back, metadata = read_matte(path)
    assert parts == PARTS
    assert back.dtype == np.float32 and back.shape == (3, 6, 5)
    assert np.abs(back - probs).max() < 1e-3  # half precision
    assert np.abs(back - probs).max() > 0.0  # it really is half, not float
    assert metadata == {**META, "smite/parts": json.dumps(PARTS)}
    assert os.listdir(os.path.dirname(path)) == ["mattes.1001.exr"]


@pytest.mark.parametrize("bad", ["left arm", "a.b", "", "ü", "a-b"])
def test_invalid_part_names_are_refused(tmp_path, bad):
    with pytest.raises(BadInputError, match="part name"):
        write_matte(str(tmp_path / "m.exr"), np.zeros((1, 2, 2), np.float32), [bad], {})
    assert os.listdir(tmp_path) == []


def test_shape_must_match_parts(tmp_path):
    with pytest.raises(BadInputError, match="do not match 2 parts"):
        write_matte(str(tmp_path / "m.exr"), np.zeros((3, 2, 2), np.float32), ["a", "b"], {})


def test_complete_when_everything_matches(matte):
    path, _ = matte
    expected = {**META, "smite/parts": json.dumps(PARTS, indent=None, separators=(",", ":"))}
    assert matte_is_complete(path, expected)
    assert matte_is_complete(path, {"smite/parts": json.dumps(["head"])})


def test_incomplete_for_mismatched_metadata_or_parts(matte, tmp_path):
    path, _ = matte
    assert not matte_is_complete(path, {**META, "smite/job": "job-8"})
    assert not matte_is_complete(path, {"smite/model": "x.smite"})  # key absent from the file
    assert not matte_is_complete(path, {"smite/parts": json.dumps(["head", "wing"])})
    assert not matte_is_complete(str(tmp_path / "absent.exr"), META)


def test_incomplete_for_truncated_file(tmp_path):
    path = tmp_path / "big.exr"
    probs = np.random.default_rng(1).random((2, 64, 48), dtype=np.float32)
    write_matte(str(path), probs, ["a", "b"], META)
    assert matte_is_complete(str(path), META)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    assert not matte_is_complete(str(path), META)
    with pytest.raises(FrameError, match="big.exr"):
        read_matte(str(path))


def test_incomplete_for_a_foreign_exr(tmp_path):
    from smite.io.image import write_image

    path = str(tmp_path / "plain.exr")
    write_image(path, np.zeros((2, 2, 3), np.float32))
    assert not matte_is_complete(path, {})
    with pytest.raises(FrameError, match="smite/parts"):
        read_matte(path)


def test_incomplete_when_a_listed_channel_is_missing(tmp_path):
    from smite.io.image import write_image

    path = str(tmp_path / "m.exr")
    attributes = {**META, "smite/parts": json.dumps(["a", "b"])}
    write_image(path, np.zeros((2, 2, 1), np.float32), dtype="half", channel_names=["smite_a.A"], attributes=attributes)
    assert not matte_is_complete(path, {"smite/parts": json.dumps(["a"])})
    with pytest.raises(FrameError, match="lacks channel smite_b.A"):
        read_matte(path)
