"""nuke_smite's thin Nuke layer against tests/fake_nuke.py, and one end-to-end Segment.

The fake raises on unknown nuke attributes, node classes and knob names, and on graph edits
off the main thread, so these tests catch API typos and threading mistakes. The end-to-end
test renders "roto" from the bundled chair masks, runs a real `smite serve` (weight-free
backend) on six frames, and checks what the node puts in the graph.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
import types

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_nuke  # noqa: E402
from fake_nuke import FakeNukeError, RotoLayer, RotoShape, make_roto  # noqa: E402

CHAIR = os.path.join(REPO, "tests", "data", "chair")


@pytest.fixture
def fake():
    f = fake_nuke.install()
    yield f
    mod = sys.modules.get("nuke_smite.node")
    if mod is not None:
        mod.shutdown_servers()
    fake_nuke.uninstall()


@pytest.fixture
def node(fake):
    return importlib.import_module("nuke_smite.node")


def scene(fake, first=0, last=5):
    """A Read on the chair plate and a Roto with layers 'left' (keys 0, 5) and 'right' (key 5)."""
    read = fake.create("Read", name="Read1")
    read["file"].setValue(os.path.join(CHAIR, "frames", "%05d.jpg").replace(os.sep, "/"))
    read["first"].setValue(first)
    read["last"].setValue(last)
    layers = [RotoLayer("left", [RotoShape("Bezier1", [0.0, 5.0])]), RotoLayer("right", [RotoShape("Bezier2", [5.0])])]
    roto = make_roto(fake, layers)
    fake.selected = [read, roto]
    return read, roto, layers


# --- the fake itself ----------------------------------------------------------------------

def test_fake_nuke_rejects_unknown_api_and_off_thread_edits(fake):
    with pytest.raises(FakeNukeError, match="nuke.exectue"):
        fake.exectue
    with pytest.raises(FakeNukeError, match="Shufle"):
        fake.nodes.Shufle()
    read = fake.create("Read")
    with pytest.raises(FakeNukeError, match="'flie'"):
        read["flie"]
    import threading
    errors = []
    t = threading.Thread(target=lambda: errors.append(_catch(lambda: read["file"].setValue("x"))))
    t.start()
    t.join()
    assert "off the main thread" in errors[0]


def _catch(fn):
    try:
        fn()
    except RuntimeError as exc:
        return str(exc)
    return ""


# --- menu and node creation ---------------------------------------------------------------

def test_menu_registers_smite_matte(fake):
    runpy.run_path(os.path.join(REPO, "nuke_smite", "startup", "menu.py"))
    command = fake.menus["Nodes"].items["SMITE"].items["SMITE Matte"]
    assert "nuke_smite.node.create_node()" in command


def test_startup_init_puts_the_package_on_sys_path_and_loads_the_core(fake, monkeypatch, capsys):
    from blender_smite import hostlink

    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in (REPO, os.path.join(REPO, "core"))])
    monkeypatch.setenv("SMITE_NUKE_ROOT", REPO)
    monkeypatch.setenv("SMITE_CORE", os.path.join(REPO, "core"))
    runpy.run_path(os.path.join(REPO, "nuke_smite", "startup", "init.py"))
    assert sys.path[0] == REPO and os.path.join(REPO, "core") not in sys.path  # the core is loaded, not on the path
    assert sys.modules[hostlink.PACKAGE].__path__ == [os.path.join(REPO, "core", "smite", "hostapi")]
    assert capsys.readouterr().err == ""


def test_create_node_builds_the_group_and_wires_the_selection(fake, node):
    read, roto, _ = scene(fake)
    group = node.create_node()
    assert group.Class() == "Group" and group.name() == "SMITE_Matte1"
    assert group.input(0) is read and group.input(1) is roto
    assert [n.Class() for n in group.nodes()] == ["Input", "Input", "Read", "Output"]
    assert group["keyframes"].value() == "0,5"
    assert group["backend"].value() == "propagate" and group["status"].value() == "idle"
    assert "on_segment" in group["segment"].value() and "on_learn" in group["learn"].value()
    assert "on_send_to_farm" in group["send_to_farm"].value() and group["farm_chunk"].value() == 16
    assert group[node.MARKER_KNOB].visible is False
    assert node.create_node().name() == "SMITE_Matte2"


def test_toolbar_creates_the_group_like_create_node_and_opens_the_finished_panel(fake, node):
    """Defect 13: placed under the selection by nuke.createNode; its panel opens once the SMITE
    knobs exist; the nodes inside are plain nuke.nodes (no artist-facing creation callbacks)."""
    read, roto, _ = scene(fake)
    read["xpos"].setValue(100)
    group = node.create_node()
    created = [c for c in fake.calls if c[0] == "createNode"]
    assert created == [("createNode", "Group", "SMITE_Matte1", False)]
    assert group["xpos"].value() == roto["xpos"].value() and group["ypos"].value() > roto["ypos"].value()
    panels = [c for c in fake.calls if c[0] == "panel"]
    assert len(panels) == 1 and panels[0][1] == "SMITE_Matte1" and "segment" in panels[0][2]
    fake.selected = [roto]  # createNode wires input 0 to the selection; a Roto is no plate
    second = node.create_node()
    assert second.input(0) is None and second.input(1) is roto


def test_segment_without_a_plate_says_so_on_the_status_line(fake, node):
    fake.selected = []
    group = node.create_node()
    assert node.on_segment(group) is None
    assert group["status"].value() == "error: connect the plate Read to input 0 (plate)"


def test_bad_layer_name_is_reported(fake, node):
    read, roto, layers = scene(fake)
    layers[1].name = "right arm"
    group = node.create_node()
    assert node.on_segment(group) is None
    assert "'right arm' is not a valid part name" in group["status"].value()


# --- reference rendering ------------------------------------------------------------------

GROUP_NODES = ["Input", "Input", "Read", "Output"]


def _alpha_recorder(fake, seen):
    """A renderer that records, per Write call, the file and what the symbolic alpha holds."""
    def renderer(write, frame):
        image = fake.render(write, frame)
        seen.append((write["file"].value(), frame, sorted(image["channels"].get("rgba.alpha", ())), image["bbox"]))
    return renderer


def _knob_scripts(node):
    return {name: knob.toScript() for name, knob in node.knobs().items()}


def test_render_references_draw_each_part_alone_and_clean_up(fake, node, tmp_path):
    """Defect 2: each reference holds its part's shapes only, a sub-layer's shapes included."""
    from nuke_smite import render_refs
    from nuke_smite.manifest import shotcache

    read, roto, layers = scene(fake)
    layers[1].children.append(RotoLayer("sub", [RotoShape("Bezier3", [5.0])]))
    roto["curves"].changed()
    group = node.create_node()
    seen = []
    fake.renderer = _alpha_recorder(fake, seen)
    paths = shotcache.ShotCache(str(tmp_path))
    masks = render_refs.render_references(group, roto, [0, 5], paths)
    ref = lambda part, f: render_refs.atomic.partial_path(paths.reference(part, f)).replace(os.sep, "/")  # noqa: E731
    assert [s[:3] for s in seen] == [(ref("left", 0), 0, ["Bezier1"]), (ref("left", 5), 5, ["Bezier1"]),
                                     (ref("right", 0), 0, ["Bezier2", "Bezier3"]),
                                     (ref("right", 5), 5, ["Bezier2", "Bezier3"])]
    assert masks == {0: {"left": paths.reference("left", 0), "right": paths.reference("right", 0)},
                     5: {"left": paths.reference("left", 5), "right": paths.reference("right", 5)}}
    assert [n.Class() for n in group.nodes()] == GROUP_NODES  # temp nodes gone
    assert not fake.group_stack


def test_render_references_leave_the_artists_roto_byte_identical(fake, node, tmp_path):
    """Defect 2: no visibility keys (saved with the script, undo steps) on the artist's Roto."""
    from nuke_smite import render_refs
    from nuke_smite.manifest import shotcache

    read, roto, layers = scene(fake)
    before = _knob_scripts(roto)
    group = node.create_node()
    fake.renderer = _alpha_recorder(fake, [])
    render_refs.render_references(group, roto, [0, 5], shotcache.ShotCache(str(tmp_path)))
    assert _knob_scripts(roto) == before
    assert all(not layer.vis_calls for layer in layers)


