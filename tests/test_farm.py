"""Farm jobs: OpenJD template validated and run for real with `openjd run`, OpenCue spec, Deadline files."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from smite.cli.main import main
from smite.config import Settings, load_shot
from smite.engine import segment_shot
from smite.errors import BadInputError
from smite.farm.job import FarmJob
from smite.io.matte import read_matte
from smite.io.sequence import frame_path

CHAIR = os.path.join(os.path.dirname(__file__), "data", "chair", "shot.json")
FAST = ["--set", "work_max_side=160", "--set", "flow_preset=fast"]
FAST_SETTINGS = Settings.from_dict({"work_max_side": 160, "flow_preset": "fast"})  # the flags' flat names


def _job(tmp_path, **kwargs):
    kwargs.setdefault("chunk", 8)
    return FarmJob.for_shot(CHAIR, load_shot(CHAIR), str(tmp_path / "out" / "m.####.exr"), list(range(24)), **kwargs)


def _diffusion(tmp_path, parts_exist=False):
    parts = tmp_path / "chair.smite"
    if parts_exist:
        parts.write_bytes(b"x")
    return _job(tmp_path, backend="diffusion", parts=str(parts), model="/models/sd21")


# -- the job itself ------------------------------------------------------------------------------
def test_chunks_cover_the_range_once(tmp_path):
    job = FarmJob.for_shot(CHAIR, load_shot(CHAIR), "o/m.####.exr", list(range(3, 23)), chunk=8)
    assert job.chunks() == [(3, 10), (11, 18), (19, 22)]
    assert os.path.isabs(job.shot) and os.path.isabs(job.out)
    with pytest.raises(BadInputError, match="contiguous"):
        FarmJob.for_shot(CHAIR, load_shot(CHAIR), "o/m.####.exr", [1, 2, 5])
    with pytest.raises(BadInputError, match="outside"):
        FarmJob.for_shot(CHAIR, load_shot(CHAIR), "o/m.####.exr", [58, 59, 60])
    with pytest.raises(BadInputError, match="chunk"):
        _job(tmp_path, chunk=0)


def test_learn_only_when_a_diffusion_part_model_is_missing(tmp_path):
    job = _diffusion(tmp_path)
    assert job.needs_learn
    job = FarmJob.for_shot(CHAIR, load_shot(CHAIR), "o/m.####.exr", backend="diffusion", parts=job.parts,
                           options=("--temporal", "off", "--set", "seed=2"))
    assert job.learn_args()[-2:] == ["--set", "seed=2"] and "--temporal" not in job.learn_args()
    assert job.segment_args("1-8")[-4:] == ["--temporal", "off", "--set", "seed=2"]
    assert not _diffusion(tmp_path, parts_exist=True).needs_learn
    assert not _job(tmp_path).needs_learn


# -- OpenJD --------------------------------------------------------------------------------------
def _decoded(template, **values):
    pytest.importorskip("openjd.model")
    from openjd.model import create_job, decode_job_template

    decoded = decode_job_template(template=template, supported_extensions=["TASK_CHUNKING"])
    job = create_job(job_template=decoded, job_parameter_values={
        name: _param(decoded, name, value) for name, value in values.items()})
    return decoded, job


def _param(decoded, name, value):
    from openjd.model import ParameterValue, ParameterValueType

    kind = next(p.type for p in decoded.parameterDefinitions if p.name == name)
    return ParameterValue(type=ParameterValueType(kind.value), value=str(value))


def test_openjd_segment_step_is_chunked_and_quiet(tmp_path):
    from smite.farm.openjd import openjd_template

    job = _job(tmp_path, options=("--set", "seed=3"))
    template = openjd_template(job)
    decoded, created = _decoded(template, ChunkSize=5)
    assert [s.name for s in created.steps] == ["Segment"]
    param = decoded.steps[0].parameterSpace.taskParameterDefinitions[0]
    assert param.type.value == "CHUNK[INT]" and param.chunks.rangeConstraint.value == "CONTIGUOUS"
    assert created.steps[0].parameterSpace.taskParameterDefinitions["Frame"].chunks.defaultTaskCount == 5
    run = template["steps"][0]["script"]["actions"]["onRun"]
    assert run["command"] == "{{Param.SmitePython}}"
    assert run["args"][:3] == ["-m", "smite", "segment"]
    assert {"--quiet", "{{Task.Param.Frame}}", "{{Param.ShotFile}}", "{{Param.OutputPattern}}"} <= set(run["args"])
    assert run["args"][-2:] == ["--set", "seed=3"]
    defaults = {p["name"]: p["default"] for p in template["parameterDefinitions"]}
    assert defaults["SmitePython"] == sys.executable and os.path.isabs(defaults["SmitePython"])
    assert defaults["Frames"] == "0-23" and defaults["ChunkSize"] == 8 and defaults["Context"] == 8


def test_openjd_learn_step_precedes_segment_for_a_new_part_model(tmp_path):
    from smite.farm.openjd import openjd_template

    template = openjd_template(_diffusion(tmp_path))
    _, created = _decoded(template)
    assert [s.name for s in created.steps] == ["Learn", "Segment"]
    assert [d.dependsOn for d in created.steps[1].dependencies] == ["Learn"]
    learn = template["steps"][0]["script"]["actions"]["onRun"]["args"]
    assert learn[:3] == ["-m", "smite", "learn"] and learn[learn.index("--out") + 1] == "{{Param.PartModel}}"
    segment = template["steps"][1]["script"]["actions"]["onRun"]["args"]
    assert segment[segment.index("--parts") + 1] == "{{Param.PartModel}}" and "--quiet" in segment
    assert [s["name"] for s in openjd_template(_diffusion(tmp_path, parts_exist=True))["steps"]] == ["Segment"]


def test_openjd_run_in_three_chunks_equals_one_run_and_a_retry_redoes_only_damaged_frames(tmp_path):
    pytest.importorskip("openjd.model")
    openjd = os.path.join(os.path.dirname(sys.executable), "openjd")
    if not os.path.exists(openjd):
        pytest.skip("openjd-cli is not installed (smite[farm])")
    chunked = str(tmp_path / "farm" / "m.####.exr")
    template = str(tmp_path / "job.yaml")
    assert main(["farm", "openjd", "--shot", CHAIR, "--out", chunked, "--frames", "0-23", "--chunk", "8",
                 "--output", template, *FAST]) == 0
    run = subprocess.run([openjd, "run", template], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Chunks run: 3" in run.stdout
    for chunk in ("0-7", "8-15", "16-23"):
        assert f"Frame(CHUNK[INT]) = {chunk}" in run.stdout
    assert run.stdout.count("PROGRESS 8/8") == 3

    single = str(tmp_path / "single" / "m.####.exr")
    segment_shot(load_shot(CHAIR), single, FAST_SETTINGS, frames=range(24))
    for f in range(24):
        a, b = read_matte(frame_path(single, f))[1], read_matte(frame_path(chunked, f))[1]
        assert np.abs(a - b).max() <= 1e-3, f"frame {f}"

    # A retried task: one frame lost, one truncated; the chunk redoes those two and keeps the rest.
    os.remove(frame_path(chunked, 10))
    with open(frame_path(chunked, 12), "r+b") as handle:
        handle.truncate(100)
    before = {f: os.stat(frame_path(chunked, f)).st_mtime_ns for f in range(8, 16) if f not in (10, 12)}
    retry = subprocess.run([openjd, "run", template, "--step", "Segment", "--task-param", "Frame=8-15"],
                           capture_output=True, text=True, timeout=60)
    assert retry.returncode == 0, retry.stdout[-2000:]
    assert "PROGRESS 6/8" in retry.stdout and "PROGRESS 8/8" in retry.stdout
    assert {f: os.stat(frame_path(chunked, f)).st_mtime_ns for f in before} == before
    for f in (10, 12):
        assert np.abs(read_matte(frame_path(single, f))[1] - read_matte(frame_path(chunked, f))[1]).max() <= 1e-3


# -- OpenCue -------------------------------------------------------------------------------------
def test_opencue_layers_ranges_commands_and_dependency(tmp_path):
    pytest.importorskip("outline")
    from smite.farm.opencue import opencue_outline, opencue_spec

    job = _diffusion(tmp_path)
    ol = opencue_outline(job, show="demo", shot="sh010")
    assert [layer.get_name() for layer in ol.get_layers()] == ["learn", "segment"]
    spec = ET.fromstring(opencue_spec(job, show="demo", shot="sh010"))
    assert spec.findtext("show") == "demo" and spec.findtext("shot") == "sh010"
    layers = {layer.get("name"): layer for layer in spec.iter("layer")}
    learn, segment = layers["learn"], layers["segment"]
    assert segment.findtext("range") == "0-23" and segment.findtext("chunk") == "8"
    assert learn.findtext("range") == "0" and learn.findtext("chunk") == "1"
    assert segment.findtext("gpus") == "1" and segment.findtext("gpu_memory") == "16g"
    cmd = segment.findtext("cmd")
    assert cmd.startswith(f"{sys.executable} -m smite segment ") and "--frames '#FRAMESPEC#'" in cmd
    assert "--quiet" in cmd and f"--parts {job.parts}" in cmd
    assert learn.findtext("cmd").startswith(f"{sys.executable} -m smite learn ")
    depend = spec.find("depends/depend")
    assert depend.get("type") == "LAYER_ON_LAYER"
    assert (depend.findtext("deplayer"), depend.findtext("onlayer")) == ("segment", "learn")

    plain = ET.fromstring(opencue_spec(_job(tmp_path)))
    assert [layer.get("name") for layer in plain.iter("layer")] == ["segment"] and plain.find("depends/depend") is None


# -- Deadline ------------------------------------------------------------------------------------
def _keys(text):
    return dict(line.split("=", 1) for line in text.splitlines())


def test_deadline_job_and_plugin_info(tmp_path):
    from smite.farm.deadline import deadline_files

    job = FarmJob.for_shot(CHAIR, load_shot(CHAIR), str(tmp_path / "my shots" / "m.####.exr"), list(range(24)),
                           chunk=8, backend="diffusion", parts=str(tmp_path / "p.smite"))
    files = deadline_files(job, learn_job_id="5f1e0c")
    assert sorted(files) == ["job_info.job", "learn_job_info.job", "learn_plugin_info.job", "plugin_info.job"]
    info, plugin = _keys(files["job_info.job"]), _keys(files["plugin_info.job"])
    assert info["Plugin"] == "CommandLine" and info["Frames"] == "0-23" and info["ChunkSize"] == "8"
    assert info["JobDependencies"] == "5f1e0c"
    assert plugin["Executable"] == sys.executable
    args = plugin["Arguments"]
    assert args.startswith("-m smite segment ") and "--frames <STARTFRAME>-<ENDFRAME>" in args and "--quiet" in args
    assert f'--out "{job.out}"' in args  # the blank in the folder name is quoted
    learn = _keys(files["learn_job_info.job"])
    assert learn["Frames"] == "0" and learn["ChunkSize"] == "1"
    assert _keys(files["learn_plugin_info.job"])["Arguments"].startswith("-m smite learn ")
    assert sorted(deadline_files(_job(tmp_path))) == ["job_info.job", "plugin_info.job"]
    assert "JobDependencies" not in _keys(deadline_files(_job(tmp_path))["job_info.job"])


# -- command line --------------------------------------------------------------------------------
def test_cli_writes_each_format_and_rejects_bad_input(tmp_path, capsys):
    out = str(tmp_path / "o" / "m.####.exr")
    assert main(["farm", "deadline", "--shot", CHAIR, "--out", out, "--output", str(tmp_path / "dl")]) == 0
    assert sorted(os.listdir(tmp_path / "dl")) == ["job_info.job", "plugin_info.job"]
    pytest.importorskip("outline")
    assert main(["farm", "opencue", "--shot", CHAIR, "--out", out, "--output", str(tmp_path / "cue.xml")]) == 0
    assert ET.parse(tmp_path / "cue.xml").getroot().tag == "spec"
    capsys.readouterr()
    assert main(["farm", "openjd", "--shot", CHAIR, "--out", out, "--chunk", "10", "--context", "4"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("specificationVersion: jobtemplate-2023-09")
    assert main(["farm", "openjd", "--shot", CHAIR, "--out", out, "--frames", "0-9x2"]) == 2
    assert main(["farm", "openjd", "--shot", CHAIR, "--out", str(tmp_path / "m.exr")]) == 2
    assert main(["farm", "openjd", "--shot", CHAIR, "--out", out, "--set", "no_such=1"]) == 2
    assert "unknown setting" in capsys.readouterr().err
