"""Render each part's roto alpha at each keyframe with Nuke itself (thin layer over ``nuke``).

The reference the core learns from must be exactly what the artist sees, feather, motion
blur and all, so Nuke rasterises it. The artist's Roto is never edited (no visibility keys,
no undo steps): for each part a temporary copy of the Roto (every knob copied through
``toScript``/``fromScript``) keeps only that part's top-level layer, tells its curves knob
(``changed()``, or it renders from a stale cache), and draws over an empty image of the
plate's format (a Remove of every plate channel: the artist's bg and its alpha play no part).
The copy's own ``output`` channel goes to alpha, a Crop to the plate format drops overscan
(an EXR Write stores the bbox as its data window), and a Write of that alpha renders one
file per frame, named by plate file frame (written under a temporary name, then renamed). The
temporary nodes are always deleted.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import nuke

from .keyframes import merge_key_times
from .manifest import hostconfig, shotcache

atomic = hostconfig.hostapi("atomic")

ROTO_CLASSES = ("Roto", "RotoPaint")
PASS_THROUGH = ("Dot",)  # nodes that may sit between a source and the group's input: they change nothing
TMP_PREFIX = "smite_tmp_"
# Knobs that place or name a node rather than say what it draws: not copied to the temporary Roto.
NOT_COPIED = ("name", "xpos", "ypos", "selected", "label", "curves")
# Roto lifetime attributes (the curves' AnimAttributes): type, from-frame, to-frame; types by
# their index in the Lifetime tab's menu.
LIFETIME_TYPE, LIFETIME_FROM, LIFETIME_TO = "ltt", "ltn", "ltm"
LIFETIME_ALL, LIFETIME_SINGLE, LIFETIME_RANGE = 0, 2, 4


class RenderCancelled(Exception):
    """The artist cancelled while the roto references were rendering."""


def direct_source(group: Any, index: int, classes: Sequence[str], what: str) -> Any:
    """The node of ``classes`` feeding the group's input ``index`` through Dots only, or None when unconnected.

    Anything else in between (a TimeOffset, Retime, Transform, Reformat, Grade...) would make
    the references disagree with the plate frames or pixels the core reads from the file, so it
    is refused with a one-line ValueError naming the node.
    """
    node = group.input(index)
    while node is not None and node.Class() in PASS_THROUGH:
        node = node.input(0)
    if node is None:
        return None
    if node.Class() not in classes:
        raise ValueError(f"{node.name()} ({node.Class()}) sits between the {what} and input {index}: "
                         f"connect the {what} directly (only Dots may sit in between)")
    return node


def part_layers(roto: Any) -> List[Any]:
    """The Roto's top-level layers, in the curves panel's order: one per part.

    A shape or stroke directly under the root belongs to no part; it is refused (ValueError
    naming it) rather than silently left out of, or added to, every part.
    """
    import nuke.rotopaint as rp

    layers = []
    for element in roto["curves"].rootLayer:
        if not isinstance(element, rp.Layer):
            raise ValueError(f"{roto.name()}: '{element.name}' is not in a layer: put every shape in a "
                             "top-level layer named after its part")
        layers.append(element)
    return layers



def stroke_key_time(stroke: Any) -> Optional[float]:
    """The frame a paint stroke is keyed at: its points carry no keys, its lifetime places it.

    Single-frame and frame-range strokes key at their from-frame; an all-frames stroke is drawn
    at every keyframe and adds none. Other lifetime types are refused (one line naming the stroke).
    """
    attrs = stroke.getAttributes()
    kind = int(attrs.getValue(0, LIFETIME_TYPE))
    if kind == LIFETIME_ALL:
        return None
    if kind in (LIFETIME_SINGLE, LIFETIME_RANGE):
        return float(attrs.getValue(0, LIFETIME_FROM))
    raise ValueError(f"paint stroke '{stroke.name}': set its lifetime to all frames, single frame or frame range")


def _element_key_times(element: Any) -> Iterator[float]:
    import nuke.rotopaint as rp

    if isinstance(element, rp.Layer):
        for child in element:
            for t in _element_key_times(child):
                yield t
    elif isinstance(element, rp.Shape):
        for point in element:
            for t in point.center.getControlPointKeyTimes():
                yield t
    elif isinstance(element, rp.Stroke):
        t = stroke_key_time(element)
        if t is not None:
            yield t


def roto_keyframes(roto: Any) -> List[int]:
    """Timeline frames where any shape of the Roto's part layers has a key, or a stroke starts its lifetime."""
    times: List[float] = []
    for layer in part_layers(roto):
        times.extend(_element_key_times(layer))
    return merge_key_times(times)


