"""nuke_smite's pure modules (no nuke): keyframes, manifest, hostconfig, jobs; and 3.9 syntax."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from nuke_smite import hostconfig, keyframes, manifest  # noqa: E402

PY39 = next(iter(sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))), "python3.9")


# --- keyframes ----------------------------------------------------------------------------

def test_keyframes_and_farm_are_the_cores_shared_rules():
    """Parsing, knob text and farm files live in smite.hostapi (tests/test_hostapi.py); the node uses them,
    loaded by the one host loader (blender_smite.hostlink) from this checkout's core."""
    from blender_smite import hostlink

    frames, jobsettings = hostconfig.hostapi("frames"), hostconfig.hostapi("jobsettings")
    assert frames.__name__ == hostlink.PACKAGE + ".frames"
    assert frames.__file__ == os.path.join(REPO, "core", "smite", "hostapi", "frames.py")
    assert keyframes.parse_keyframes is frames.parse_frames and keyframes.format_keyframes is frames.format_frames
    assert manifest.job_settings is jobsettings.job_settings
    assert keyframes.parse_keyframes(keyframes.format_keyframes([1, 2, 3, 7])) == [1, 2, 3, 7]


def test_merge_key_times_rounds_and_dedups():
    assert keyframes.merge_key_times([10.0, 3.4, 9.6, 3.0]) == [3, 10]


def test_check_in_range_names_the_outside_frame():
    assert keyframes.check_in_range([1, 5], 1, 5) == [1, 5]
    with pytest.raises(ValueError, match="keyframe 6 is outside"):
        keyframes.check_in_range([1, 6], 1, 5)
    with pytest.raises(ValueError, match="no keyframes"):
        keyframes.check_in_range([], 1, 5)


# --- manifest -----------------------------------------------------------------------------

def test_part_names_follow_the_core_rule():
    assert manifest.check_part_names(["seat", "leg_2"]) == ["seat", "leg_2"]
    with pytest.raises(ValueError, match="'left arm'"):
        manifest.check_part_names(["left arm"])
    with pytest.raises(ValueError, match="two Roto layers"):
        manifest.check_part_names(["a", "a"])
    with pytest.raises(ValueError, match="no parts: each Roto layer is one part"):
        manifest.check_part_names([])


def test_plate_pattern_accepts_nuke_tokens_and_refuses_views_and_single_files():
    assert manifest.plate_pattern(" /p/plate.%04d.exr ") == "/p/plate.%04d.exr"
    assert manifest.plate_pattern("/p/plate.####.exr") == "/p/plate.####.exr"
    with pytest.raises(ValueError, match="view token"):
        manifest.plate_pattern("/p/plate_%V.%04d.exr")
    with pytest.raises(ValueError, match="single file"):
        manifest.plate_pattern("/p/shot_0001/plate.exr")
    with pytest.raises(ValueError, match="no file"):
        manifest.plate_pattern("")


def test_plate_colorspace_maps_nuke_names():
    assert manifest.plate_colorspace("default (sRGB)") == "sRGB - Texture"
    assert manifest.plate_colorspace("linear") == "Linear Rec.709 (sRGB)"
    assert manifest.plate_colorspace("ACES - ACEScg") == "ACES - ACEScg"  # OCIO names pass through
    assert manifest.plate_colorspace("sRGB", raw=True) == "Raw"
    assert manifest.plate_colorspace("") == manifest.DEFAULT_COLORSPACE


def test_mapped_colorspaces_exist_in_the_core_config():
    ocio = pytest.importorskip("PyOpenColorIO")
    from smite.io.color import DEFAULT_CONFIG

    cfg = ocio.Config.CreateFromFile(DEFAULT_CONFIG)
    for name in manifest.NUKE_DEFAULT_COLORSPACES.values():
        assert cfg.getColorSpace(name) is not None, name


def test_layer_and_channel_names():
    assert manifest.layer_name("seat") == "smite_seat"
    assert manifest.channel_name("seat") == "smite_seat.alpha"