def test_a_shape_outside_any_layer_is_refused_by_name(fake, node, tmp_path):
    """Defect 3: a shape under the Roto's root belongs to no part."""
    read, roto, layers = scene(fake)
    roto["curves"].rootLayer.append(RotoShape("Bezier9", [0.0]))
    group = node.create_node()
    group["smite_python"].setValue(sys.executable)
    group["cache_dir"].setValue(str(tmp_path))
    assert node.on_segment(group) is None
    assert group["status"].value() == ("error: Roto1: 'Bezier9' is not in a layer: put every shape in a "
                                       "top-level layer named after its part")


def test_references_ignore_the_roto_bg_and_read_its_output_channel(fake, node, tmp_path):
    """Defect 5: the Roto draws over its bg (a plate with alpha would whiten every reference) into
    its `output` channels (not always rgba.alpha)."""
    from nuke_smite import render_refs
    from nuke_smite.manifest import shotcache

    read, roto, layers = scene(fake)
    read.has_alpha = True
    roto.setInput(0, read)
    roto["output"].setValue("mask")
    group = node.create_node()
    seen = []
    fake.renderer = _alpha_recorder(fake, seen)
    render_refs.render_references(group, roto, [0], shotcache.ShotCache(str(tmp_path)))
    assert [s[2] for s in seen] == [["Bezier1"], ["Bezier2"]]


