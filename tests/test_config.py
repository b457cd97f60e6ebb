"""Settings and shot manifest: save -> load -> equal, and validation with one-line errors."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from smite.backends import BACKEND_NAMES
from smite.backends.propagate_settings import PropagateSettings
from smite.config import BACKEND_SETTINGS, SETTINGS_VERSION, Settings, ShotSpec, load_shot, setting_path
from smite.model.settings import DiffusionSettings
from smite.errors import BadInputError, ManifestError


def test_settings_round_trip(tmp_path):
    settings = Settings().replace(vote_window=9, temporal=False, seed=7,
                                  propagate=PropagateSettings(colour_sigma=0.3, flow_preset="fast"),
                                  diffusion=DiffusionSettings(window=8, overlap=4))
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
        ({"colour_sigma": 0}, "colour_sigma"),
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


def _ranges() -> dict:
    """Every ranged setting a flat name reaches: the shared ones and the weight-free backend's."""
    return {**field_ranges(Settings), **field_ranges(PropagateSettings)}


@pytest.mark.parametrize("cls", [Settings, PropagateSettings])
def test_every_setting_declares_its_range(cls):
    declared = field_ranges(cls)
    numbers = {f.name for f in dataclasses.fields(cls) if f.type in ("int", "float", "str")}
    assert numbers and numbers <= set(declared)


@pytest.mark.parametrize("name", sorted(n for n, r in _ranges().items() if not r.choices))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), -3, 10**12, 10**400],
                         ids=["nan", "inf", "-inf", "-3", "1e12", "1e400"])
def test_out_of_range_setting_is_one_line_naming_setting_and_range(name, bad):
    rng = _ranges()[name]
    with pytest.raises(BadInputError) as exc:
        Settings.from_dict({name: bad})
    message = str(exc.value)
    assert "\n" not in message and f"setting '{name}'" in message
    if isinstance(bad, int) and bad != 10**400:  # a plain number of the right kind: the range is named
        assert f"must be {rng.describe()}, got {bad}" in message


@pytest.mark.parametrize("data", [{"refine_eps": float("nan")}, {"occlusion_decay": float("inf")},
                                  {"refine_radius": -3}, {"carry_decay": -1}, {"uncertain_blur": -1},
                                  {"track_fail_weight": float("nan")}, {"snap_radius": 100000},
                                  {"appearance_levels": 0}, {"appearance_levels": 100000}, {"vote_window": 4},
                                  {"flow_preset": "slow"}])
def test_issue_14_settings_are_refused(data):
    """Each was accepted before (flat 0.5 mattes, changed results, or a 14 PiB allocation)."""
    with pytest.raises(BadInputError, match=f"setting '{next(iter(data))}' must be"):
        Settings.from_dict(data)
    with pytest.raises(BadInputError):  # however the object is made
        section, _ = setting_path(next(iter(data)))
        PropagateSettings().replace(**data) if section else Settings().replace(**data)


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
    assert code == 2 and err == ["smite: error: propagate setting 'refine_eps' must be in (0, 1], got nan"]


# --- issue 10: shared settings, each backend's own nested under its name -------------------------

V1 = {  # what `Settings().to_json()` wrote in version 1 (flat weight-free settings, two seeds), non-defaults
    "version": 1, "backend": "diffusion", "temporal": True, "vote_window": 9, "vote_stride": 3, "lowpass_tau": 0.3,
    "lowpass_strength": 0.5, "work_max_side": 320, "flow_preset": "fast", "carry_decay": 0.9, "occlusion_decay": 0.6,
    "appearance_weight": 1.0, "appearance_levels": 16, "uncertain_blur": 0.1, "snap_radius": 4, "snap_eps": 0.0005,
    "refine_radius": 6, "refine_eps": 0.0005, "context": 4, "seed": 3,
    "diffusion": {"window": 8, "overlap": 4, "seed": 3, "part_model": "/p.smite"},
}


def test_backend_sections_are_the_backend_table():
    assert tuple(BACKEND_SETTINGS) == BACKEND_NAMES
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for name, kind in BACKEND_SETTINGS.items():
        assert isinstance(fields[name].default_factory(), kind)