def test_default_cache_dir_is_beside_the_script_or_in_temp(tmp_path):
    script = os.path.join(str(tmp_path), "shots", "sh010_comp_v003.nk")
    assert manifest.default_cache_dir(script, "SMITE Matte1") == os.path.join(
        str(tmp_path), "shots", "smite_cache", "sh010_comp_v003_SMITE_Matte1")
    assert manifest.default_cache_dir("", "SMITE_Matte1", temp_dir="/t") == os.path.join("/t", "smite_cache",
                                                                                          "SMITE_Matte1")


# --- hostconfig ---------------------------------------------------------------------------

def test_config_resolution_order(tmp_path):
    cfg_path = tmp_path / "smite_nuke.json"
    cfg_path.write_text(json.dumps({"python": "/cfg/python", "core": os.path.join(REPO, "core"), "x": 1}))
    env = {hostconfig.CONFIG_ENV: str(cfg_path)}
    assert hostconfig.load_config(environ=env) == {"python": "/cfg/python", "core": os.path.join(REPO, "core")}
    assert hostconfig.resolve_python("", env) == "/cfg/python"
    assert hostconfig.resolve_python("", {**env, "SMITE_PYTHON": "/env/python"}) == "/env/python"
    assert hostconfig.resolve_python(" /knob/python ", {**env, "SMITE_PYTHON": "/env/python"}) == "/knob/python"
    assert hostconfig.resolve_core("", env) == os.path.join(REPO, "core")
    assert hostconfig.resolve_core("/no/such/core", {}, {}, repo_dir=str(tmp_path)) == ""