def test_references_are_cropped_to_the_plate_format(fake, node, tmp_path):
    """Defect 4: a shape crossing the frame edge must not grow the reference past the format."""
    from nuke_smite import render_refs
    from nuke_smite.manifest import shotcache

    read, roto, layers = scene(fake)
    read.format_size = (80, 60)
    layers[0].children[0].bbox = (-12, -5, 95, 30)
    roto["curves"].changed()
    group = node.create_node()
    seen = []
    fake.renderer = _alpha_recorder(fake, seen)
    render_refs.render_references(group, roto, [0], shotcache.ShotCache(str(tmp_path)))
    assert [s[3] for s in seen] == [(0, 0, 80, 60)] * 2  # the format, not (-12, -5, 95, 60)


def test_paint_strokes_key_at_their_lifetime(fake, node, tmp_path):
    """Defect 6: a stroke's points carry no keys; its lifetime places it in time."""
    from fake_nuke import LIFETIME_ALL, LIFETIME_RANGE, LIFETIME_SINGLE, RotoStroke
    from nuke_smite import render_refs
    from nuke_smite.manifest import shotcache

    read, roto, layers = scene(fake, 0, 9)
    layers[0].children.append(RotoStroke("Brush1", lifetime=(LIFETIME_SINGLE, 3, 3)))
    layers[1].children.append(RotoStroke("Brush2", lifetime=(LIFETIME_RANGE, 7, 8)))
    layers[1].children.append(RotoStroke("Brush3", lifetime=(LIFETIME_ALL, 0, 0)))
    roto["curves"].changed()
    assert render_refs.roto_keyframes(roto) == [0, 3, 5, 7]
    group = node.create_node()
    seen = []
    fake.renderer = _alpha_recorder(fake, seen)
    render_refs.render_references(group, roto, [3, 7], shotcache.ShotCache(str(tmp_path)))
    assert [s[2] for s in seen] == [["Bezier1", "Brush1"], ["Bezier1"], ["Bezier2", "Brush3"], ["Bezier2", "Brush2", "Brush3"]]
    layers[0].children.append(RotoStroke("Brush4", lifetime=(1, 0, 3)))  # "start to frame"
    with pytest.raises(ValueError, match="paint stroke 'Brush4': set its lifetime"):
        render_refs.roto_keyframes(roto)


def test_render_failure_still_deletes_the_temporary_nodes(fake, node, tmp_path):
    from nuke_smite import render_refs
    from nuke_smite.manifest import shotcache

    read, roto, layers = scene(fake)
    before = _knob_scripts(roto)
    group = node.create_node()

    def renderer(write, frame):
        raise RuntimeError("Write1: cannot open file")

    fake.renderer = renderer
    with pytest.raises(RuntimeError):
        render_refs.render_references(group, roto, [0], shotcache.ShotCache(str(tmp_path)))
    assert [n.Class() for n in group.nodes()] == GROUP_NODES
    assert _knob_scripts(roto) == before and not fake.group_stack


# --- plate frames, proxy, views, evaluated paths ------------------------------------------

def _prepared(fake, node, group, tmp_path):
    group["smite_python"].setValue(sys.executable)
    group["cache_dir"].setValue(str(tmp_path))
    plan = node.gather(group)
    return plan, json.loads(open(node.prepare_shot(group, plan)).read())


