"""smite.hostapi: the frame lists, job settings, shot cache, manifest and farm files both host frontends share.

The frontends' own tests (test_nuke_pure, test_blender_addon) check only what each adds on top
(Blender's default keyframe and PlanError, Nuke's stripped knob values) and that they use these.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from smite.hostapi import atomic, farmcmd, jobsettings, progress, shotcache
from smite.hostapi import frames as framelist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- frame lists ----------------------------------------------------------------------------------

def test_parse_frames_reads_lists_ranges_steps_and_spaces():
    assert framelist.parse_frames("1010, 1001 1003-1005,1001") == [1001, 1003, 1004, 1005, 1010]
    assert framelist.parse_frames(" 30 1, 12,1 ") == [1, 12, 30]
    assert framelist.parse_frames("10-30x10, 3") == [3, 10, 20, 30]
    assert framelist.parse_frames("-2--1") == [-2, -1]
    assert framelist.parse_frames("  ") == []


@pytest.mark.parametrize("text, word", [("10-5", "'10-5' ends before"), ("a", "cannot read 'a'"),
                                        ("1-2-3", "cannot read '1-2-3'"), ("1;2", "cannot read '1;2'"),
                                        ("1-5x0", "step of '1-5x0'")])
def test_parse_frames_names_the_bad_item(text, word):
    with pytest.raises(ValueError, match=word) as info:
        framelist.parse_frames(text)
    assert str(info.value).startswith("keyframes: ") and "\n" not in str(info.value)


def test_format_frames_collapses_runs_and_round_trips():
    assert framelist.format_frames([5, 1, 2, 3, 7, 3]) == "1-3,5,7"
    assert framelist.format_frames(range(0, 60)) == "0-59"
    assert framelist.format_frames([]) == ""
    frames = [-3, -2, 1, 2, 3, 7, 9, 10]
    assert framelist.parse_frames(framelist.format_frames(frames)) == frames


def test_format_frames_is_read_by_the_core():
    from smite.io.sequence import parse_frame_range

    frames = [1, 2, 3, 7, 9, 10]
    assert list(parse_frame_range(framelist.format_frames(frames))) == frames


# --- job settings ---------------------------------------------------------------------------------

def test_job_settings_nest_the_diffusion_fields_and_load_as_core_settings():
    from smite.config import Settings

    seg = jobsettings.job_settings("segment", "diffusion", "/c/parts.smite", "/sd/v2-1")
    assert seg == {"backend": "diffusion", "diffusion": {"part_model": "/c/parts.smite", "model": "/sd/v2-1"}}
    cfg = Settings.from_dict(seg)
    assert cfg.diffusion.part_model == "/c/parts.smite" and cfg.diffusion.model == "/sd/v2-1"
    # the weight-free backend gets no diffusion fields (they would change its mattes' job metadata)
    assert jobsettings.job_settings("segment", "propagate", "/c/parts.smite", "/sd") == {"backend": "propagate"}
    assert jobsettings.job_settings("segment", "diffusion", "", "") == {"backend": "diffusion"}
    # learn writes the part model (it is 'out', not a setting) and trains on the SD model
    assert jobsettings.job_settings("learn", "propagate", "/c/parts.smite", "/sd") == {
        "backend": "propagate", "diffusion": {"model": "/sd"}}
    assert jobsettings.job_settings("learn", "diffusion", "/c/parts.smite") == {"backend": "diffusion"}


def test_segment_part_model_prefers_the_choice_then_an_existing_default(tmp_path):
    default = str(tmp_path / "parts.smite")
    assert jobsettings.segment_part_model("/k/p.smite", default) == "/k/p.smite"
    assert jobsettings.segment_part_model("", default) == ""  # Learn has not written it: the backend learns itself
    (tmp_path / "parts.smite").write_bytes(b"x")
    assert jobsettings.segment_part_model("", default) == default


# --- farm files -----------------------------------------------------------------------------------

def test_farm_commands_spell_the_core_cli():
    cmds = farmcmd.farm_commands("/v/python", "/c/shot.json", "/c/m.####.exr", "/c", 8, "diffusion", "/c/p.smite",
                                 "/sd")
    assert [fmt for fmt, _ in cmds] == ["openjd", "deadline"]
    common = ["--shot", "/c/shot.json", "--out", "/c/m.####.exr", "--chunk", "8", "--backend", "diffusion",
              "--parts", "/c/p.smite", "--model", "/sd"]
    assert cmds[0][1] == ["/v/python", "-m", "smite", "farm", "openjd"] + common + ["--output", "/c/farm/job.yaml"]
    assert cmds[1][1] == ["/v/python", "-m", "smite", "farm", "deadline"] + common + ["--output", "/c/farm/deadline"]
    plain = farmcmd.farm_commands("/v/python", "/c/shot.json", "/c/m.####.exr", "/c", 16, "propagate", "/c/p.smite")
    assert "--parts" not in plain[0][1] and plain[0][1][plain[0][1].index("--backend") + 1] == "propagate"
    with pytest.raises(farmcmd.FarmError, match="at least 1"):
        farmcmd.farm_commands("/v/python", "/c/shot.json", "/c/m.####.exr", "/c", 0)


class _Proc:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr, self.stdout = returncode, stderr, ""


def test_write_farm_files_reports_written_paths_and_one_line_errors(tmp_path):
    cmds = farmcmd.farm_commands("/v/python", "/c/shot.json", "/c/m.####.exr", str(tmp_path), 4)
    calls = []

    def ok(argv, **kw):
        calls.append((argv, kw["env"]["PYTHONPATH"]))
        out = argv[argv.index("--output") + 1]
        if argv[4] == "deadline":
            return _Proc(0, f"wrote {out}/job_info.job\nwrote {out}/plugin_info.job\n")
        return _Proc(0, f"wrote {out}\n")

    written = farmcmd.write_farm_files(cmds, core="/core", runner=ok, environ={"PYTHONPATH": "/x"})
    paths = farmcmd.farm_paths(str(tmp_path))
    assert written == {"openjd": [paths["openjd"]], "deadline": [os.path.join(paths["deadline"], "job_info.job"),
                                                                  os.path.join(paths["deadline"], "plugin_info.job")]}
    assert [c[1] for c in calls] == ["/core"] * 2  # the host's PYTHONPATH stays behind (core_environment)
    assert os.path.isdir(paths["deadline"])  # folders exist before the command writes into them
    assert farmcmd.summary(written) == (f"farm files in {tmp_path / 'farm'}: job.yaml, deadline/job_info.job, "
                                        "deadline/plugin_info.job")
    assert farmcmd.summary({}) == "farm: nothing written"

    def fails(argv, **kw):
        return _Proc(2, "some warning\nsmite: error: frame 99 is outside the shot's frames 0-5\n\n")

    with pytest.raises(farmcmd.FarmError) as info:
        farmcmd.write_farm_files(cmds, runner=fails)
    assert str(info.value) == "smite farm openjd failed: smite: error: frame 99 is outside the shot's frames 0-5"

    with pytest.raises(farmcmd.FarmError, match="smite farm openjd failed: exit status 3"):
        farmcmd.write_farm_files(cmds, runner=lambda argv, **kw: _Proc(3, ""))

    def missing(argv, **kw):
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(farmcmd.FarmError, match="cannot run /v/python: No such file"):
        farmcmd.write_farm_files(cmds, runner=missing)


def test_farm_files_written_by_the_core_cli(tmp_path):
    """The real `smite farm` in this venv, against the bundled chair sample."""
    openjd = pytest.importorskip("openjd.model")
    import yaml

    chair = os.path.join(ROOT, "tests", "data", "chair", "shot.json")
    out = str(tmp_path / "mattes" / "mattes.%04d.exr")
    cmds = farmcmd.farm_commands(sys.executable, chair, out, str(tmp_path), 25, "propagate", "/unused.smite")
    assert all("--parts" not in argv for _, argv in cmds)  # the weight-free backend takes no part model
    written = farmcmd.write_farm_files(cmds, core=os.path.join(ROOT, "core"))
    paths = farmcmd.farm_paths(str(tmp_path))
    assert written["openjd"] == [paths["openjd"]]
    assert sorted(os.path.basename(p) for p in written["deadline"]) == ["job_info.job", "plugin_info.job"]
    with open(paths["openjd"], encoding="utf-8") as handle:
        template = openjd.decode_job_template(template=yaml.safe_load(handle), supported_extensions=["TASK_CHUNKING"])
    params = {p.name: p.default for p in template.parameterDefinitions}
    assert params["ChunkSize"] == 25 and params["Frames"] == "0-59" and params["OutputPattern"] == out
    assert [step.name for step in template.steps] == ["Segment"]
    assert farmcmd.summary(written).startswith(f"farm files in {tmp_path / 'farm'}: job.yaml, deadline/")


# --- shot cache and manifest ------------------------------------------------------------------------

def test_shot_cache_layout(tmp_path):
    cache = shotcache.ShotCache(str(tmp_path))
    assert cache.manifest == str(tmp_path / "shot.json") and cache.part_model == str(tmp_path / "parts.smite")
    assert cache.reference("seat", 7) == str(tmp_path / "references" / "seat.0007.exr")
    assert cache.reference("seat", 12345) == str(tmp_path / "references" / "seat.12345.exr")
    assert cache.mattes() == str(tmp_path / "mattes" / "mattes.####.exr")
    assert cache.mattes("%05d") == str(tmp_path / "mattes" / "mattes.%05d.exr")
    assert shotcache.default_folder(str(tmp_path / "shots" / "a.blend"), ["Scene 1", "Roto/x"], "/t") == str(
        tmp_path / "shots" / "smite_cache" / "Scene_1_Roto_x")
    assert shotcache.default_folder("", ["..", "M"], "/t") == os.path.join("/t", "smite_cache", "shot_M")


def test_old_layout_folders_are_named_not_read(tmp_path):
    cache = shotcache.ShotCache(str(tmp_path))
    assert shotcache.legacy_folders(cache.root) == []
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "a.0010.exr").write_bytes(b"old")
    assert shotcache.legacy_folders(cache.root) == [str(tmp_path / "refs")]
    shot = shotcache.shot_manifest("/p.%04d.exr", range(10, 21), "Raw", ["a"], {10: {"a": cache.reference("a", 10)}},
                                   base_dir=cache.root)
    assert shot["references"] == [{"frame": 10, "masks": {"a": "references/a.0010.exr"}}]


def test_shot_manifest_is_read_by_the_core(tmp_path):
    from smite.config import ShotSpec

    cache = shotcache.ShotCache(str(tmp_path))
    masks = {12: {"b": cache.reference("b", 12)}, 10: {"a": cache.reference("a", 10), "b": "/elsewhere/b.exr"},
             15: {}}
    data = shotcache.shot_manifest("/plates/p.%04d.exr", range(10, 21), "Raw", ["a", "b"], masks,
                                   base_dir=cache.root, name="sh010")
    assert data["frames"] == "10-20" and data["parts"] == ["a", "b"] and data["name"] == "sh010"
    assert [r["frame"] for r in data["references"]] == [10, 12]  # a keyframe with no masks is left out
    assert data["references"][0]["masks"] == {"a": "references/a.0010.exr", "b": "/elsewhere/b.exr"}
    assert shotcache.write_manifest(cache, data) == cache.manifest
    with open(cache.manifest, encoding="utf-8") as handle:
        spec = ShotSpec.from_dict(json.load(handle), str(tmp_path))
    assert spec.references[1].masks["b"] == cache.reference("b", 12)
    assert spec.frames == tuple(range(10, 21)) and spec.colorspace == "Raw"
    assert os.listdir(str(tmp_path)) == ["shot.json"]  # no temporary file left behind


@pytest.mark.parametrize("parts, masks, word", [
    (["a"], {30: {"a": "/x"}}, "keyframe 30 is outside the plate's frames 10-20"),
    (["a"], {10: {"z": "/x"}}, "keyframe 10: unknown part 'z'"),
    (["a"], {10: {}}, "no keyframes"), (["a"], {}, "no keyframes"),
    (["a", "b"], {10: {"a": "/x"}}, "part 'b' is empty on every keyframe"),
    ([], {10: {"a": "/x"}}, "no parts"), (["a b"], {10: {"a b": "/x"}}, "'a b' is not a valid part name"),
    (["a", "a"], {10: {"a": "/x"}}, "two parts are called 'a'"),
])
def test_shot_manifest_refuses_in_one_line(parts, masks, word):
    with pytest.raises(ValueError, match=word) as info:
        shotcache.shot_manifest("/p.%04d.exr", range(10, 21), "Raw", parts, masks, "/c")
    assert "\n" not in str(info.value)


def test_atomic_writes_replace_whole_files(tmp_path):
    target = tmp_path / "sub" / "a.json"
    assert atomic.write_json(str(target), {"x": [1, 2]}) == str(target)
    assert json.loads(target.read_text()) == {"x": [1, 2]}
    atomic.write_text(str(target), "second\n")
    assert target.read_text() == "second\n" and os.listdir(str(tmp_path / "sub")) == ["a.json"]

    class Boom:
        pass

    with pytest.raises(TypeError):  # a failed write leaves the old file and no temporary
        atomic.write_json(str(target), {"x": Boom()})
    assert target.read_text() == "second\n" and os.listdir(str(tmp_path / "sub")) == ["a.json"]
    partial = atomic.partial_path(str(tmp_path / "r.0001.exr"))
    assert os.path.dirname(partial) == str(tmp_path) and partial.endswith("r.0001.exr")
    with open(partial, "wb") as handle:  # as a renderer writes it
        handle.write(b"exr")
    assert atomic.commit(partial, str(tmp_path / "r.0001.exr")) == str(tmp_path / "r.0001.exr")
    assert not os.path.exists(partial) and (tmp_path / "r.0001.exr").read_bytes() == b"exr"


# --- progress, backends ---------------------------------------------------------------------------

def test_progress_is_one_line_and_a_fraction():
    shown = progress.describe({"stage": "segment", "done": 3, "total": 12, "message": "frame 1003"}, "running")
    assert shown == (0.25, "segment 3/12 (25%): frame 1003") and shown.percent == 25
    assert progress.describe({"stage": "segment", "done": 2, "total": 3}).text == "segment 2/3 (66%)"  # floor
    assert progress.describe({"stage": "load", "done": 0, "total": 0}) == (0.0, "load")
    assert progress.describe({"done": 5, "total": 4}, "learn") == (1.0, "learn 5/4 (100%)")
    assert progress.describe(None, "queued") == (0.0, "queued")
    assert progress.describe({"done": "x", "total": 3}, "segment") == (0.0, "segment")  # unreadable counts


def test_backends_come_from_the_server_else_the_fallback_the_core_accepts():
    from smite.backends import BACKEND_NAMES as CORE_BACKENDS

    assert jobsettings.backends() == list(jobsettings.BACKENDS) == list(CORE_BACKENDS)
    assert jobsettings.backends({"capabilities": {"backends": ["propagate", "other"]}}) == ["propagate", "other"]
    assert jobsettings.backends({"capabilities": {"backends": []}}) == list(jobsettings.BACKENDS)
    assert jobsettings.backends({"capabilities": {"backends": "propagate"}}) == list(jobsettings.BACKENDS)
    assert jobsettings.BACKENDS[0] == "propagate"  # the default: weight-free


def test_the_farm_chunk_default_is_the_cores():
    from smite.farm.job import DEFAULT_CHUNK

    assert farmcmd.DEFAULT_CHUNK == DEFAULT_CHUNK


# --- the core's python -----------------------------------------------------------------------------

def test_find_python_order_venv_folders_and_the_guess_beside_the_core(tmp_path):
    from smite.hostapi import locate

    core = tmp_path / "repo" / "core"
    core.mkdir(parents=True)
    venv_python = tmp_path / "repo" / ".venv" / "bin" / "python"
    assert locate.venv_python(str(tmp_path / "repo" / ".venv")) == str(venv_python)
    assert locate.find_python("", {}, str(core), environ={}) == ""  # the guess counts only once it exists
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    assert locate.find_python("", {}, str(core), environ={}) == str(venv_python)
    record = {"python": "/rec/python"}
    env = {"SMITE_PYTHON": "/env/python"}
    assert locate.find_python("", record, str(core), environ={}) == "/rec/python"  # given: wins even if missing
    assert locate.find_python("", record, str(core), environ=env) == "/env/python"
    assert locate.find_python(" /knob/python ", record, str(core), environ=env) == "/knob/python"
    assert locate.find_python(str(tmp_path / "repo" / ".venv"), {}, "", environ={}) == str(venv_python)