def test_version_1_settings_are_upgraded():
    settings = Settings.from_dict(V1)
    # lowpass_tau and lowpass_strength are retired (issue 12): dropped on reading
    # a value the file names is kept even where it was the default then (appearance_levels, 32 since issue 12)
    # the shared plate refine of versions 1 and 2 goes to every backend (each has its own since version 3)
    assert settings.propagate == PropagateSettings(vote_stride=3, work_max_side=320, flow_preset="fast",
                                                   carry_decay=0.9, appearance_levels=16, refine_radius=6)
    assert settings.diffusion == DiffusionSettings(window=8, overlap=4, part_model="/p.smite", refine_radius=6)
    assert (settings.backend, settings.vote_window, settings.own().refine_radius, settings.context, settings.seed) == \
        ("diffusion", 9, 6, 4, 3)
    assert Settings.from_dict(json.loads(settings.to_json())) == settings
    assert json.loads(settings.to_json())["version"] == SETTINGS_VERSION == 3
    # unversioned JSON (a host's, a hand-written file) is read the same way; diffusion.seed alone is the seed
    assert Settings.from_dict({"carry_decay": 0.9, "diffusion": {"seed": 5}}) == \
        Settings(seed=5, propagate=PropagateSettings(carry_decay=0.9))


def test_version_2_shared_refine_goes_to_every_backend():
    """Version 2 shared the plate refine; version 3 gives each backend its own (the weight-free default 2)."""
    v2 = {"version": 2, "refine_radius": 6, "diffusion": {"refine_radius": 8}}
    settings = Settings.from_dict(v2)
    assert (settings.propagate.refine_radius, settings.diffusion.refine_radius) == (6, 8)  # a backend's own wins
    assert Settings().propagate.refine_radius == 2 and Settings().diffusion.refine_radius == 4


def test_retired_settings_are_dropped_on_reading():
    """Files written before issue 12 name the weight-free low-pass; they still load, without it."""
    v2 = {"version": 2, "propagate": {"lowpass_tau": 0.3, "lowpass_strength": 1.0, "carry_decay": 0.9}}
    assert Settings.from_dict(v2) == Settings(propagate=PropagateSettings(carry_decay=0.9))
    with pytest.raises(BadInputError, match="unknown"):
        Settings.from_dict({"version": 2, "propagate": {"lowpass_taus": 0.3}})


@pytest.mark.parametrize("data, needle", [
    ({**V1, "diffusion": {"seed": 4}}, "two seeds .seed 3, diffusion.seed 4.; version 3 has one"),
    ({"version": 2, "carry_decay": 0.9}, "unknown setting 'carry_decay'"),  # version 2 is read as written
    ({"version": 2, "diffusion": {"seed": 1}}, "unknown diffusion setting 'seed'"),
    ({"version": 4}, "settings version 4 is not one this SMITE reads"),
    ({"version": 3, "refine_radius": 2}, "unknown setting 'refine_radius'"),  # version 3 is read as written
    ({"propagate": 1}, "setting 'propagate' must be an object"),
    ({"propagate": {"carry_decay": 2}}, "propagate setting 'carry_decay' must be in"),
])
def test_settings_shape_errors_are_one_line(data, needle):
    with pytest.raises(BadInputError, match=needle):
        Settings.from_dict(data)


def test_setting_paths():
    assert setting_path("seed") == (None, "seed")
    with pytest.raises(BadInputError, match="belongs to several backends; name one: propagate.refine_eps or"):
        setting_path("refine_eps")
    assert setting_path("carry_decay") == ("propagate", "carry_decay")
    assert setting_path("window") == ("diffusion", "window")
    assert setting_path("propagate.carry_decay") == ("propagate", "carry_decay")
    assert setting_path("nonsense") == (None, "nonsense")  # named as unknown by validation
    with pytest.raises(BadInputError, match="before the dot must be one of propagate, diffusion"):
        setting_path("sam.window")


