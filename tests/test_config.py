"""Settings and shot manifest: save -> load -> equal, and validation with one-line errors."""

from __future__ import annotations

import json

import pytest

from smite.config import Settings, ShotSpec, load_shot
from smite.errors import BadInputError, ManifestError


def test_settings_round_trip(tmp_path):
    settings = Settings().replace(vote_window=9, lowpass_tau=0.3, temporal=False, flow_preset="fast")
    path = tmp_path / "settings.json"
    path.write_text(settings.to_json())
    assert Settings.from_dict(json.loads(path.read_text())) == settings
    assert list(json.loads(settings.to_json())) == sorted(json.loads(settings.to_json()))  # sorted keys


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"vote_window": 4}, "odd"),
        ({"temporal": "yes"}, "true or false"),
        ({"work_max_side": 1.5}, "integer"),
        ({"backend": "magic"}, "unknown backend"),
        ({"nonsense": 1}, "unknown setting"),
        ({"lowpass_tau": 0}, "lowpass_tau"),
    ],
)
def test_settings_validation(data, needle):
    with pytest.raises(BadInputError, match=needle):
        Settings.from_dict(data)


def test_manifest_round_trip_and_relative_paths(tmp_path):
    (tmp_path / "masks").mkdir()
    data = {"plate": "frames/%05d.jpg", "frames": "0-59x2", "parts": ["body", "wheel"],
            "references": [{"frame": 30, "masks": {"wheel": "roto/w.0030.exr"}}, {"frame": 0, "labels": "masks/0.png"}]}
    path = tmp_path / "shot.json"
    path.write_text(json.dumps(data))
    shot = load_shot(str(path))
    assert shot.plate == str(tmp_path / "frames" / "%05d.jpg")
    assert shot.frames == tuple(range(0, 60, 2))
    assert shot.reference_frames == (0, 30)  # sorted
    assert shot.references[1].masks["wheel"] == str(tmp_path / "roto" / "w.0030.exr")
    again = ShotSpec.from_dict(shot.to_dict(), "/elsewhere")
    assert again.to_dict() == shot.to_dict()


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"parts": ["a b"]}, "part name"),
        ({"parts": ["a", "a"]}, "duplicate"),
        ({"references": [{"frame": 0}]}, "exactly one of 'labels' or 'masks'"),
        ({"references": [{"frame": 1, "labels": "x.png"}]}, "outside"),
        ({"references": [{"frame": 0, "labels": "x.png"}, {"frame": 0, "labels": "y.png"}]}, "given twice"),
        ({"frames": "ten"}, "ten"),
        ({"extra": 1}, "unknown field 'extra'"),
    ],
)
def test_manifest_validation(change, needle):
    data = {"plate": "p.####.exr", "frames": "0-9x2", "parts": ["a"], "references": [{"frame": 0, "labels": "m.png"}]}
    data.update(change)
    with pytest.raises(ManifestError, match=needle):
        ShotSpec.from_dict(data, "/tmp", source="shot.json")
