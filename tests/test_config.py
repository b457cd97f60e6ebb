"""Settings and shot manifest: save -> load -> equal, and validation with one-line errors."""

from __future__ import annotations

import dataclasses
import json
import math
import re

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
        ({"backend": "magic"}, "setting .backend. must be one of propagate, diffusion"),
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


# --- issue 14: every setting declares its valid range beside its definition ----------------------

from smite.settings_json import Range, check_ranges, field_ranges, ranged  # noqa: E402


def test_every_setting_declares_its_range():
    declared = field_ranges(Settings)
    numbers = {f.name for f in dataclasses.fields(Settings) if f.type in ("int", "float", "str")}
    assert numbers and numbers <= set(declared)


@pytest.mark.parametrize("name", sorted(n for n, r in field_ranges(Settings).items() if not r.choices))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), -3, 10**12, 10**400],
                         ids=["nan", "inf", "-inf", "-3", "1e12", "1e400"])
def test_out_of_range_setting_is_one_line_naming_setting_and_range(name, bad):
    rng = field_ranges(Settings)[name]
    with pytest.raises(BadInputError) as exc:
        Settings.from_dict({name: bad})
    message = str(exc.value)
    assert "\n" not in message and f"setting '{name}'" in message
    if isinstance(bad, int) and bad != 10**400:  # a plain number of the right kind: the range is named
        assert f"must be {rng.describe()}, got {bad}" in message


@pytest.mark.parametrize("data", [{"refine_eps": float("nan")}, {"occlusion_decay": float("inf")},
                                  {"refine_radius": -3}, {"carry_decay": -1}, {"uncertain_blur": -1},
                                  {"lowpass_strength": float("nan")}, {"snap_radius": 100000},
                                  {"appearance_levels": 0}, {"appearance_levels": 100000}, {"vote_window": 4},
                                  {"flow_preset": "slow"}])
def test_issue_14_settings_are_refused(data):
    """Each was accepted before (flat 0.5 mattes, changed results, or a 14 PiB allocation)."""
    with pytest.raises(BadInputError, match=f"setting '{next(iter(data))}' must be"):
        Settings.from_dict(data)
    with pytest.raises(BadInputError):
        Settings().replace(**data)  # however the object is made


def test_range_descriptions_and_bounds():
    assert Range(0, 1, lo_open=True).describe() == "in (0, 1]"
    assert Range(1, 99, odd=True).describe() == "an odd number in [1, 99]"
    assert Range(choices=("a", "b")).describe() == "one of a, b"
    assert Range(32, 2048, multiple=32).describe() == "a multiple of 32 in [32, 2048]"
    assert Range(32, 2048, multiple=32).admits(512) and not Range(32, 2048, multiple=32).admits(500)
    assert Range(0, 1, lo_open=True).admits(1) and not Range(0, 1, lo_open=True).admits(0)
    assert not Range(0, None).admits(float("nan")) and Range(0, None).admits(1e300)
    with pytest.raises(ValueError):
        ranged(5, 0, 1)  # a default outside its own range is a programming error, caught at import


def test_unranged_float_fields_must_still_be_finite():
    @dataclasses.dataclass(frozen=True)
    class Demo:
        x: float = 1.0

        def __post_init__(self):
            check_ranges(self, "demo setting")

    with pytest.raises(BadInputError, match="demo setting 'x' must be a finite number"):
        Demo(x=float("nan"))


def test_cli_set_nan_is_one_line(make_shot, tmp_path, capsys):
    from smite.cli.main import main

    code = main(["segment", "--shot", str(make_shot()), "--out", str(tmp_path / "m.####.exr"), "--quiet",
                 "--set", "refine_eps=NaN"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and err == ["smite: error: setting 'refine_eps' must be in (0, 1], got nan"]
