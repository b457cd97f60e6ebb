"""Blender add-on: pure planning and core lookup here; the real-Blender run once per installed Blender.

The last test drives tests/blender/run_blender_test.py in a subprocess with the Python of each
``.venv-blender-<X.Y>/`` (made by ``install/setup.sh --blender``: 4.2 LTS, 4.5 LTS, 5.0; run one with
``pytest tests/test_blender_addon.py -k 4.5``): the add-on is installed from the zip that
install/blender_install.py builds, ``smite.segment`` runs against a real core server, and the
compositor's render of the "SMITE Matte" output is compared here with the matte EXRs.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "install"))
sys.path.insert(0, ROOT)

import blender_install  # noqa: E402
from blender_smite import corelink, hostlink, shotplan  # noqa: E402  (pure modules: no bpy needed)

BLENDER_VERSIONS = ("4.2", "4.5", "5.0")  # the releases install/setup.sh --blender sets up


def blender_python(version: str) -> str:
    return os.path.join(ROOT, f".venv-blender-{version}", "bin", "python")


@pytest.fixture
def fresh_hostapi():
    """No host API loaded, as in a fresh Blender; afterwards the modules loaded before are back, so
    modules that bound them at import (the Nuke node's) still hold the loaded ones."""
    def ours():
        return {n: m for n, m in sys.modules.items() if n.split(".")[0] == hostlink.PACKAGE}

    before = ours()
    for name in before:
        del sys.modules[name]
    yield
    for name in ours():
        del sys.modules[name]
    sys.modules.update(before)


# --- pure planning ------------------------------------------------------------------------------

def test_parse_keyframes_defaults_and_speaks_plan_errors():
    """The grammar is smite.hostapi.frames' (tests/test_hostapi.py); the add-on adds a default and PlanError."""
    assert shotplan.parse_keyframes("10-30x10, 3", 5) == [3, 10, 20, 30]
    assert shotplan.parse_keyframes("", 7) == [7]
    for bad in ("1;2", "5-1", "1-5x0"):
        with pytest.raises(shotplan.PlanError, match="keyframes"):
            shotplan.parse_keyframes(bad, 1)


def test_part_names_are_core_safe_unique_and_stable():
    names = shotplan.part_names(["Left Arm.001", "Left Arm 001", "3d", "", "chair"])
    assert names == ["Left_Arm_001", "Left_Arm_001_2", "p_3d", "part", "chair"]
    assert all(corelink.hostapi("names").PART_NAME.match(n) for n in names)
    assert shotplan.matte_socket("chair") == "smite_chair"


def test_sequence_pattern_and_discovery(tmp_path):
    for n in (9, 10, 11, 1000):
        (tmp_path / f"plate_v2.{n:04d}.exr").write_bytes(b"")
    (tmp_path / "plate_v2.0012.exr.tmp").write_bytes(b"")
    (tmp_path / "other.0013.exr").write_bytes(b"")
    pattern, number = shotplan.sequence_pattern(str(tmp_path / "plate_v2.0010.exr"))
    assert pattern == str(tmp_path / "plate_v2.%04d.exr") and number == 10
    assert shotplan.discover_frames(pattern) == [9, 10, 11, 1000]
    with pytest.raises(shotplan.PlanError, match="no frame number"):
        shotplan.sequence_pattern("/p/plate.exr")


def test_frame_map_and_matte_image_user():
    fmap = shotplan.FrameMap(start=1001, offset=-1)  # files 0.. shown from scene frame 1001
    assert fmap.file_frame(1001) == 0 and fmap.file_frame(1010) == 9
    assert all(fmap.scene_frame(fmap.file_frame(s)) == s for s in range(990, 1020))
    start, offset, duration = shotplan.matte_image_user(fmap, 4, 9)
    # Blender: file = clamp(scene - start + 1, 1, duration) + offset
    for scene in range(fmap.scene_frame(4), fmap.scene_frame(9) + 1):
        seq = min(max(scene - start + 1, 1), duration)
        assert seq + offset == fmap.file_frame(scene)
    assert shotplan.matte_image_user(fmap, 4, 4)[2] == 1


def test_build_manifest_checks_in_artist_terms():
    refs = {0: {"chair": "/c/r/chair.00000.exr"}, 10: {}}
    shot = shotplan.build_manifest("/p/%05d.jpg", range(0, 20), ["chair"], refs, "sRGB - Texture", name="s")
    assert shot["frames"] == "0-19" and shot["references"] == [{"frame": 0, "masks": refs[0]}]
    with pytest.raises(shotplan.PlanError, match="outside the plate"):
        shotplan.build_manifest("/p/%05d.jpg", [1, 2], ["chair"], refs, "sRGB - Texture")
    with pytest.raises(shotplan.PlanError, match="part 'arm' is empty"):
        shotplan.build_manifest("/p/%05d.jpg", range(20), ["chair", "arm"], refs, "sRGB - Texture")
    with pytest.raises(shotplan.PlanError, match="no parts: each mask layer is one part"):
        shotplan.build_manifest("/p/%05d.jpg", range(20), [], refs, "sRGB - Texture")
    # masks in the cache are written relative to it (shot.json sits there; the server gets base_dir)
    shot = shotplan.build_manifest("/p/%05d.jpg", range(20), ["chair"], refs, "sRGB - Texture", base_dir="/c")
    assert shot["references"] == [{"frame": 0, "masks": {"chair": "r/chair.00000.exr"}}]


def test_manifest_is_accepted_by_the_core(tmp_path):
    from smite.config import ShotSpec

    shot = shotplan.build_manifest(str(tmp_path / "%05d.jpg"), [3, 4, 5, 9], ["a", "b_2"],
                                   {3: {"a": "a.exr"}, 9: {"b_2": "b.exr"}}, "Linear Rec.709 (sRGB)")
    spec = ShotSpec.from_dict(shot, str(tmp_path))
    assert spec.frames == (3, 4, 5, 9) and spec.parts == ("a", "b_2") and spec.reference_frames == (3, 9)


def test_misc_helpers(tmp_path):
    assert shotplan.format_frames([5, 1, 2, 3, 7]) == "1-3,5,7"
    assert shotplan.core_colorspace("Linear Rec.709") == "Linear Rec.709 (sRGB)"
    assert shotplan.core_colorspace("My Log") == "My Log"
    blend = str(tmp_path / "shots" / "a.blend")
    want = tmp_path / "shots" / "smite_cache" / "Scene_1_Roto_x"
    assert shotplan.cache_folder(blend, "Scene 1", "Roto/x") == str(want)
    assert shotplan.cache_folder("", "S", "M", temp=str(tmp_path)) == str(tmp_path / "smite_cache" / "S_M")
    assert shotplan.matte_token([3, 99999]) == "%05d" and shotplan.matte_token([0, 5]) == "%04d"


def test_job_settings_and_part_model(tmp_path):
    seg = shotplan.job_settings("segment", "diffusion", "/c/parts.smite", "/sd")
    assert seg == {"backend": "diffusion", "diffusion": {"part_model": "/c/parts.smite", "model": "/sd"}}
    cache = str(tmp_path)
    assert shotplan.part_model_path("", cache) == os.path.join(cache, "parts.smite")
    assert shotplan.part_model_path("/p/x.smite", cache) == "/p/x.smite"
    assert shotplan.segment_part_model("", cache) == ""  # not learned yet: the backend learns by itself
    (tmp_path / "parts.smite").write_bytes(b"x")
    assert shotplan.segment_part_model("", cache) == os.path.join(cache, "parts.smite")


def test_the_host_api_is_loaded_privately_and_follows_the_core_loaded_last(tmp_path, fresh_hostapi):
    """Farm rules live in smite.hostapi.farmcmd (tests/test_hostapi.py); the add-on uses the privately loaded copy."""
    core = os.path.join(ROOT, "core")
    kit = corelink.load(core, "farmcmd")
    assert kit.__name__ == hostlink.PACKAGE + ".farmcmd"
    assert kit.__file__ == os.path.join(core, "smite", "hostapi", "farmcmd.py")
    assert corelink.hostapi("farmcmd") is kit
    with pytest.raises(kit.FarmError, match="at least 1"):
        kit.farm_commands("/v/python", "/c/shot.json", "/c/m.%04d.exr", "/c", 0)
    with pytest.raises(ImportError, match="no SMITE core"):
        corelink.load("/nonexistent", "farmcmd")
    with pytest.raises(ImportError, match="has no smite/hostapi/nothing.py"):
        corelink.load(core, "nothing")
    other = tmp_path / "other"
    _fake_core(other)
    moved = corelink.load(str(other / "core"), "names")  # another core folder: the loaded one is replaced
    assert moved.__file__ == str(other / "core" / "smite" / "hostapi" / "names.py")
    assert corelink.hostapi("frames").__file__ == str(other / "core" / "smite" / "hostapi" / "frames.py")
    assert corelink.load(core, "names").__file__ == os.path.join(core, "smite", "hostapi", "names.py")


# --- finding the core ---------------------------------------------------------------------------

def _fake_core(root):
    """A core folder holding a copy of this checkout's host API, and a venv with a (fake) python."""
    shutil.copytree(os.path.join(ROOT, "core", "smite", "hostapi"), str(root / "core" / "smite" / "hostapi"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").write_text("")


def test_locate_order(tmp_path, fresh_hostapi):
    addon = tmp_path / "repo" / "blender_smite"
    addon.mkdir(parents=True)
    _fake_core(tmp_path / "repo")
    _fake_core(tmp_path / "other")
    repo, other = tmp_path / "repo", tmp_path / "other"
    # nothing set: the repo the add-on folder sits in
    got = corelink.locate(env={}, addon_dir=str(addon))
    assert got == (str(repo / "core"), str(repo / ".venv" / "bin" / "python"))
    # the environment beats the repo; a repo root is accepted as the core folder
    env = {"SMITE_CORE": str(other)}
    assert corelink.locate(env=env, addon_dir=str(addon))[0] == str(other / "core")
    # core_location.json (written by blender_install) beats the repo guess
    (addon / corelink.LOCATION_FILE).write_text(json.dumps({"core": str(other / "core"),
                                                            "python": str(other / ".venv" / "bin" / "python")}))
    assert corelink.locate(env={}, addon_dir=str(addon)) == (str(other / "core"), str(other / ".venv/bin/python"))
    # preferences beat everything; a venv folder is accepted for the python
    got = corelink.locate(str(repo / "core"), str(repo / ".venv"), env=env, addon_dir=str(addon))
    assert got == (str(repo / "core"), str(repo / ".venv" / "bin" / "python"))
    assert corelink.locate(env={}, addon_dir=str(tmp_path / "nowhere" / "x")) == ("", "")


def test_addon_imports_only_stdlib_bpy_and_itself():
    allowed = set(sys.stdlib_module_names) | {"bpy"}
    folder = os.path.join(ROOT, "blender_smite")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                tops = [node.module.split(".")[0]]
            else:
                continue
            bad = [t for t in tops if t not in allowed]
            assert not bad, f"blender_smite/{name} imports {bad}"


# --- install script -----------------------------------------------------------------------------

def test_blender_install_zip_install_uninstall(tmp_path, capsys):
    zip_path = str(tmp_path / "dist" / "blender_smite.zip")
    into = tmp_path / "extensions" / "user_default"
    into.mkdir(parents=True)
    assert blender_install.main(["--zip", zip_path, "--into", str(into), "--python", sys.executable]) == 0
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        location = json.loads(zf.read(corelink.LOCATION_FILE))
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert location == {"core": os.path.join(ROOT, "core"), "python": sys.executable}
    installed = into / "blender_smite"
    assert (installed / "blender_manifest.toml").is_file() and (installed / corelink.LOCATION_FILE).is_file()
    assert corelink.locate(env={}, addon_dir=str(installed)) == (os.path.join(ROOT, "core"), sys.executable)
    out = capsys.readouterr().out
    assert f"wrote {zip_path}" in out and str(installed) in out
    assert blender_install.main(["--into", str(into), "--uninstall"]) == 0
    assert not installed.exists() and into.is_dir()
    assert "removed" in capsys.readouterr().out
    blender_install.main(["--into", str(into), "--uninstall"])
    assert "nothing to remove" in capsys.readouterr().out


# --- real Blender -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_segment_in_real_blender(tmp_path, version):
    python = blender_python(version)
    if not os.path.isfile(python):
        pytest.skip(f"no .venv-blender-{version}: run ./install/setup.sh --blender {version} for this real-Blender test")
    from smite.io.image import read_mask
    from smite.io.matte import read_matte

    zip_path = blender_install.build_zip(str(tmp_path / "blender_smite.zip"), os.path.join(ROOT, "core"),
                                         sys.executable)
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "SMITE_CORE", "SMITE_PYTHON")}
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "blender_user")  # never the developer's own Blender config
    proc = subprocess.run([python, os.path.join(ROOT, "tests", "blender", "run_blender_test.py"), str(out),
                           zip_path], env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    info = json.loads((out / "result.json").read_text())
    assert info["addon"] == "bl_ext.user_default.blender_smite" and info["blender"].startswith(version + ".")
    # the backend menu: the core's fallback list before a server runs, the server's capabilities after
    from smite.hostapi import farmcmd, jobsettings

    assert info["backend_menus"] == {"before": list(jobsettings.BACKENDS), "server": list(jobsettings.BACKENDS)}
    assert info["farm_chunk_default"] == farmcmd.DEFAULT_CHUNK

    # the reference Blender rasterised covers the polygon drawn around the chair (y not flipped)
    ref = read_mask(info["reference"]) > 0.5
    ys, xs = np.nonzero(ref)
    x0, y0, x1, y1 = info["bbox"]
    assert abs(xs.min() - x0) <= 2 and abs(xs.max() + 1 - x1) <= 2
    assert abs(ys.min() - y0) <= 2 and abs(ys.max() + 1 - y1) <= 2

    mattes = {}
    for f in range(5):
        parts, probs, _ = read_matte(info["matte_pattern"] % f)
        assert parts == ["chair"]
        mattes[f] = probs[0]
        m = probs[0] > 0.5
        assert (m & ref).sum() / (m | ref).sum() > 0.8  # the matte follows the keyframe shape
    for frame, path in info["renders"].items():
        shown = read_mask(path)
        want = info["plate_file_of_frame"][frame]
        assert np.abs(shown - mattes[want]).max() < 1e-3, f"scene frame {frame} does not show matte {want}"
        diffs = {f: float(np.abs(shown - m).max()) for f, m in mattes.items()}
        # frame mapping, not luck: no other frame's matte is closer. Plate files 3 and 4 of the chair sample are
        # the same image (same bytes), so their mattes may be equal: a tie with the wanted one is no mix-up
        assert diffs[want] == min(diffs.values()) and max(diffs.values()) > 0.05, diffs

    # with the diffusion backend, the part model and SD model go nested under "diffusion"
    cache = os.path.dirname(os.path.dirname(info["matte_pattern"]))
    part_model = str(out / "chair.smite")
    assert info["sent"]["segment"] == {"out": info["matte_pattern"], "settings": {
        "backend": "diffusion", "diffusion": {"part_model": part_model, "model": "/models/sd21"}}}
    assert info["sent"]["learn"] == {"out": part_model, "settings": {
        "backend": "diffusion", "diffusion": {"model": "/models/sd21"}}}

    # Send to farm: the OpenJD template validates, Learn first (no part model yet), chunks of 2
    openjd = pytest.importorskip("openjd.model")
    import yaml

    farm = os.path.join(cache, "farm")
    assert info["farm_status"].startswith(f"farm files in {farm}: job.yaml, deadline/"), info["farm_status"]
    with open(os.path.join(farm, "job.yaml"), encoding="utf-8") as handle:
        template = openjd.decode_job_template(template=yaml.safe_load(handle), supported_extensions=["TASK_CHUNKING"])
    params = {p.name: p.default for p in template.parameterDefinitions}
    assert params["ShotFile"] == os.path.join(cache, "shot.json") and params["ChunkSize"] == 2
    assert params["OutputPattern"] == info["matte_pattern"] and params["PartModel"] == part_model
    assert [step.name for step in template.steps] == ["Learn", "Segment"]
    with open(os.path.join(farm, "deadline", "job_info.job"), encoding="utf-8") as handle:
        assert "ChunkSize=2" in handle.read().splitlines()