def test_start_at_read_maps_timeline_keys_to_plate_frames(fake, node, tmp_path):
    """Defect 7: Roto keys and nuke.execute count timeline frames, the shot counts plate file frames."""
    read, roto, layers = scene(fake, 0, 5)
    read["frame_mode"].setValue("start at")
    read["frame"].setValue("1001")
    layers[0].children[0] = RotoShape("Bezier1", [1001.0, 1006.0])
    layers[1].children[0] = RotoShape("Bezier2", [1006.0])
    group = node.create_node()
    assert group["keyframes"].value() == "1001,1006"
    plan, shot = _prepared(fake, node, group, tmp_path)
    assert plan["offset"] == 1001 and shot["frames"] == "0-5"
    assert [r["frame"] for r in shot["references"]] == [0, 5]
    assert shot["references"][1]["masks"]["right"] == "references/right.0005.exr"
    executed = [(c[2], os.path.basename(c[3])) for c in fake.calls if c[0] == "execute"]
    partial = ".smite-"  # each Write renders to a temporary name, renamed once whole (hostapi.atomic)
    assert executed == [(1001, partial + "left.0000.exr"), (1006, partial + "left.0005.exr"),
                        (1001, partial + "right.0000.exr"), (1006, partial + "right.0005.exr")]
    assert sorted(os.listdir(tmp_path / "references")) == ["left.0000.exr", "left.0005.exr", "right.0000.exr",
                                                           "right.0005.exr"]
    matte_read = node.apply_results(group, ["left", "right"], "/m/mattes.####.exr", 0, 5, plan["offset"])
    assert matte_read.firstFrame() == read.firstFrame() == 1001  # mattes sit on the plate's timeline frames


def test_offset_read_and_keyframes_outside_its_timeline_range(fake, node, tmp_path):
    read, roto, layers = scene(fake, 0, 5)
    read["frame_mode"].setValue("offset")
    read["frame"].setValue("10")
    group = node.create_node()
    group["keyframes"].setValue("10,15")
    plan, shot = _prepared(fake, node, group, tmp_path)
    assert [r["frame"] for r in shot["references"]] == [0, 5]
    group["keyframes"].setValue("5")
    with pytest.raises(ValueError, match="keyframe 5 is outside the plate's frames 10-15"):
        node.gather(group)
    read["frame_mode"].setValue("expression")
    read["frame"].setValue("frame*2")
    with pytest.raises(ValueError, match="Read1: frame expression 'frame\\*2' cannot be mapped"):
        node.gather(group)


@pytest.mark.parametrize("cls", ["TimeOffset", "Retime", "Transform", "Reformat"])
def test_a_node_between_the_read_and_input_0_is_refused_by_name(fake, node, cls):
    """Defect 7: a retime or transform between Read and input 0 would mislabel frames or pixels."""
    read, roto, layers = scene(fake)
    group = node.create_node()
    between = fake.create(cls, name=f"{cls}1")
    between.setInput(0, read)
    dot = fake.create("Dot", name="Dot1")
    dot.setInput(0, between)
    group.setInput(0, dot)
    assert node.on_segment(group) is None
    assert group["status"].value() == (f"error: {cls}1 ({cls}) sits between the plate Read and input 0: "
                                       "connect the plate Read directly (only Dots may sit in between)")
    group.setInput(0, fake.create("Dot", name="Dot2"))
    group.input(0).setInput(0, read)  # a Dot alone is fine
    group["smite_python"].setValue("/nonexistent/python")
    node.on_segment(group)
    assert group["status"].value().startswith("error: core python not found")


def test_proxy_mode_is_refused(fake, node, tmp_path):
    """Defect 8: nuke.filename and renders follow root.proxy; references must be full resolution."""
    read, roto, layers = scene(fake)
    read["proxy"].setValue("/proxy/plate.%04d.jpg")
    fake.root()["proxy"].setValue(True)
    assert fake.filename(read) == "/proxy/plate.%04d.jpg"  # what the old node would have sent
    group = node.create_node()
    assert node.on_segment(group) is None
    assert group["status"].value().startswith("error: proxy mode is on")


def test_file_knobs_are_evaluated(fake, node, tmp_path, monkeypatch):
    """Defect 12: `[getenv ...]` / `[value root.name]` paths are evaluated, not sent as typed."""
    monkeypatch.setenv("SMITE_TEST_PLATES", CHAIR)
    read, roto, layers = scene(fake)
    read["file"].setValue("[getenv SMITE_TEST_PLATES]/frames/%05d.jpg")
    group = node.create_node()
    group["smite_python"].setValue(sys.executable)
    monkeypatch.setenv("SMITE_TEST_CACHE", str(tmp_path))
    group["cache_dir"].setValue("$env(SMITE_TEST_CACHE)/shot")
    plan = node.gather(group)
    assert plan["plate"] == os.path.join(CHAIR, "frames", "%05d.jpg").replace(os.sep, "/")
    assert plan["paths"].root == str(tmp_path / "shot")