def test_broken_config_reads_as_empty(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    assert hostconfig.load_config(str(bad)) == {}
    assert hostconfig.load_config(str(tmp_path / "missing.json")) == {}


def test_python_falls_back_to_the_venv_beside_the_core_only_when_it_exists(tmp_path):
    (tmp_path / "core" / "smite" / "hostapi").mkdir(parents=True)
    (tmp_path / "core" / "smite" / "hostapi" / "__init__.py").write_text("")
    assert hostconfig.resolve_python("", {}, {}, repo_dir=str(tmp_path)) == ""
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    assert hostconfig.resolve_python("", {}, {}, repo_dir=str(tmp_path)) == str(tmp_path / ".venv" / "bin" / "python")
    assert hostconfig.resolve_python(str(tmp_path / ".venv"), {}, {}) == str(tmp_path / ".venv" / "bin" / "python")


# --- jobs ---------------------------------------------------------------------------------

class FakeClient:
    """Stands in for SmiteClient: a job that reports progress and ends after ``steps`` waits."""

    def __init__(self, steps=3, fail=None):
        self.steps, self.fail = steps, fail
        self.cancelled = []
        self.waits = 0

    def submit(self, method, params, on_progress=None):
        if self.fail == "submit":
            protocol = hostconfig.hostapi("protocol")
            raise protocol.RpcError(protocol.BAD_INPUT, "reference for frame 3 not found: /x.exr")
        self.on_progress = on_progress
        return "job-1"

    def wait(self, job, timeout=None):
        protocol = hostconfig.hostapi("protocol")
        self.waits += 1
        if self.cancelled:
            raise protocol.RpcError(protocol.CANCELLED, "job job-1 cancelled")
        if self.waits <= self.steps:
            if self.on_progress:
                self.on_progress({"job": job, "stage": "segment", "done": self.waits, "total": self.steps,
                                  "message": ""})
            raise TimeoutError
        return {"written": [1, 2, 3], "skipped": []}

    def cancel(self, job, timeout=30.0):
        self.cancelled.append(job)
        return {"job": job, "state": "cancelling"}


def test_job_runner_reports_progress_and_result():
    from nuke_smite.jobs import JobRunner

    seen, ends = [], []
    runner = JobRunner(FakeClient(), "segment", {}, on_progress=seen.append, on_finish=ends.append, poll_s=0.0)
    outcome = runner.start().join(10)
    assert outcome.ok and outcome.result["written"] == [1, 2, 3]
    assert outcome.message == "segment done: 3 frame(s) written, 0 already done"
    assert [p["done"] for p in seen] == [1, 2, 3] and ends == [outcome]


def test_job_runner_cancels_when_the_host_asks():
    from nuke_smite.jobs import JobRunner

    client = FakeClient(steps=1000)
    flag = threading.Event()
    flag.set()  # the artist pressed cancel in the progress panel
    runner = JobRunner(lambda: client, "segment", {}, should_cancel=flag.is_set, poll_s=0.0)
    runner.start()
    outcome = runner.join(10)
    assert outcome.state == "cancelled" and client.cancelled == ["job-1"]


def test_job_runner_turns_errors_into_one_failed_outcome():
    from nuke_smite.jobs import JobRunner

    ends = []
    outcome = JobRunner(FakeClient(fail="submit"), "segment", {}, on_finish=ends.append).run()
    assert outcome.state == "failed" and "frame 3" in outcome.message and ends == [outcome]

    def broken():
        raise FileNotFoundError("/no/python")

    outcome = JobRunner(broken, "learn", {}).run()
    assert outcome.state == "failed" and "/no/python" in outcome.message


# --- Python 3.9 --------------------------------------------------------------------------

def test_package_compiles_and_pure_modules_import_on_python_39():
    if not shutil.which(PY39):
        pytest.skip("python3.9 not available")
    # only the repo on sys.path: the pure modules load the core's host API themselves (hostconfig.hostapi)
    code = ("import os, sys; sys.path[:0] = [sys.argv[1]]\n"
            "import compileall, nuke_smite.keyframes, nuke_smite.manifest, nuke_smite.hostconfig\n"
            "import nuke_smite.jobs\n"
            "assert 'smite' not in sys.modules and sys.argv[2] not in sys.path\n"
            "api = sys.modules['_smite_hostapi']\n"
            "assert os.path.dirname(os.path.dirname(api.__path__[0])) == sys.argv[2], api.__path__\n"
            "ok = compileall.compile_dir(sys.argv[1] + '/nuke_smite', quiet=1, legacy=False, force=True)\n"
            "ok = ok and compileall.compile_file(sys.argv[1] + '/install/nuke_install.py', quiet=1)\n"
            "ok = ok and compileall.compile_file(sys.argv[1] + '/blender_smite/hostlink.py', quiet=1)\n"
            "print('ok' if ok else 'fail')")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", hostconfig.CORE_ENV)}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", hostconfig.CONFIG_ENV: os.path.join(REPO, "no-such-config.json")})
    proc = subprocess.run([PY39, "-c", code, REPO, os.path.join(REPO, "core")], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# --- part model for Segment ---------------------------------------------------------------

def test_segment_part_model_strips_the_knob_then_prefers_an_existing_default(tmp_path):
    default = str(tmp_path / "parts.smite")
    assert manifest.segment_part_model(" /k/p.smite ", default) == "/k/p.smite"
    assert manifest.segment_part_model("  ", default) == ""  # Learn has not written it: backend learns itself
    (tmp_path / "parts.smite").write_bytes(b"x")
    assert manifest.segment_part_model(" ", default) == default


def test_core_subprocesses_leave_the_hosts_python_variables_behind(tmp_path):
    """Defect 10: ``smite farm`` inherited Nuke's PYTHONHOME/PYTHONPATH; the server and the farm
    commands now take their environment from one function."""
    from smite.hostapi import client, locate

    farm = hostconfig.hostapi("farmcmd")  # what the node's Send to farm calls

    nuke_env = {"PYTHONHOME": "/nuke/python", "PYTHONPATH": "/nuke/plugins", "HOME": "/home/artist"}
    assert locate.core_environment("/core", environ=nuke_env) == {"HOME": "/home/artist", "PYTHONPATH": "/core"}
    assert client.core_environment is locate.core_environment
    envs = []

    def runner(argv, **kw):
        envs.append(kw["env"])
        return subprocess.CompletedProcess(argv, 0, "", "")

    commands = farm.farm_commands("/v/python", "/c/shot.json", "/c/m.####.exr", str(tmp_path), 4)
    farm.write_farm_files(commands, core="/core", runner=runner, environ=nuke_env)
    assert envs and all(env == {"HOME": "/home/artist", "PYTHONPATH": "/core"} for env in envs)

