"""The "SMITE Matte" node: a Group built by Python, its buttons, and how results enter the graph.

Thin layer over ``nuke``: it reads knobs and upstream nodes into plain values, hands them to
the pure modules (`manifest`, `keyframes`, `jobs`), and changes the graph only on Nuke's main
thread (button callbacks, or ``nuke.executeInMainThread`` from the job thread).

Inside the group: ``plate`` (input 0) -> one Copy per part (``smite_<part>.alpha`` from the
matte Read) -> Output; ``roto`` (input 1) is only used to render the keyframe references.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any, Dict, List, Optional, Tuple

import nuke

from . import hostconfig, render_refs
from .keyframes import check_in_range, format_keyframes, parse_keyframes
from .manifest import (
    channel_name, check_part_names, default_cache_dir, job_settings, layer_name, plate_colorspace, plate_pattern,
    segment_part_model,
)
farmcmd = hostconfig.hostapi("farmcmd")  # Send to farm: the core's rules, shared with the Blender add-on
jobsettings = hostconfig.hostapi("jobsettings")
progress = hostconfig.hostapi("progress")
shotcache = hostconfig.hostapi("shotcache")

MATTE_TOKEN = "####"  # the frame token of the matte pattern the inner Read shows

NODE_NAME = "SMITE_Matte"
MARKER_KNOB = "smite_matte"
READ_NAME = "smite_mattes"
COPY_PREFIX = "smite_copy_"
SEGMENT, LEARN = "segment", "learn"
_CMD = "import nuke_smite.node as _smite; _smite.{}(nuke.thisNode())"

# Per-session state (a Nuke session is one process): the server stays up between presses,
# and each node runs one job at a time.
_session: Dict[str, Any] = {"clients": None, "runners": {}, "farm": {}}
_session_lock = threading.Lock()


# --- creating the node ---------------------------------------------------------------------

def create_node() -> Any:
    """Menu command: a new SMITE Matte group, wired to a selected Read (plate) and Roto."""
    selected = nuke.selectedNodes()
    plate = next((n for n in selected if n.Class() == "Read"), None)
    roto = next((n for n in selected if n.Class() in render_refs.ROTO_CLASSES), None)
    # createNode places the group under the selection as the artist expects; its panel opens once
    # the SMITE knobs exist. Nodes inside (and the render's temporary nodes) use nuke.nodes.
    group = nuke.createNode("Group", f"name {_unique_name(NODE_NAME)}", inpanel=False)
    group.begin()
    try:
        plate_in = nuke.nodes.Input(name="plate")  # first Input = input 0
        nuke.nodes.Input(name="roto")  # second Input = input 1
        nuke.nodes.Read(name=READ_NAME)
        output = nuke.nodes.Output()
        output.setInput(0, plate_in)
    finally:
        group.end()
    _add_knobs(group)
    group.setInput(0, plate)  # createNode wired input 0 to the last selected node, whatever it was
    if roto is not None:
        group.setInput(1, roto)
        try:
            group["keyframes"].setValue(format_keyframes(render_refs.roto_keyframes(roto)))
        except Exception:  # an odd Roto must not stop the node from being made
            pass
    if nuke.GUI:
        group.showControlPanel()
    return group


def _unique_name(base: str) -> str:
    i = 1
    while nuke.toNode(f"{base}{i}") is not None:
        i += 1
    return f"{base}{i}"


def _add_knobs(group: Any) -> None:
    cfg = hostconfig.load_config()
    knobs = [
        nuke.Tab_Knob("smite_tab", "SMITE"),
        nuke.File_Knob("smite_python", "core python"),
        nuke.File_Knob("smite_core", "core source"),
        nuke.File_Knob("cache_dir", "shot cache"),
        nuke.File_Knob("model_file", "part model"),
        nuke.File_Knob("sd_model", "SD model"),
        nuke.String_Knob("keyframes", "keyframes"),
        nuke.PyScript_Knob("keys_from_roto", "from Roto", _CMD.format("on_keys_from_roto")),
        nuke.Enumeration_Knob("backend", "backend", jobsettings.backends()),
        nuke.PyScript_Knob("learn", "Learn", _CMD.format("on_learn")),
        nuke.PyScript_Knob("segment", "Segment", _CMD.format("on_segment")),
        nuke.Int_Knob("farm_chunk", "farm chunk"),
        nuke.PyScript_Knob("send_to_farm", "Send to farm", _CMD.format("on_send_to_farm")),
        nuke.Text_Knob("status", "status", "idle"),
        nuke.Boolean_Knob(MARKER_KNOB, "", True),
    ]
    for knob in knobs:
        group.addKnob(knob)
    group["smite_python"].setValue(hostconfig.resolve_python(config=cfg))
    group["smite_core"].setValue(hostconfig.resolve_core(config=cfg))
    group["smite_python"].setTooltip("the core venv's python (install/nuke_install.py or $SMITE_PYTHON)")
    group["cache_dir"].setTooltip("shot cache: roto references, shot.json, mattes (empty = next to the script)")
    group["model_file"].setTooltip("part model written by Learn (empty = <shot cache>/parts.smite)")
    group["sd_model"].setTooltip("diffusion backend: Stable Diffusion folder or file (empty = $SMITE_MODEL)")
    group["farm_chunk"].setValue(farmcmd.DEFAULT_CHUNK)
    group["farm_chunk"].setTooltip("frames per farm task")
    group["send_to_farm"].setTooltip("write <shot cache>/farm/job.yaml (OpenJD) and farm/deadline/ (Deadline 10); "
                                     "nothing is submitted")
    group["keyframes"].setTooltip("frames whose roto is a reference, e.g. 1001,1020-1022 (empty = the Roto's keys)")
    group[MARKER_KNOB].setVisible(False)


def set_status(group: Any, text: str) -> None:
    """One line on the node's status knob (main thread only)."""
    group["status"].setValue(" ".join(str(text).split()))