def test_a_job_is_its_shared_settings_and_its_own_backends():
    base = Settings()
    tuned_diffusion = base.replace(diffusion=DiffusionSettings(window=8, overlap=4))
    tuned_propagate = base.replace(propagate=PropagateSettings(carry_decay=0.5))
    assert tuned_diffusion.result_dict("propagate") == base.result_dict("propagate")
    assert tuned_propagate.result_dict("diffusion") == base.result_dict("diffusion")
    assert tuned_propagate.result_dict("propagate") != base.result_dict("propagate")
    assert tuned_diffusion.result_dict("diffusion") != base.result_dict("diffusion")
    assert base.replace(context=0).result_dict("propagate") == base.result_dict("propagate")  # context: not a result
    assert set(base.result_dict("propagate")) == {"version", "backend", "temporal", "vote_window", "seed", "propagate"}


@pytest.mark.parametrize("items, expected", [
    (["carry_decay=0.9"], {"propagate": {"carry_decay": 0.9}}),
    (["propagate.carry_decay=0.9", "seed=2"], {"propagate": {"carry_decay": 0.9}, "seed": 2}),
    (["window=8", "diffusion.overlap=4", "tracker=flow"], {"diffusion": {"window": 8, "overlap": 4, "tracker": "flow"}}),
    (["refine_radius=3"], {"propagate": {"refine_radius": 3}, "diffusion": {"refine_radius": 3}}),  # shared until v3
])
def test_cli_set_places_old_flat_and_new_dotted_names(items, expected):
    from smite.cli.segment import parse_set_items

    assert parse_set_items(items) == {"version": SETTINGS_VERSION, **expected}


@pytest.mark.parametrize("key", ["propagate.lowpass_tau", "lowpass_strength"])
def test_cli_set_refuses_a_retired_setting(key):
    """A file naming one still loads without it (`test_retired_settings_are_dropped_on_reading`); asked for
    by hand it is refused in one line, not dropped without a word."""
    from smite.cli.segment import parse_set_items

    with pytest.raises(BadInputError, match=f"^setting '{key}' is retired and does nothing; remove it from --set$"):
        parse_set_items([f"{key}=0.3"])


def test_cli_settings_file_of_version_1_with_set_on_top(tmp_path):
    import argparse

    from smite.cli.segment import add_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(V1))
    args = parser.parse_args(["--shot", "s.json", "--out", "o.####.exr", "--settings", str(path),
                              "--set", "propagate.snap_radius=2", "--set", "window=6", "--backend", "propagate"])
    settings = settings_from_args(args)
    assert settings == Settings.from_dict(V1).replace(
        backend="propagate", propagate=Settings.from_dict(V1).propagate.replace(snap_radius=2),
        diffusion=DiffusionSettings(window=6, overlap=4, part_model="/p.smite", refine_radius=6))


@pytest.mark.parametrize("data, needle", [
    ({"resolution": 500}, r"diffusion setting 'resolution' must be a multiple of 32 in \[32, 2048\], got 500"),
    ({"aug_flip": 1.5}, r"diffusion setting 'aug_flip' must be in \[0, 1\], got 1.5"),
    ({"reg_tau": [0.5, 1.5]}, r"diffusion setting 'reg_tau' must be one or more numbers each in \(0, 1\]"),
    ({"reg_tau": []}, "diffusion setting 'reg_tau' must be one or more numbers"),
    ({"inversion": "magic"}, "diffusion setting 'inversion' must be one of noise, ddim"),
    ({"aug_blur_max": 4}, "diffusion setting 'aug_blur_max' must be an odd number"),
    ({"learn_lr": float("nan")}, "diffusion setting 'learn_lr' must be a finite number"),
    ({"window": 4, "overlap": 4}, "diffusion settings: need overlap < window"),
    ({"ref_t": 3, "ref_t_jitter": 5}, "ref_t_jitter must keep the reference timesteps in 1..999"),
])
def test_diffusion_settings_declare_their_ranges(data, needle):
    with pytest.raises(BadInputError, match=needle):
        DiffusionSettings.from_dict(data)
    with pytest.raises(BadInputError):  # however the object is made
        DiffusionSettings().replace(**data)


def test_smite_learn_reads_the_one_seed_and_the_diffusion_settings():
    import argparse

    pytest.importorskip("torch")
    from smite.cli.learn import add_arguments, learn_settings_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--shot", "s.json", "--out", "p.smite", "--steps", "7",
                              "--set", "seed=3", "--set", "kv_phase=false"])
    settings = learn_settings_from_args(args)
    assert settings.seed == 3 and settings.diffusion == DiffusionSettings(learn_steps=7, kv_phase=False)