def output_channel(node: Any) -> str:
    """The one channel of a Roto's ``output`` set that holds its shapes' coverage.

    ``alpha``/``rgba`` (or any set with alpha) -> ``rgba.alpha``; ``rgb`` -> ``rgba.red``; a
    channel name as is; a layer name -> that layer's first channel on the node.
    """
    value = str(node["output"].value()).strip()
    if value in ("alpha", "rgba", "rgba.alpha") or value.endswith(".alpha"):
        return "rgba.alpha" if value in ("alpha", "rgba") else value
    if value == "rgb":
        return "rgba.red"
    if "." in value:
        return value
    channels = [c for c in node.channels() if c.split(".")[0] == value]
    if not channels:
        raise ValueError(f"{node.name()}: its output '{value}' has no channels")
    return channels[0]


def part_roto(roto: Any, keep: int, bg: Any) -> Any:
    """A temporary copy of ``roto`` (inside the current group) drawing only top-level element ``keep`` over ``bg``."""
    temp = getattr(nuke.nodes, roto.Class())(name=f"{TMP_PREFIX}roto")
    try:
        temp["curves"].fromScript(roto["curves"].toScript())
        for name, knob in roto.knobs().items():
            if name in NOT_COPIED or temp.knob(name) is None:
                continue
            try:
                temp[name].fromScript(knob.toScript())
            except Exception:  # read-only and button knobs do not take a value; they draw nothing
                pass
        root = temp["curves"].rootLayer
        for index in reversed(range(len(root))):
            if index != keep:
                root.remove(index)
        temp["curves"].changed()  # element edits alone leave the knob rendering its old tree
        temp.setInput(0, bg)
    except Exception:
        nuke.delete(temp)
        raise
    return temp


def render_references(group: Any, roto: Any, frames: Sequence[int], paths: shotcache.ShotCache,
                      progress: Optional[Callable[[int, str], bool]] = None, frame_offset: int = 0,
                      view: Optional[str] = None) -> Dict[int, Dict[str, str]]:
    """Render every part at every timeline frame into the shot cache's references; ``{file frame: {part: path}}``.

    ``frame_offset`` is the plate Read's timeline-minus-file frame offset: Roto keys and
    ``nuke.execute`` count timeline frames, the core counts plate file frames. ``view``: the one
    view to render (``nuke.execute`` renders every view by default). Call on Nuke's main
    thread. ``progress(percent, message)`` returning False stops early (artist cancel).
    """
    layers = part_layers(roto)
    os.makedirs(paths.references, exist_ok=True)
    plate_in = group.node("plate")
    fmt = plate_in.format()
    masks: Dict[int, Dict[str, str]] = {int(f) - frame_offset: {} for f in frames}
    total = max(1, len(layers) * len(frames))
    views = [view] if view else None
    temps: List[Any] = []
    group.begin()
    try:
        empty = nuke.nodes.Remove(name=TMP_PREFIX + "empty")  # the plate's format, no channels
        temps.append(empty)
        empty["operation"].setValue("remove")
        empty["channels"].setValue("all")
        empty.setInput(0, plate_in)
        copy = nuke.nodes.Copy(name=TMP_PREFIX + "copy")
        temps.append(copy)
        copy.setInput(0, empty)  # B: nothing but the format
        copy["to0"].setValue("rgba.alpha")
        crop = nuke.nodes.Crop(name=TMP_PREFIX + "crop")
        temps.append(crop)
        crop.setInput(0, copy)
        crop["box"].setValue([0, 0, fmt.width(), fmt.height()])
        crop["reformat"].setValue(False)
        write = nuke.nodes.Write(name=TMP_PREFIX + "write")
        temps.append(write)
        write.setInput(0, crop)
        write["file_type"].setValue("exr")
        write["channels"].setValue("alpha")
        write["raw"].setValue(True)  # data, not colour: no view transform on the way out
        done = 0
        for index, layer in enumerate(layers):
            part = layer.name
            temp = part_roto(roto, index, empty)
            temps.append(temp)
            copy.setInput(1, temp)  # A: this part's shapes
            copy["from0"].setValue(output_channel(temp))
            for frame in frames:
                if progress is not None and progress(int(100 * done / total), f"roto {part} @ {frame}") is False:
                    raise RenderCancelled("cancelled while rendering roto references")
                plate_frame = int(frame) - frame_offset
                target = paths.reference(part, plate_frame)  # named by plate frame, not timeline frame
                partial = atomic.partial_path(target)  # renamed once whole: the core never reads half a file
                write["file"].setValue(partial.replace(os.sep, "/"))
                if views is None:
                    nuke.execute(write, int(frame), int(frame), 1)
                else:
                    nuke.execute(write, int(frame), int(frame), 1, views)
                masks[plate_frame][part] = atomic.commit(partial, target)
                done += 1
            temps.remove(temp)
            copy.setInput(1, None)
            nuke.delete(temp)
    finally:
        for temp in reversed(temps):
            nuke.delete(temp)
        group.end()
    return masks