def test_a_stereo_script_renders_one_view(fake, node, tmp_path):
    """Defect 9: nuke.execute renders every view unless told one."""
    fake.views_list = ["left", "right"]
    read, roto, layers = scene(fake)
    group = node.create_node()
    _prepared(fake, node, group, tmp_path)
    views = {tuple(c[4]) for c in fake.calls if c[0] == "execute"}
    assert views == {("left",)}


# --- results ------------------------------------------------------------------------------

def test_apply_results_is_idempotent_and_reloads(fake, node):
    scene(fake)
    group = node.create_node()
    for _ in range(2):
        read = node.apply_results(group, ["left", "right"], "/cache/mattes/mattes.####.exr", 0, 5)
    assert read["file"].value() == "/cache/mattes/mattes.####.exr" and read["raw"].value() is True
    assert (read["first"].value(), read["last"].value()) == (0, 5) and read["on_error"].value() == "black"
    assert read["reload"].executed == 2
    copies = [n for n in group.nodes() if n.Class() == "Copy"]
    assert [c.name() for c in copies] == ["smite_copy_left", "smite_copy_right"]
    assert copies[0].input(0) is group.node("plate") and copies[1].input(0) is copies[0]
    assert all(c.input(1) is read for c in copies)
    assert copies[1]["from0"].value() == copies[1]["to0"].value() == "smite_right.alpha"
    output = next(n for n in group.nodes() if n.Class() == "Output")
    assert output.input(0) is copies[1]
    assert fake.declared_layers == {"smite_left": ["smite_left.alpha"], "smite_right": ["smite_right.alpha"]}


# --- what Segment and Learn send -----------------------------------------------------------

def _record_runs(monkeypatch, record):
    """Replace the job runner with a recorder (no server): `record(method, params, on_finish)` per job."""
    from nuke_smite import jobs

    class Recorder:
        def __init__(self, client, method, params, on_finish=None):
            record(method, params, on_finish)
            self.thread = None

    monkeypatch.setattr(jobs, "JobRunner", Recorder)


def _captured_jobs(node, monkeypatch):
    """The params each button sends (job runner replaced, nothing followed)."""
    sent = []
    _record_runs(monkeypatch, lambda method, params, on_finish: sent.append((method, params)))
    monkeypatch.setattr(node, "_follow", lambda name, method, runner: None)
    return sent


def test_segment_and_learn_send_backend_and_part_model_as_nested_settings(fake, node, tmp_path, monkeypatch):
    from smite.config import Settings

    scene(fake)
    sent = _captured_jobs(node, monkeypatch)
    group = node.create_node()
    group["smite_python"].setValue(sys.executable)
    group["cache_dir"].setValue(str(tmp_path))
    group["backend"].setValue("diffusion")
    group["model_file"].setValue(str(tmp_path / "chair.smite"))
    group["sd_model"].setValue("/models/sd21")
    assert node.on_segment(group) is not None and node.on_learn(group) is not None
    (seg_method, seg), (learn_method, learn) = sent
    shot = str(tmp_path / "shot.json")
    assert seg_method == "segment" and seg == {
        "shot": shot, "out": str(tmp_path / "mattes" / "mattes.####.exr"),
        "settings": {"backend": "diffusion",
                     "diffusion": {"part_model": str(tmp_path / "chair.smite"), "model": "/models/sd21"}}}
    assert Settings.from_dict(seg["settings"]).diffusion.part_model == str(tmp_path / "chair.smite")
    assert learn_method == "learn" and learn == {
        "shot": shot, "out": str(tmp_path / "chair.smite"),
        "settings": {"backend": "diffusion", "diffusion": {"model": "/models/sd21"}}}

    # empty knob: Learn writes the cache default; Segment uses it only once it exists
    group["model_file"].setValue("")
    group["sd_model"].setValue("")
    node.on_learn(group)
    node.on_segment(group)
    assert sent[2][1]["out"] == str(tmp_path / "parts.smite")
    assert sent[3][1]["settings"] == {"backend": "diffusion"}
    (tmp_path / "parts.smite").write_bytes(b"x")
    node.on_segment(group)
    default = str(tmp_path / "parts.smite")
    assert sent[4][1]["settings"] == {"backend": "diffusion", "diffusion": {"part_model": default}}
    group["backend"].setValue("propagate")
    node.on_segment(group)
    assert sent[5][1]["settings"] == {"backend": "propagate"}