# --- gathering what the job needs ----------------------------------------------------------

def plate_frame_offset(read: Any) -> int:
    """Timeline frame minus plate file frame for a Read (its ``frame_mode``/``frame`` knobs).

    Roto keys and ``nuke.execute`` count timeline frames; the shot manifest counts the files'
    own frames. A frame expression other than plain ``frame`` cannot be mapped: ValueError.
    """
    mode = str(read["frame_mode"].value())
    text = str(read["frame"].value()).strip()
    try:
        if mode == "start at":
            return int(text or read["first"].value()) - int(read["first"].value())
        if mode == "offset":
            return int(text or 0)
    except ValueError:
        raise ValueError(f"{read.name()}: frame '{text}' is not a whole number") from None
    if text in ("", "frame"):
        return 0
    raise ValueError(f"{read.name()}: frame expression '{text}' cannot be mapped to plate frames "
                     "(use frame mode 'start at' or 'offset')")


def gather(group: Any) -> Dict[str, Any]:
    """Plain values for a job from the node's knobs and inputs; ValueError naming what is missing."""
    if bool(nuke.root()["proxy"].value()):
        raise ValueError("proxy mode is on: switch it off (references and mattes are made at full resolution)")
    read = render_refs.direct_source(group, 0, ("Read",), "plate Read")
    if read is None:
        raise ValueError("connect the plate Read to input 0 (plate)")
    roto = render_refs.direct_source(group, 1, render_refs.ROTO_CLASSES, "Roto")
    if roto is None:
        raise ValueError("connect a Roto/RotoPaint (one layer per part) to input 1 (roto)")
    # The full-resolution file knob, TCL and variables evaluated (nuke.filename would follow proxy mode).
    plate = plate_pattern(read["file"].getEvaluatedValue() or read["file"].value())
    first, last = int(read["first"].value()), int(read["last"].value())
    offset = plate_frame_offset(read)
    colorspace = plate_colorspace(str(read["colorspace"].value()), bool(read["raw"].value()))
    parts = check_part_names([layer.name for layer in render_refs.part_layers(roto)])
    key_text = group["keyframes"].value().strip()
    frames = parse_keyframes(key_text) if key_text else render_refs.roto_keyframes(roto)
    check_in_range(frames, first + offset, last + offset)
    if not key_text:
        group["keyframes"].setValue(format_keyframes(frames))
    cache = _file_knob(group, "cache_dir") or default_cache_dir(nuke.root()["name"].value(), group.name())
    python = hostconfig.resolve_python(_file_knob(group, "smite_python"))
    if not python or not os.path.isfile(python):
        raise ValueError(f"core python not found: {python or '(not set)'} (run install/nuke_install.py)")
    core = hostconfig.resolve_core(_file_knob(group, "smite_core"))
    if not core:
        raise ValueError("core source folder not found: set 'core source' to <smite repo>/core")
    paths = shotcache.ShotCache(cache)
    views = nuke.views()
    return {
        "read": read, "roto": roto, "plate": plate, "first": first, "last": last, "offset": offset,
        "colorspace": colorspace, "parts": parts, "keyframes": frames, "paths": paths, "python": python,
        "mattes": paths.mattes(MATTE_TOKEN),
        "core": core, "view": views[0] if views else None,
        "backend": str(group["backend"].value()) or jobsettings.BACKENDS[0],
        "model": _file_knob(group, "model_file") or paths.part_model,
        "segment_model": segment_part_model(_file_knob(group, "model_file"), paths.part_model),
        "sd_model": _file_knob(group, "sd_model"),
    }


