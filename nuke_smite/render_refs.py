"""Render each part's roto alpha at each keyframe with Nuke itself (thin layer over ``nuke``).

The reference the core learns from must be exactly what the artist sees, feather, motion
blur and all, so Nuke rasterises it: inside the group, a temporary Copy (plate format from B,
alpha from the Roto on A) feeds a Write of the alpha channel to ``refs/<part>.####.exr``;
for each part the other top-level Roto layers are hidden at that frame, then restored.
The temporary nodes are always deleted, even when a render fails.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import nuke

from .keyframes import merge_key_times
from .manifest import CachePaths

ROTO_CLASSES = ("Roto", "RotoPaint")
TMP_PREFIX = "smite_tmp_"


class RenderCancelled(Exception):
    """The artist cancelled while the roto references were rendering."""


def find_upstream(node: Any, classes: Sequence[str], max_depth: int = 200) -> Any:
    """The first node of one of ``classes`` on the input-0 chain from ``node`` (itself included), or None."""
    depth = 0
    while node is not None and depth < max_depth:
        if node.Class() in classes:
            return node
        node = node.input(0)
        depth += 1
    return None


def top_level_layers(roto: Any) -> List[Any]:
    """The Roto's top-level layers, in the curves panel's order: one per part."""
    import nuke.rotopaint as rp

    root = roto["curves"].rootLayer
    return [element for element in root if isinstance(element, rp.Layer)]


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
        for point in element:
            for t in point.getControlPointKeyTimes():
                yield t


def roto_keyframes(roto: Any) -> List[int]:
    """Frames where any shape or stroke of the Roto's top-level layers has a key."""
    times: List[float] = []
    for layer in top_level_layers(roto):
        times.extend(_element_key_times(layer))
    return merge_key_times(times)


class _Isolated:
    """Context manager: only ``keep`` of ``layers`` is visible at ``frame``; previous values restored."""

    def __init__(self, layers: Sequence[Any], keep: Any, frame: int) -> None:
        self.layers, self.keep, self.frame = layers, keep, frame
        self.saved: List[Tuple[Any, bool]] = []

    def __enter__(self) -> "_Isolated":
        for layer in self.layers:
            was = bool(layer.getVisible(self.frame))
            self.saved.append((layer, was))
            wanted = layer is self.keep
            if was != wanted:
                layer.setVisible(self.frame, wanted)
        return self

    def __exit__(self, *exc: Any) -> None:
        for layer, was in self.saved:
            if bool(layer.getVisible(self.frame)) != was:
                layer.setVisible(self.frame, was)


def render_references(group: Any, roto: Any, frames: Sequence[int], paths: CachePaths,
                      progress: Optional[Callable[[int, str], bool]] = None) -> Dict[int, Dict[str, str]]:
    """Write ``refs/<part>.####.exr`` for every part at every frame; ``{frame: {part: path}}``.

    Call on Nuke's main thread (``nuke.execute``). ``progress(percent, message)`` returning
    False stops early (artist cancel): nothing is returned for an unfinished render.
    """
    layers = top_level_layers(roto)
    os.makedirs(paths.refs_dir, exist_ok=True)
    plate_in = group.node("plate")
    roto_in = group.node("roto")
    masks: Dict[int, Dict[str, str]] = {int(f): {} for f in frames}
    total = max(1, len(layers) * len(frames))
    group.begin()
    copy = write = None
    try:
        copy = nuke.nodes.Copy(name=TMP_PREFIX + "copy")
        copy.setInput(0, plate_in)  # B: the plate's format and frame range
        copy.setInput(1, roto_in)  # A: the roto
        copy["from0"].setValue("rgba.alpha")
        copy["to0"].setValue("rgba.alpha")
        write = nuke.nodes.Write(name=TMP_PREFIX + "write")
        write.setInput(0, copy)
        write["file_type"].setValue("exr")
        write["channels"].setValue("alpha")
        write["raw"].setValue(True)  # data, not colour: no view transform on the way out
        done = 0
        for layer in layers:
            part = layer.name
            write["file"].setValue(paths.ref_pattern(part).replace(os.sep, "/"))
            for frame in frames:
                if progress is not None and progress(int(100 * done / total), f"roto {part} @ {frame}") is False:
                    raise RenderCancelled("cancelled while rendering roto references")
                with _Isolated(layers, layer, frame):
                    nuke.execute(write, int(frame), int(frame))
                masks[int(frame)][part] = paths.ref_file(part, frame)
                done += 1
    finally:
        for temp in (write, copy):
            if temp is not None:
                nuke.delete(temp)
        group.end()
    return masks