def test_a_cache_of_the_old_layout_is_not_read_and_named_on_the_status_line(fake, node, tmp_path, monkeypatch):
    """Caches made before the shared layout kept references in refs/: the new shot never points there."""
    scene(fake)
    sent = _captured_jobs(node, monkeypatch)
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "left.0000.exr").write_bytes(b"old reference")
    old_shot = {"references": [{"frame": 0, "masks": {"left": "refs/left.0000.exr"}}]}
    (tmp_path / "shot.json").write_text(json.dumps(old_shot))
    group = node.create_node()
    group["smite_python"].setValue(sys.executable)
    group["cache_dir"].setValue(str(tmp_path))
    assert node.on_segment(group) is not None
    shot = json.loads((tmp_path / "shot.json").read_text())
    masks = [path for ref in shot["references"] for path in ref["masks"].values()]
    assert masks and all(path.startswith("references/") for path in masks), masks
    assert sent[0][1]["shot"] == str(tmp_path / "shot.json")
    assert group["status"].value() == f"segment: starting (not used, delete: {tmp_path / 'refs'})"


# --- send to farm -------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.isdir(os.path.join(CHAIR, "frames")), reason="bundled chair sample missing")
def test_send_to_farm_writes_a_valid_openjd_template_and_deadline_files(fake, node, tmp_path):
    openjd = pytest.importorskip("openjd.model")
    import yaml

    read, roto, layers = scene(fake, 0, 20)
    fake.renderer = chair_renderer(fake)
    group = node.create_node()
    group["smite_python"].setValue(sys.executable)
    cache = tmp_path / "cache"
    group["cache_dir"].setValue(str(cache))
    group["backend"].setValue("diffusion")  # no part model yet: the job learns it first
    group["farm_chunk"].setValue(8)
    thread = node.on_send_to_farm(group)
    assert thread is not None, group["status"].value()
    fake.pump(lambda: not thread.is_alive() and not fake.main_queue, timeout=120)

    status = group["status"].value()
    assert status.startswith(f"farm files in {cache / 'farm'}: job.yaml, deadline/"), status
    assert sorted(os.listdir(cache / "references")) == [f"{p}.{f:04d}.exr" for p in ("left", "right") for f in (0, 5)]
    shot = json.loads((cache / "shot.json").read_text())  # prepared exactly as Segment does
    assert shot["frames"] == "0-20" and shot["parts"] == ["left", "right"]

    text = (cache / "farm" / "job.yaml").read_text()
    template = openjd.decode_job_template(template=yaml.safe_load(text), supported_extensions=["TASK_CHUNKING"])
    params = {p.name: p.default for p in template.parameterDefinitions}
    assert params["ShotFile"] == str(cache / "shot.json") and params["ChunkSize"] == 8
    assert params["OutputPattern"] == str(cache / "mattes" / "mattes.####.exr") and params["Frames"] == "0-20"
    steps = {step.name: step for step in template.steps}
    assert set(steps) == {"Learn", "Segment"}
    assert params["PartModel"] == str(cache / "parts.smite")  # --parts: Learn writes it, Segment reads it
    seg_args = [str(a) for a in steps["Segment"].script.actions.onRun.args]
    assert seg_args[seg_args.index("--backend") + 1] == "diffusion" and "--parts" in seg_args

    job_info = (cache / "farm" / "deadline" / "job_info.job").read_text().splitlines()
    assert "ChunkSize=8" in job_info and "Frames=0-20" in job_info
    assert status.count("deadline/") == len(os.listdir(cache / "farm" / "deadline"))


@pytest.mark.skipif(not os.path.isfile("/bin/false"), reason="needs /bin/false")
def test_send_to_farm_shows_the_commands_error(fake, node, tmp_path):
    read, roto, layers = scene(fake, 0, 5)
    group = node.create_node()
    group["smite_python"].setValue("/bin/false")  # exists, fails without a word
    group["cache_dir"].setValue(str(tmp_path))
    thread = node.on_send_to_farm(group)
    fake.pump(lambda: not thread.is_alive() and not fake.main_queue, timeout=30)
    assert group["status"].value() == "farm failed: smite farm openjd failed: exit status 1"
    group["farm_chunk"].setValue(0)
    assert node.on_send_to_farm(group) is None
    assert group["status"].value() == "error: farm chunk must be at least 1, got 0"