def _file_knob(group: Any, name: str) -> str:
    """A File knob's path with ``[value ...]``, ``[getenv ...]`` and the like evaluated, stripped."""
    knob = group[name]
    return (knob.getEvaluatedValue() or "").strip() if str(knob.value()).strip() else ""


def prepare_shot(group: Any, plan: Dict[str, Any]) -> str:
    """Render the roto references and write the shot manifest (main thread); returns its path."""
    task = nuke.ProgressTask("SMITE: rendering roto references")

    def report(percent: int, message: str) -> bool:
        task.setProgress(percent)
        task.setMessage(message)
        return not task.isCancelled()

    try:
        masks = render_refs.render_references(group, plan["roto"], plan["keyframes"], plan["paths"], report,
                                              frame_offset=plan["offset"], view=plan["view"])
    finally:
        del task
    paths: shotcache.ShotCache = plan["paths"]
    manifest = shotcache.shot_manifest(plan["plate"], range(plan["first"], plan["last"] + 1), plan["colorspace"],
                                       plan["parts"], masks, base_dir=paths.root, name=group.name())
    return shotcache.write_manifest(paths, manifest)


# --- buttons -------------------------------------------------------------------------------

def on_keys_from_roto(group: Any) -> None:
    try:
        roto = render_refs.direct_source(group, 1, render_refs.ROTO_CLASSES, "Roto")
        if roto is None:
            raise ValueError("connect a Roto to input 1 (roto)")
        group["keyframes"].setValue(format_keyframes(render_refs.roto_keyframes(roto)))
    except ValueError as exc:
        set_status(group, f"error: {exc}")


def on_segment(group: Any) -> Optional[Any]:
    return start_job(group, SEGMENT)


def on_learn(group: Any) -> Optional[Any]:
    return start_job(group, LEARN)


def job_params(plan: Dict[str, Any], method: str, shot: str) -> Dict[str, Any]:
    """The server request for ``method``: Segment writes the mattes, Learn writes the part model."""
    if method == SEGMENT:
        settings = job_settings(SEGMENT, plan["backend"], plan["segment_model"], plan["sd_model"])
        return {"shot": shot, "out": plan["mattes"], "settings": settings}
    return {"shot": shot, "out": plan["model"], "settings": job_settings(LEARN, plan["backend"], "", plan["sd_model"])}


def _busy(group: Any, kind: str) -> bool:
    with _session_lock:
        busy = _session[kind].get(group.fullName())
    thread = getattr(busy, "thread", busy)
    if thread is not None and thread.is_alive():
        set_status(group, "busy: a job is already running for this node (cancel it in the progress panel)")
        return True
    return False