# --- threads and progress windows --------------------------------------------------------

class _StubRunner:
    """Stands in for jobs.JobRunner in `_follow`: reports progress once, asks about cancel, ends."""

    def __init__(self):
        self.on_progress = self.should_cancel = None
        self.asked = []

    def run(self):
        self.on_progress({"stage": "segment", "done": 1, "total": 2})
        self.asked.append(self.should_cancel())


def test_progress_window_is_released_when_the_job_ends(fake, node):
    """Defect 1: a bound ``task.isCancelled`` kept on the runner kept the ProgressTask (and its window) alive."""
    import threading

    runner = _StubRunner()
    thread = threading.Thread(target=node._follow, args=("SMITE_Matte1", "segment", runner))
    thread.start()
    thread.join(10)
    assert runner.asked == [False]
    assert [r.title for r in fake.ProgressTask.records] == ["SMITE segment"]
    assert fake.ProgressTask.live() == []  # runner still referenced here: nothing on it holds the task


def test_reference_progress_window_is_released(fake, node, tmp_path):
    scene(fake)
    group = node.create_node()
    group["smite_python"].setValue(sys.executable)
    group["cache_dir"].setValue(str(tmp_path))
    plan = node.gather(group)
    node.prepare_shot(group, plan)
    assert [r.title for r in fake.ProgressTask.records] == ["SMITE: rendering roto references"]
    assert fake.ProgressTask.live() == []


def test_fake_execute_in_main_thread_refuses_the_main_thread(fake):
    with pytest.raises(RuntimeError, match="main thread"):
        fake.executeInMainThread(print, ("x",))


def test_job_end_reported_on_the_main_thread_runs_directly(fake, node, monkeypatch, tmp_path):
    """Defect 14: a job that ends on the main thread (a runner run synchronously) must not call
    executeInMainThread there (Nuke hangs); the status is set directly."""
    from nuke_smite import jobs

    finishes = []
    _record_runs(monkeypatch, lambda method, params, on_finish: finishes.append(on_finish))
    monkeypatch.setattr(node.threading, "Thread", lambda **kw: types.SimpleNamespace(start=lambda: None))
    scene(fake)
    group = node.create_node()
    group["smite_python"].setValue(sys.executable)
    group["cache_dir"].setValue(str(tmp_path))
    assert node.on_learn(group) is not None, group["status"].value()
    finishes[0](jobs.JobOutcome(jobs.FAILED, message="boom"))
    assert group["status"].value() == "failed: boom"


def test_job_results_reach_the_node_after_a_rename_and_from_inside_another_group(fake, node, monkeypatch, tmp_path):
    """Defect 11: nuke.toNode(fullName) is relative to the current group context and misses a
    renamed node; the node keeps its own handle."""
    from nuke_smite import jobs

    finishes = []
    _record_runs(monkeypatch, lambda method, params, on_finish: finishes.append(on_finish))
    monkeypatch.setattr(node, "_follow", lambda name, method, runner: None)
    scene(fake)
    group = node.create_node()
    group["smite_python"].setValue(sys.executable)
    group["cache_dir"].setValue(str(tmp_path))
    assert node.on_learn(group) is not None and node.on_learn(group) is not None
    group["name"].setValue("chair_matte")
    other = fake.create("Group", name="Comp")
    import threading
    with other:  # the artist is working inside another group when the job ends
        t = threading.Thread(target=finishes[0], args=(jobs.JobOutcome(jobs.FAILED, message="boom"),))
        t.start()
        t.join()
        fake.pump(lambda: not fake.main_queue)
    assert group["status"].value() == "failed: boom"
    nuke_delete = fake.delete
    nuke_delete(group)  # deleted while the second job ran: its end is dropped quietly
    t = threading.Thread(target=finishes[1], args=(jobs.JobOutcome(jobs.DONE, message="learn done"),))
    t.start()
    t.join()
    fake.pump(lambda: not fake.main_queue)


# --- end to end ---------------------------------------------------------------------------

def chair_renderer(fake, layers=None):
    """Fake Nuke render of a reference: the chair mask, split at its median column into left/right;
    shape Bezier1 draws the left half, Bezier2 the right (what the symbolic render says is in alpha)."""
    from PIL import Image
    from smite.io.image import write_image

    halves_of = {"Bezier1": "left", "Bezier2": "right"}

    def render(write, frame):
        drawn = fake.render(write, frame)["channels"].get("rgba.alpha", frozenset())
        path = write["file"].value()
        plate_frame = int(path.rsplit(".", 2)[-2])
        labels = np.array(Image.open(os.path.join(CHAIR, "masks", f"{plate_frame:05d}.png")))
        obj = labels == 1
        cut = int(np.median(np.nonzero(obj)[1]))
        halves = {"left": obj.copy(), "right": obj.copy()}
        halves["left"][:, cut:] = False
        halves["right"][:, :cut] = False
        alpha = np.zeros(obj.shape, np.float32)
        for name in drawn:
            alpha = np.maximum(alpha, halves[halves_of[name]].astype(np.float32))
        write_image(path, alpha[:, :, None], dtype="half", channel_names=["A"])

    return render


@pytest.mark.skipif(not os.path.isdir(os.path.join(CHAIR, "frames")), reason="bundled chair sample missing")
def test_segment_end_to_end_through_a_real_server(fake, node, tmp_path):
    import OpenImageIO as oiio

    read, roto, layers = scene(fake, 0, 5)
    fake.renderer = chair_renderer(fake)
    group = node.create_node()
    group["smite_python"].setValue(sys.executable)
    cache = tmp_path / "cache"
    group["cache_dir"].setValue(str(cache))

    runner = node.on_segment(group)
    assert runner is not None, group["status"].value()
    fake.pump(lambda: not runner.thread.is_alive() and not fake.main_queue, timeout=120)
    assert runner.outcome.ok, runner.outcome
    assert group["status"].value().startswith("segment done: 6 frame(s) written")

    shot = json.loads((cache / "shot.json").read_text())
    assert shot["frames"] == "0-5" and shot["parts"] == ["left", "right"]
    assert shot["references"] == [
        {"frame": 0, "masks": {"left": "references/left.0000.exr", "right": "references/right.0000.exr"}},
        {"frame": 5, "masks": {"left": "references/left.0005.exr", "right": "references/right.0005.exr"}}]

    inner = group.node("smite_mattes")
    assert inner["file"].value() == str(cache / "mattes" / "mattes.####.exr").replace(os.sep, "/")
    assert inner["raw"].value() is True and inner["reload"].executed == 1
    assert sorted(os.listdir(cache / "mattes")) == [f"mattes.{f:04d}.exr" for f in range(6)]
    spec = oiio.ImageInput.open(str(cache / "mattes" / "mattes.0003.exr")).spec()
    assert {"smite_left.A", "smite_right.A"} <= set(spec.channelnames)
    from PIL import Image
    from smite.io.matte import read_matte

    parts, probs, _ = read_matte(str(cache / "mattes" / "mattes.0003.exr"))  # each part follows its own half
    obj = np.array(Image.open(os.path.join(CHAIR, "masks", "00003.png"))) == 1
    cut = int(np.median(np.nonzero(obj)[1]))
    for part in ("left", "right"):
        matte = np.asarray(probs[parts.index(part)]) > 0.5
        truth = obj.copy()
        if part == "left":
            truth[:, cut:] = False
        else:
            truth[:, :cut] = False
        assert (matte & truth).sum() / max(1, (matte | truth).sum()) > 0.5, part
    assert fake.declared_layers == {"smite_left": ["smite_left.alpha"], "smite_right": ["smite_right.alpha"]}
    assert group.node("smite_copy_right")["from0"].value() == "smite_right.alpha"

    tasks = [t for t in fake.ProgressTask.records if t.title == "SMITE segment"]
    assert tasks and tasks[0].progress and max(tasks[0].progress) == 100
    assert fake.ProgressTask.live() == []  # every progress window closed

    # A re-run resumes (nothing left to write) and reloads the Read.
    runner = node.on_segment(group)
    fake.pump(lambda: not runner.thread.is_alive() and not fake.main_queue, timeout=60)
    assert runner.outcome.ok and inner["reload"].executed == 2
    assert "6 already done" in group["status"].value()


def test_progress_reaches_the_status_line_in_the_shared_words(fake, node, monkeypatch):
    """The ProgressTask and the status knob show `smite.hostapi.progress.describe`'s line."""
    group = node.create_node()

    class Runner:
        on_progress = should_cancel = None

        def run(self):
            self.on_progress({"stage": "segment", "done": 3, "total": 12, "message": "frame 3"})

    node._follow(group, "segment", Runner())
    fake.pump(lambda: not fake.main_queue, timeout=10)
    assert group["status"].value() == "segment: segment 3/12 (25%): frame 3"