def _prepare(group: Any) -> Optional[Tuple[Dict[str, Any], str]]:
    """Gather and prepare the shot (references + shot.json), as Segment and Send to farm both need.

    Returns ``(plan, shot.json path)``, or None with the reason on the status knob.
    """
    try:
        plan = gather(group)
        set_status(group, "rendering roto references")
        return plan, prepare_shot(group, plan)
    except Exception as exc:
        set_status(group, f"error: {exc}")
        return None


def _legacy_note(plan: Dict[str, Any]) -> str:
    """A status-line note when the shot cache still holds an older layout's folders (never read)."""
    old = shotcache.legacy_folders(plan["paths"].root)
    return f" (not used, delete: {', '.join(old)})" if old else ""


def start_job(group: Any, method: str) -> Optional[Any]:
    """Prepare the shot on the main thread, then follow the server job on a background thread.

    Returns the `jobs.JobRunner` (tests join it), or None when preparation failed (the reason
    is on the status knob).
    """
    name = group.fullName()
    if _busy(group, "runners"):
        return None
    prepared = _prepare(group)
    if prepared is None:
        return None
    plan, shot = prepared
    try:
        from . import jobs  # loads the core's client: an ImportError names a missing core
    except Exception as exc:
        set_status(group, f"error: {exc}")
        return None
    params = job_params(plan, method, shot)
    result_info = {"parts": plan["parts"], "mattes": plan["mattes"], "first": plan["first"],
                   "last": plan["last"], "offset": plan["offset"], "model": plan["model"]}
    python = plan["python"]
    runner = jobs.JobRunner(lambda: _clients().get(python), method, params,
                            on_finish=lambda outcome: to_main_thread(_finish, group, method, result_info, outcome))
    with _session_lock:
        _session["runners"][name] = runner
    set_status(group, f"{method}: starting{_legacy_note(plan)}")
    runner.thread = threading.Thread(target=_follow, args=(group, method, runner), name=f"smite-{method}", daemon=True)
    runner.thread.start()
    return runner


def on_send_to_farm(group: Any) -> Optional[threading.Thread]:
    """Prepare the shot like Segment, then write the farm job files on a background thread.

    ``smite farm`` takes a few seconds (it starts the core's interpreter), so it runs off the
    main thread; the written paths, or the one-line error, come back on the status knob.
    Returns the thread (tests join it), or None when preparation failed.
    """
    name = group.fullName()
    if _busy(group, "farm"):
        return None
    prepared = _prepare(group)
    if prepared is None:
        return None
    plan, shot = prepared
    backend = plan["backend"]
    try:
        commands = farmcmd.farm_commands(plan["python"], shot, plan["mattes"], plan["paths"].root,
                                      int(group["farm_chunk"].value()), backend, plan["model"], plan["sd_model"])
    except (farmcmd.FarmError, ValueError, TypeError) as exc:
        set_status(group, f"error: {exc}")
        return None

    def work() -> None:
        try:
            text = farmcmd.summary(farmcmd.write_farm_files(commands, core=plan["core"]))
        except Exception as exc:  # FarmError, or anything unexpected: the artist must see it
            text = f"farm failed: {exc}"
        to_main_thread(_status_on, group, text)

    set_status(group, f"farm: writing job files{_legacy_note(plan)}")
    thread = threading.Thread(target=work, name="smite-farm", daemon=True)
    with _session_lock:
        _session["farm"][name] = thread
    thread.start()
    return thread


def _clients() -> Any:
    from .jobs import ClientCache

    with _session_lock:
        if _session["clients"] is None:
            _session["clients"] = ClientCache()
            atexit.register(shutdown_servers)
        return _session["clients"]


def shutdown_servers() -> None:
    """Stop every server this session started (atexit; tests call it too)."""
    with _session_lock:
        cache = _session["clients"]
        _session["clients"] = None
    if cache is not None:
        cache.shutdown_all()


def to_main_thread(call: Any, *args: Any) -> None:
    """Run ``call(*args)`` on Nuke's main thread: queued from another thread, directly on the main one.

    Foundry's Python dev guide ("Threading"): ``executeInMainThread`` must not be called from
    the main thread "or NUKE will hang".
    """
    if threading.current_thread() is threading.main_thread():
        call(*args)
    else:
        nuke.executeInMainThread(call, args)


def _follow(group: Any, method: str, runner: Any) -> None:
    """Background thread: a ProgressTask mirrors the job; its cancel button cancels the job.

    A ProgressTask has no close(): its window goes when the last reference goes, so the
    runner's hooks (a bound ``isCancelled`` holds the task) are cleared when the job ends.
    """
    holder = [nuke.ProgressTask(f"SMITE {method}")]
    holder[0].setMessage("starting the SMITE server")

    def on_progress(params: Dict[str, Any]) -> None:
        shown = progress.describe(params, method)
        if holder:
            holder[0].setProgress(shown.percent)
            holder[0].setMessage(shown.text)
        to_main_thread(_status_on, group, f"{method}: {shown.text}")

    runner.on_progress = on_progress
    runner.should_cancel = lambda: bool(holder) and holder[0].isCancelled()
    try:
        runner.run()
    finally:
        runner.on_progress = runner.should_cancel = None
        holder.clear()


def _attached(group: Any) -> bool:
    """False once the node is deleted (its Python object then raises ValueError on any use).

    Jobs keep the node's own object, not its name: ``nuke.toNode`` resolves a name in the
    current group context and misses a node renamed while its job ran.
    """
    try:
        group.name()
        return True
    except ValueError:
        return False


def _status_on(group: Any, text: str) -> None:
    if _attached(group):
        set_status(group, text)


def _finish(group: Any, method: str, info: Dict[str, Any], outcome: Any) -> None:
    """Main thread: show how the job ended; bring a segment's mattes into the graph."""
    if not _attached(group):  # the node was deleted while the job ran
        return
    if outcome.ok and method == SEGMENT:
        apply_results(group, info["parts"], info["mattes"], info["first"], info["last"], info["offset"])
    elif outcome.ok and method == LEARN:
        group["model_file"].setValue(info["model"])
    set_status(group, outcome.message if outcome.ok else f"{outcome.state}: {outcome.message}")


# --- results -------------------------------------------------------------------------------

def declare_layers(parts: List[str]) -> None:
    """Make ``smite_<part>`` layers known to Nuke so downstream Shuffles list them before any render."""
    existing = set(nuke.layers())
    for part in parts:
        if layer_name(part) not in existing:
            nuke.Layer(layer_name(part), [channel_name(part)])


def apply_results(group: Any, parts: List[str], mattes: str, first: int, last: int, offset: int = 0) -> Any:
    """Point the inner Read at the mattes (raw: they are data), reload it, and copy one channel per part.

    The matte files are numbered by plate file frame like the plate; ``offset`` (the plate
    Read's timeline offset) puts them on the same timeline frames as the plate.

    Idempotent: a re-run rebuilds the Copy chain and reloads the Read instead of adding nodes.
    Returns the Read.
    """
    declare_layers(parts)
    group.begin()
    try:
        read = group.node(READ_NAME) or nuke.nodes.Read(name=READ_NAME)
        read["file"].setValue(mattes.replace(os.sep, "/"))
        for knob, value in (("first", first), ("last", last), ("origfirst", first), ("origlast", last)):
            read[knob].setValue(int(value))
        read["frame_mode"].setValue("offset")
        read["frame"].setValue(str(int(offset)))
        read["raw"].setValue(True)
        read["on_error"].setValue("black")  # frames not segmented yet read as empty mattes
        read["reload"].execute()
        for old in [n for n in group.nodes() if n.name().startswith(COPY_PREFIX)]:
            nuke.delete(old)
        stream = group.node("plate")
        for part in parts:
            copy = nuke.nodes.Copy(name=COPY_PREFIX + part)
            copy.setInput(0, stream)  # B: the plate stream passes through
            copy.setInput(1, read)  # A: the mattes
            copy["from0"].setValue(channel_name(part))
            copy["to0"].setValue(channel_name(part))
            stream = copy
        output = next(n for n in group.nodes() if n.Class() == "Output")
        output.setInput(0, stream)
    finally:
        group.end()
    return read
