"""A small fake of Nuke's Python API: records calls and raises on anything it does not know.

Only what `nuke_smite` uses (and a few neighbours) exists here, with Nuke's names and call
shapes; any other module attribute, node class or knob name raises, so a typo in a ``nuke``
call fails a test instead of passing silently. Graph edits (node creation, inputs, knob
values, deletion) raise off the thread that installed the fake, standing in for Nuke's rule
that only the main thread touches the graph; ``executeInMainThread`` queues calls that the
test runs with `FakeNuke.pump`.

Where real Nuke behaves in a way a careless caller would not notice (a render cache, a
progress window that lives as long as its Python object, a frame offset, a proxy file), the
fake behaves the same way, and each such rule names the page of Foundry's Nuke Python API
reference (Nuke 16.0, learn.foundry.com/nuke/developers/160/pythonreference/, "API ref" below)
or Python developer guide ("dev guide") it follows. `FakeNuke.render` is a tiny symbolic
compositor: an image is ``{channel: set of what was drawn into it}`` plus a bbox, so a test can
ask what a Write would have written without pixels.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import types
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

COMMON_KNOBS = {"name": "", "label": "", "xpos": 0, "ypos": 0, "disable": False}
NODE_KNOBS: Dict[str, Dict[str, Any]] = {
    # Read: frame_mode/frame map timeline frames to file frames ("expression", "start at",
    # "offset"; `frame` is a string); `proxy` is the proxy-resolution file (API ref:
    # nuke.filename "based on the root.proxy settings and which of the fullsize/proxy
    # filenames are filled in").
    "Read": {"file": "", "proxy": "", "first": 1, "last": 1, "origfirst": 1, "origlast": 1, "before": "hold",
             "after": "hold", "frame_mode": "expression", "frame": "", "colorspace": "default (sRGB)", "raw": False,
             "on_error": "error", "reload": None},
    "Write": {"file": "", "file_type": "", "channels": "rgb", "raw": False, "colorspace": "default",
              "create_directories": False},
    "Copy": {"from0": "rgba.alpha", "to0": "rgba.alpha", "from1": "none", "to1": "none",
             "from2": "none", "to2": "none", "from3": "none", "to3": "none", "channels": "none"},
    "Remove": {"operation": "remove", "channels": "none"},
    "Crop": {"box": None, "reformat": False, "crop": True},
    "Dot": {},
    "TimeOffset": {"time_offset": 0},
    "Retime": {"speed": 1.0},
    "Transform": {"translate": [0.0, 0.0]},
    "Reformat": {"format": "root"},
    "Input": {"number": 0},
    "Output": {},
    "Group": {},
    "Roto": {"output": "alpha"},
    "RotoPaint": {"output": "alpha"},
    "Grade": {"white": 1.0},
    "Root": {"name": "", "first_frame": 1, "last_frame": 100, "proxy": False},
}
ENUM_VALUES = {("Read", "on_error"): ("error", "black", "checkerboard", "nearest frame"),
               ("Read", "frame_mode"): ("expression", "start at", "offset"),
               ("Remove", "operation"): ("remove", "keep")}
ROOT_FORMAT = (64, 48)  # width, height of the fake's root format (and of a Read without a format set)

class FakeNukeError(AttributeError):
    """An API the fake does not know (and, most likely, neither does Nuke)."""


# --- knobs -------------------------------------------------------------------------------

class Knob:
    def __init__(self, name: str, label: Optional[str] = None, value: Any = None) -> None:
        self._name = name
        self._label = label
        self._value = value
        self.node: Optional["Node"] = None
        self.executed = 0
        self.tooltip = ""
        self.visible = True

    def name(self) -> str:
        return self._name

    def value(self) -> Any:
        return self._value

    def getValue(self) -> Any:
        return self._value

    def setValue(self, value: Any) -> bool:
        if self.node is not None:
            self.node.fake.check_main_thread(f"{self.node.name()}['{self._name}'].setValue")
            allowed = ENUM_VALUES.get((self.node.Class(), self._name))
            if allowed is not None and value not in allowed:
                raise ValueError(f"{self.node.Class()}.{self._name}: {value!r} is not one of {allowed}")
        self._value = value
        return True

    def execute(self) -> None:
        if self.node is not None:
            self.node.fake.check_main_thread(f"{self.node.name()}['{self._name}'].execute")
        self.executed += 1

    def setTooltip(self, text: str) -> None:
        self.tooltip = text

    def setVisible(self, visible: bool) -> None:
        self.visible = bool(visible)

    # API ref nuke.Knob.toScript / fromScript: the knob as .nk text, and back (JSON here).
    def toScript(self) -> str:
        return json.dumps(self._value, sort_keys=True)

    def fromScript(self, text: str) -> bool:
        return self.setValue(json.loads(text))

    def getEvaluatedValue(self, oc: Any = None) -> str:
        """API ref nuke.File_Knob.getEvaluatedValue: the string with its TCL expressions evaluated.

        The fake evaluates ``[value node.knob]``, ``[getenv NAME]`` and ``$env(NAME)``; anything
        else in brackets raises (the fake would not know what Nuke makes of it).
        """
        if self.node is None:
            return str(self._value)
        return self.node.fake.evaluate_tcl(str(self._value))


class Tab_Knob(Knob):
    pass


class File_Knob(Knob):
    def __init__(self, name: str, label: Optional[str] = None) -> None:
        super().__init__(name, label, "")


class String_Knob(Knob):
    def __init__(self, name: str, label: Optional[str] = None, value: str = "") -> None:
        super().__init__(name, label, value)


class Text_Knob(Knob):
    def __init__(self, name: str, label: Optional[str] = None, text: str = "") -> None:
        super().__init__(name, label, text)


class Boolean_Knob(Knob):
    def __init__(self, name: str, label: Optional[str] = None, value: bool = False) -> None:
        super().__init__(name, label, bool(value))


class Int_Knob(Knob):
    def __init__(self, name: str, label: Optional[str] = None) -> None:
        super().__init__(name, label, 0)

    def setValue(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{self._name}: Int_Knob.setValue takes an int, got {value!r}")
        return super().setValue(value)


class Enumeration_Knob(Knob):
    def __init__(self, name: str, label: str, values: List[str]) -> None:
        super().__init__(name, label, values[0] if values else "")
        self.values = list(values)

    def setValue(self, value: Any) -> bool:
        if value not in self.values:
            raise ValueError(f"{self._name}: {value!r} is not one of {self.values}")
        return super().setValue(value)


class PyScript_Knob(Knob):
    def __init__(self, name: str, label: Optional[str] = None, command: str = "") -> None:
        super().__init__(name, label, command)


# --- nodes -------------------------------------------------------------------------------

class Node:
    def __init__(self, fake: "FakeNuke", cls: str, name: str, parent: Optional["Node"]) -> None:
        self.fake = fake
        self._class = cls
        self._parent = parent
        self._inputs: Dict[int, Optional[Node]] = {}
        self._knobs: Dict[str, Knob] = {}
        self.children: List[Node] = []
        defaults = dict(COMMON_KNOBS)
        defaults.update(NODE_KNOBS[cls])
        for key, value in defaults.items():
            self._attach(Knob(key, None, value))
        self._knobs["name"]._value = name
        if cls in ("Roto", "RotoPaint"):
            self._attach(CurvesKnob([]))
        self.format_size: Optional[Tuple[int, int]] = None  # a Read's file format; None: root format
        self.has_alpha = False  # a Read whose files carry an alpha channel

    def _attach(self, knob: Knob) -> None:
        knob.node = self
        self._knobs[knob.name()] = knob

    def _check_attached(self) -> None:
        # A Python node object outlives its node: once deleted, any use raises this ValueError
        # (the error public Nuke tools guard for: "A PythonObject is not attached to a node").
        if getattr(self, "deleted", False):
            raise ValueError("A PythonObject is not attached to a node")

    def Class(self) -> str:
        self._check_attached()
        return self._class

    def name(self) -> str:
        self._check_attached()
        return self._knobs["name"].value()

    def fullName(self) -> str:
        self._check_attached()
        if self._parent is None or self._parent is self.fake.root_node:
            return self.name()
        return self._parent.fullName() + "." + self.name()

    def __getitem__(self, key: str) -> Knob:
        self._check_attached()
        try:
            return self._knobs[key]
        except KeyError:
            raise FakeNukeError(f"fake nuke: {self._class} node {self.name()!r} has no knob {key!r}") from None

    def knob(self, key: str) -> Optional[Knob]:
        return self._knobs.get(key)

    def knobs(self) -> Dict[str, Knob]:
        return dict(self._knobs)

    def addKnob(self, knob: Knob) -> None:
        self.fake.check_main_thread("addKnob")
        if not isinstance(knob, Knob):
            raise TypeError("addKnob needs a knob")
        self._attach(knob)

    def setInput(self, index: int, node: Optional["Node"]) -> bool:
        self.fake.check_main_thread(f"{self.name()}.setInput")
        self._inputs[int(index)] = node
        return True

    def input(self, index: int) -> Optional["Node"]:
        if self._class == "Group":  # a group's input i is what feeds its i-th Input node
            return self._inputs.get(index)
        return self._inputs.get(index)

    def inputs(self) -> int:
        return max(self._inputs) + 1 if self._inputs else 0

    def format(self) -> "Format":
        """API ref nuke.Node.format: a Read has its file's format; others take input 0's (or the root's)."""
        if self._class == "Read":
            return Format(*(self.format_size or ROOT_FORMAT))
        if self._class == "Input" and self._parent is not None:
            outer = self._parent.input(int(self["number"].value()))
            return outer.format() if outer is not None else Format(*ROOT_FORMAT)
        upstream = self.input(0)
        return upstream.format() if upstream is not None else Format(*ROOT_FORMAT)

    def channels(self) -> List[str]:
        """API ref nuke.Node.channels: the channels this node outputs."""
        return sorted(self.fake.render(self, int(self.fake.root_node["first_frame"].value()))["channels"])

    def frame_offset(self) -> int:
        """Timeline frame minus file frame for a Read (its ``frame_mode``/``frame`` knobs)."""
        mode, text = self["frame_mode"].value(), str(self["frame"].value()).strip()
        if mode == "expression":
            if text not in ("", "frame"):
                raise FakeNukeError(f"fake nuke: Read frame expression {text!r} is not modelled")
            return 0
        if mode == "start at":
            return int(text or 0) - int(self["first"].value())
        return int(text or 0)  # offset

    def firstFrame(self) -> int:
        """API ref nuke.Node.firstFrame: a Read's first frame on the timeline (its offset applied)."""
        if self._class == "Read":
            return int(self["first"].value()) + self.frame_offset()
        return int(self.fake.root_node["first_frame"].value())

    def lastFrame(self) -> int:
        if self._class == "Read":
            return int(self["last"].value()) + self.frame_offset()
        return int(self.fake.root_node["last_frame"].value())

    # API ref nuke.Group: ``with group:`` is ``group.begin()`` ... ``group.end()``.
    def __enter__(self) -> "Node":
        return self.begin()

    def __exit__(self, *exc: Any) -> None:
        self.end()

    def showControlPanel(self, forceFloat: bool = False) -> None:
        """API ref nuke.Node.showControlPanel: records the knobs the panel opened with."""
        self.fake.calls.append(("panel", self.name(), sorted(self._knobs)))

    # Group API
    def _need_group(self, what: str) -> None:
        if self._class not in ("Group", "Root"):
            raise FakeNukeError(f"fake nuke: {self._class} has no {what}()")

    def begin(self) -> "Node":
        self._need_group("begin")
        self.fake.group_stack.append(self)
        return self

    def end(self) -> None:
        self._need_group("end")
        if not self.fake.group_stack or self.fake.group_stack[-1] is not self:
            raise RuntimeError(f"fake nuke: end() on {self.name()} without a matching begin()")
        self.fake.group_stack.pop()

    def node(self, name: str) -> Optional["Node"]:
        self._need_group("node")
        return next((n for n in self.children if n.name() == name), None)

    def nodes(self) -> List["Node"]:
        self._need_group("nodes")
        return list(self.children)

    def __repr__(self) -> str:
        return f"<fake {self._class} {self.fullName()}>"


class _NodeFactory:
    """``nuke.nodes.<Class>(name=..., **knobs)``: only known classes exist."""

    def __init__(self, fake: "FakeNuke") -> None:
        self._fake = fake

    def __getattr__(self, cls: str) -> Callable[..., Node]:
        if cls not in NODE_KNOBS or cls == "Root":
            raise FakeNukeError(f"fake nuke: unknown node class nuke.nodes.{cls}")

        def make(**knobs: Any) -> Node:
            return self._fake.create(cls, **knobs)

        return make


# --- rotopaint ---------------------------------------------------------------------------
# API ref nuke.rotopaint.Layer / Shape / Stroke: elements have a name, getVisible/setVisible
# (time, bool: "Set the value of the visible attribute at a particular time", so a set is a
# key saved with the script), getAttributes() (an AnimAttributes: getValue(time, name)), and a
# layer is a sequence (len, [i], remove(i), append). Lifetime attributes: 'ltt' the type
# (0 all frames, 2 single frame, 4 frame range; index in the Lifetime tab's menu), 'ltn' the
# from-frame, 'ltm' the to-frame (dev guide sample scripts; public tools set them this way).

LIFETIME_ALL, LIFETIME_SINGLE, LIFETIME_RANGE = 0, 2, 4


class AnimAttributes:
    def __init__(self, values: Optional[Dict[str, float]] = None) -> None:
        self._values: Dict[str, float] = {"ltt": 0.0, "ltn": 0.0, "ltm": 0.0}
        self._values.update(values or {})

    def getValue(self, time: float, name: str, view: Optional[str] = None) -> float:
        if name not in self._values:
            raise FakeNukeError(f"fake nuke: attribute {name!r} is not modelled")
        return float(self._values[name])

    def set(self, *args: Any) -> None:  # set(name, value) or set(time, name, value)
        name, value = args[-2], args[-1]
        self._values[str(name)] = float(value)


class _Element:
    kind = "element"

    def __init__(self, name: str) -> None:
        self.name = name
        self._vis: Dict[int, bool] = {}
        self.vis_calls: List[Any] = []
        self._attributes = AnimAttributes()

    def getVisible(self, time: float) -> bool:
        return self._vis.get(int(time), True)

    def setVisible(self, time: float, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError("setVisible: value must be a bool")
        self.vis_calls.append((time, value))
        self._vis[int(time)] = value

    def getAttributes(self) -> AnimAttributes:
        return self._attributes

    def lives_at(self, time: int) -> bool:
        kind = int(self._attributes.getValue(time, "ltt"))
        start, end = self._attributes.getValue(time, "ltn"), self._attributes.getValue(time, "ltm")
        if kind == LIFETIME_ALL:
            return True
        if kind == LIFETIME_SINGLE:
            return int(start) == int(time)
        if kind == LIFETIME_RANGE:
            return start <= time <= end
        raise FakeNukeError(f"fake nuke: lifetime type {kind} is not modelled")

    def _state(self) -> Dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "vis": {str(k): v for k, v in sorted(self._vis.items())},
                "attributes": dict(sorted(self._attributes._values.items()))}

    def serialise(self) -> str:
        return json.dumps(self._state(), sort_keys=True)


class RotoLayer(_Element):
    kind = "layer"

    def __init__(self, name: str, children: Optional[List[Any]] = None) -> None:
        super().__init__(name)
        self.children = list(children or [])

    def __iter__(self):
        return iter(list(self.children))

    def __len__(self) -> int:
        return len(self.children)

    def __getitem__(self, i: int) -> Any:
        return self.children[i]

    def remove(self, index: int) -> None:
        if not -len(self.children) <= index < len(self.children):
            raise IndexError("layer index out of range")
        del self.children[index]

    def append(self, element: Any) -> None:
        self.children.append(element)

    def _state(self) -> Dict[str, Any]:
        state = super()._state()
        state["children"] = [child._state() for child in self.children]
        return state


class AnimControlPoint:
    def __init__(self, keys: List[float]) -> None:
        self._keys = list(keys)

    def getControlPointKeyTimes(self) -> List[float]:
        return list(self._keys)


class ShapeControlPoint:
    def __init__(self, keys: List[float]) -> None:
        self.center = AnimControlPoint(keys)


class RotoShape(_Element):
    kind = "shape"

    def __init__(self, name: str, keys: List[float], points: int = 3,
                 bbox: Tuple[int, int, int, int] = (8, 8, 40, 30)) -> None:
        super().__init__(name)
        self.points = [ShapeControlPoint(keys) for _ in range(points)]
        self.bbox = tuple(bbox)  # pixels it covers, feather included (x, y, r, t)

    def __iter__(self):
        return iter(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> Any:
        return self.points[i]

    def _state(self) -> Dict[str, Any]:
        state = super()._state()
        state["keys"] = self.points[0].center.getControlPointKeyTimes() if self.points else []
        state["npoints"], state["bbox"] = len(self.points), list(self.bbox)
        return state


class RotoStroke(_Element):
    """A paint stroke: its points carry no animation keys; its lifetime places it in time."""

    kind = "stroke"

    def __init__(self, name: str, keys: Optional[List[float]] = None, lifetime: Tuple[int, int, int] = (0, 0, 0),
                 bbox: Tuple[int, int, int, int] = (8, 8, 40, 30)) -> None:
        super().__init__(name)
        self.points = [AnimControlPoint(list(keys or []))]
        self.bbox = tuple(bbox)
        self._attributes = AnimAttributes({"ltt": lifetime[0], "ltn": lifetime[1], "ltm": lifetime[2]})

    def __iter__(self):
        return iter(self.points)

    def __getitem__(self, i: int) -> Any:
        return self.points[i]

    def _state(self) -> Dict[str, Any]:
        state = super()._state()
        state["keys"], state["bbox"] = self.points[0].getControlPointKeyTimes(), list(self.bbox)
        return state


def _element_from_state(state: Dict[str, Any]) -> _Element:
    kind = state["kind"]
    if kind == "layer":
        element: _Element = RotoLayer(state["name"], [_element_from_state(c) for c in state["children"]])
    elif kind == "shape":
        element = RotoShape(state["name"], state["keys"], state["npoints"], tuple(state["bbox"]))
    else:
        element = RotoStroke(state["name"], state["keys"], bbox=tuple(state["bbox"]))
    element._vis = {int(k): v for k, v in state["vis"].items()}
    element._attributes = AnimAttributes(state["attributes"])
    return element


class CurvesKnob(Knob):
    """A Roto's ``curves`` knob. It renders from a cache of the tree that it refreshes when it is set
    from a script or told through ``changed()`` (API ref nuke.rotopaint.CurveKnob.changed: "Call
    this after performing updates on the tree, to tell it that it's been updated. For many
    operations this is called automatically, but you can call it manually for those cases where
    it isn't."): edits through the element API alone render stale.
    """

    def __init__(self, layers: List[_Element]) -> None:
        super().__init__("curves", None, None)
        self.rootLayer = RotoLayer("Root", layers)
        self.changed_calls = 0
        self._cache = self._snapshot()

    def _snapshot(self) -> RotoLayer:
        return _element_from_state(self.rootLayer._state())  # type: ignore[return-value]

    def changed(self) -> None:
        self.changed_calls += 1
        self._cache = self._snapshot()

    def rendered_tree(self) -> RotoLayer:
        return self._cache

    def toScript(self) -> str:
        return json.dumps(self.rootLayer._state(), sort_keys=True)

    def fromScript(self, text: str) -> bool:
        if self.node is not None:
            self.node.fake.check_main_thread(f"{self.node.name()}['curves'].fromScript")
        self.rootLayer = _element_from_state(json.loads(text))  # type: ignore[assignment]
        self._cache = self._snapshot()
        return True

    def value(self) -> Any:
        raise FakeNukeError("fake nuke: read a curves knob through rootLayer, toScript() or toElement()")

    def setValue(self, value: Any) -> bool:
        raise FakeNukeError("fake nuke: a curves knob is set through fromScript() or the element API")


# --- misc API objects --------------------------------------------------------------------

class ProgressTask:
    """API ref nuke.ProgressTask has no close(): the task leaves Nuke's progress panel when the Python
    object is destroyed (Nuke 17.1's reference adds a ``kKeepWhenFinished`` flag to keep it
    past that point), so a task stays up for as long as anything holds a reference to it, a
    bound ``task.isCancelled`` included. `live` lists the tasks still alive (weak references);
    `records` keep what each task showed after it is gone.
    """

    records: List["_TaskRecord"] = []
    _alive: "weakref.WeakSet[ProgressTask]" = weakref.WeakSet()

    def __init__(self, title: str) -> None:
        self.record = _TaskRecord(title)
        ProgressTask.records.append(self.record)
        ProgressTask._alive.add(self)

    @property
    def title(self) -> str:
        return self.record.title

    def setProgress(self, percent: int) -> None:
        if not isinstance(percent, int):
            raise TypeError("setProgress takes an int")
        self.record.progress.append(percent)

    def setMessage(self, message: str) -> None:
        self.record.messages.append(message)

    def isCancelled(self) -> bool:
        return self.record.cancel_requested

    @classmethod
    def live(cls) -> List["ProgressTask"]:
        return list(cls._alive)


class _TaskRecord:
    def __init__(self, title: str) -> None:
        self.title = title
        self.progress: List[int] = []
        self.messages: List[str] = []
        self.cancel_requested = False


class Format:
    def __init__(self, width: int, height: int) -> None:
        self._w, self._h = int(width), int(height)

    def width(self) -> int:
        return self._w

    def height(self) -> int:
        return self._h


class Menu:
    def __init__(self, name: str) -> None:
        self._name = name
        self.items: Dict[str, Any] = {}

    def name(self) -> str:
        return self._name

    def addMenu(self, name: str, icon: str = "") -> "Menu":
        return self.items.setdefault(name, Menu(name))

    def addCommand(self, name: str, command: Any = None, shortcut: str = "", icon: str = "") -> None:
        self.items[name] = command

    def findItem(self, name: str) -> Any:
        return self.items.get(name)


# --- the module --------------------------------------------------------------------------

class FakeNuke(types.ModuleType):
    """The ``nuke`` module stand-in; attributes not defined here raise FakeNukeError."""

    def __init__(self) -> None:
        super().__init__("nuke")
        self.main_thread = threading.get_ident()
        self.root_node = Node(self, "Root", "root", None)
        self.group_stack: List[Node] = []
        self.selected: List[Node] = []
        self.calls: List[Any] = []
        self.main_queue: List[Any] = []
        self.queue_lock = threading.Lock()
        self.declared_layers: Dict[str, List[str]] = {}
        self.renderer: Optional[Callable[[Node, int], None]] = None
        self.menus: Dict[str, Menu] = {}
        self.nodes = _NodeFactory(self)
        self.GUI = True  # API ref nuke.GUI: True when Nuke runs with its interface
        self.ProgressTask = ProgressTask
        self.views_list: List[str] = ["main"]
        ProgressTask.records = []
        ProgressTask._alive = weakref.WeakSet()
        for cls in (Tab_Knob, File_Knob, String_Knob, Text_Knob, Boolean_Knob, Int_Knob, Enumeration_Knob,
                    PyScript_Knob):
            setattr(self, cls.__name__, cls)
        fake = self

        class Layer:  # nuke.Layer(name, channels) declares a layer
            def __init__(self, name: str, channels: List[str]) -> None:
                if any(not c.startswith(name + ".") for c in channels):
                    raise ValueError(f"channels {channels} do not belong to layer {name}")
                fake.check_main_thread("nuke.Layer")
                fake.declared_layers[name] = list(channels)
                self._name, self._channels = name, list(channels)

            def name(self) -> str:
                return self._name

            def channels(self) -> List[str]:
                return list(self._channels)

        self.Layer = Layer
        rp = types.ModuleType("nuke.rotopaint")
        rp.Layer, rp.Shape, rp.Stroke = RotoLayer, RotoShape, RotoStroke
        rp.CurveKnob = CurvesKnob
        self.rotopaint = rp

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise FakeNukeError(f"fake nuke: no attribute nuke.{name} (not a Nuke API the fake knows)")

    # helpers for tests
    def check_main_thread(self, what: str) -> None:
        if threading.get_ident() != self.main_thread:
            raise RuntimeError(f"fake nuke: {what} called off the main thread")

    def create(self, cls: str, **knobs: Any) -> Node:
        self.check_main_thread(f"nuke.nodes.{cls}")
        parent = self.group_stack[-1] if self.group_stack else self.root_node
        name = knobs.pop("name", None) or self._auto_name(parent, cls)
        node = Node(self, cls, name, parent)
        if cls == "Input":  # Nuke numbers a group's Inputs in the order they are made
            node._knobs["number"]._value = sum(1 for n in parent.children if n.Class() == "Input")
        for key, value in knobs.items():
            node[key].setValue(value)
        parent.children.append(node)
        self.calls.append(("create", cls, name))
        return node

    def _auto_name(self, parent: Node, cls: str) -> str:
        i = 1
        while any(n.name() == f"{cls}{i}" for n in parent.children):
            i += 1
        return f"{cls}{i}"

    # --- the symbolic compositor (what a render would hold) --------------------------------

    def render(self, node: Node, frame: int) -> Dict[str, Any]:
        """What ``node`` outputs at timeline ``frame``: ``{"channels": {name: frozenset}, "bbox": (x, y, r, t),
        "format": (w, h)}``; a channel's set names what was drawn into it (shape names, ``plate@<file
        frame>``). Node classes without a rule here raise."""
        cls = node.Class()
        fmt = node.format()
        full = (0, 0, fmt.width(), fmt.height())
        if cls == "Read":
            drawn = frozenset([f"plate@{frame - node.frame_offset()}"])
            names = ["rgba.red", "rgba.green", "rgba.blue"] + (["rgba.alpha"] if node.has_alpha else [])
            return {"channels": {c: drawn for c in names}, "bbox": full, "format": (fmt.width(), fmt.height())}
        if cls in ("Dot", "Write", "Output"):
            return self._render_input(node, 0, frame)
        if cls == "Input":
            outer = node._parent.input(int(node["number"].value())) if node._parent is not None else None
            return self.render(outer, frame) if outer is not None else _empty(fmt)
        if cls == "Remove":
            image = self._render_input(node, 0, frame)
            which = str(node["channels"].value())
            keep = node["operation"].value() == "keep"
            listed = [c for c in image["channels"] if which == "all" or _in_set(c, which)]
            channels = {c: v for c, v in image["channels"].items() if (c in listed) == keep}
            return dict(image, channels=channels)
        if cls == "Crop":
            image = self._render_input(node, 0, frame)
            box = node["box"].value() or (0, 0) + ROOT_FORMAT  # a Crop left alone crops to the root format
            x, y, r, t = image["bbox"]
            return dict(image, bbox=(max(x, box[0]), max(y, box[1]), min(r, box[2]), min(t, box[3])))
        if cls == "Copy":
            b, a = self._render_input(node, 0, frame), self._render_input(node, 1, frame)
            channels = dict(b["channels"])
            for i in range(4):
                src, dst = node[f"from{i}"].value(), node[f"to{i}"].value()
                if src != "none" and dst != "none":
                    channels[dst] = a["channels"].get(src, frozenset())
            return dict(b, channels=channels, bbox=_union(a["bbox"], b["bbox"]))
        if cls in ("Roto", "RotoPaint"):
            bg = self._render_input(node, 0, frame)
            drawn, bbox = [], bg["bbox"] if node.input(0) is not None else None
            for element in _leaves(node["curves"].rendered_tree(), frame):
                drawn.append(element.name)
                bbox = element.bbox if bbox is None else _union(bbox, element.bbox)
            channels = dict(bg["channels"])
            for channel in _channels_of(str(node["output"].value())):
                channels[channel] = channels.get(channel, frozenset()) | frozenset(drawn)
            return dict(bg, channels=channels, bbox=bbox or (0, 0, 0, 0))
        raise FakeNukeError(f"fake nuke: render of a {cls} node is not modelled")

    def _render_input(self, node: Node, index: int, frame: int) -> Dict[str, Any]:
        upstream = node.input(index)
        return self.render(upstream, frame) if upstream is not None else _empty(node.format())

    def pump(self, until: Callable[[], bool], timeout: float = 60.0) -> None:
        """Run queued main-thread calls (as Nuke's event loop would) until ``until()`` or timeout."""
        end = time.time() + timeout
        while True:
            with self.queue_lock:
                batch, self.main_queue = self.main_queue, []
            for fn, args, kwargs in batch:
                fn(*args, **kwargs)
            if until():
                return
            if time.time() > end:
                raise TimeoutError("fake nuke: condition not reached while pumping the main thread")
            time.sleep(0.02)

    # nuke API
    def toNode(self, name: str) -> Optional[Node]:
        """API ref nuke.toNode: by name, looked up in the current group context (``with group:``)."""
        node = self.group_stack[-1] if self.group_stack else self.root_node
        for part in name.split("."):
            node = next((n for n in node.children if n.name() == part), None)
            if node is None:
                return None
        return node

    def createNode(self, node: str, knobs: str = "", inpanel: bool = True) -> Node:
        """API ref nuke.createNode(node, knobs, inpanel): as the artist would (knob defaults and user
        callbacks run, placed under and connected to the selection, panel opened when
        ``inpanel``); ``knobs`` is a TCL list of name/value pairs (plain words here)."""
        if node not in NODE_KNOBS or node == "Root":
            raise FakeNukeError(f"fake nuke: unknown node class {node!r}")
        words = knobs.split()
        if len(words) % 2:
            raise ValueError("createNode knobs: a TCL list of name value pairs")
        values = dict(zip(words[::2], words[1::2]))
        created = self.create(node, name=values.pop("name", None))
        for key, value in values.items():
            created[key].fromScript(json.dumps(value))
        if self.selected:
            below = self.selected[-1]
            created["xpos"]._value = below["xpos"].value()
            created["ypos"]._value = below["ypos"].value() + 60
            created._inputs[0] = below
        self.calls.append(("createNode", node, created.name(), bool(inpanel)))
        if inpanel:
            created.showControlPanel()
        return created

    def selectedNodes(self) -> List[Node]:
        return list(self.selected)

    def allNodes(self, filter: Optional[str] = None) -> List[Node]:
        group = self.group_stack[-1] if self.group_stack else self.root_node
        return [n for n in group.children if filter is None or n.Class() == filter]

    def delete(self, node: Node) -> None:
        self.check_main_thread("nuke.delete")
        parent = node._parent
        if parent is None or node not in parent.children:
            raise ValueError(f"fake nuke: delete of a node that is not in the graph: {node!r}")
        parent.children.remove(node)
        self.calls.append(("delete", node.Class(), node.name()))
        stack = [node]
        while stack:
            gone = stack.pop()
            gone.deleted = True
            stack.extend(gone.children)

    def execute(self, node: Node, start: int, end: int, incr: int = 1, views: Optional[List[str]] = None,
                continueOnError: bool = False) -> None:
        """API ref nuke.execute: ``views`` "Default is None, meaning all views": in a multi-view
        script one call renders every view (recorded here as the list of views rendered)."""
        self.check_main_thread("nuke.execute")
        if node.Class() != "Write":
            raise RuntimeError(f"fake nuke: cannot execute a {node.Class()} node")
        if not all(isinstance(v, int) for v in (start, end, incr)):
            raise TypeError("nuke.execute frame numbers must be int")
        rendered = list(self.views_list) if views is None else list(views)
        unknown = [v for v in rendered if v not in self.views_list]
        if unknown:
            raise ValueError(f"fake nuke: no view {unknown[0]!r} in this script")
        for frame in range(start, end + 1, incr):
            path = node["file"].getEvaluatedValue()
            self.calls.append(("execute", node.name(), frame, path, rendered))
            if self.renderer is not None:
                self.renderer(node, frame)
            _write_output(path)


    def executeInMainThread(self, call: Callable[..., Any], args: Any = (), kwargs: Optional[Dict] = None) -> None:
        """Queue ``call`` for `pump`. dev guide "Threading": "Do not run the above functions from
        within the main thread or NUKE will hang" -- the fake raises there instead of hanging."""
        if threading.get_ident() == self.main_thread:
            raise RuntimeError("fake nuke: executeInMainThread called from the main thread (Nuke would hang)")
        if not isinstance(args, tuple):
            args = (args,)
        with self.queue_lock:
            self.main_queue.append((call, args, kwargs or {}))

    def views(self) -> List[str]:
        return list(self.views_list)

    def layers(self, node: Optional[Node] = None) -> List[str]:
        return ["rgba", "rgb", "alpha", "depth", "forward", "backward", "motion", "mask"] + list(self.declared_layers)

    def filename(self, node: Node, replace: Optional[int] = None) -> Optional[str]:
        """API ref nuke.filename: the current filename "based on the root.proxy settings and which of
        the fullsize/proxy filenames are filled in. All expansion of commands and variables is done."""
        knob = "file"
        if self.root_node["proxy"].value() and node.knob("proxy") is not None and node["proxy"].value():
            knob = "proxy"
        return node[knob].getEvaluatedValue() or None

    def evaluate_tcl(self, text: str) -> str:
        """The few TCL forms the fake evaluates (see `Knob.getEvaluatedValue`)."""
        def command(match: "re.Match[str]") -> str:
            words = match.group(1).split()
            if len(words) == 2 and words[0] == "value":
                node_name, _, knob = words[1].rpartition(".")
                node = self.root_node if node_name == "root" else self.toNode(node_name)
                if node is None:
                    raise RuntimeError(f"fake nuke: [value {words[1]}]: no such node")
                return str(node[knob].value())
            if len(words) == 2 and words[0] == "getenv":
                return os.environ.get(words[1], "")
            raise FakeNukeError(f"fake nuke: TCL [{match.group(1)}] is not modelled")

        text = re.sub(r"\$env\((\w+)\)", lambda m: os.environ.get(m.group(1), ""), text)
        return re.sub(r"\[([^\[\]]*)\]", command, text)

    def root(self) -> Node:
        return self.root_node

    def menu(self, name: str) -> Menu:
        return self.menus.setdefault(name, Menu(name))

    def toolbar(self, name: str) -> Menu:
        return self.menu(name)

    def message(self, text: str) -> None:
        self.calls.append(("message", text))


def _write_output(path: str) -> None:
    """A Write always leaves its file: an empty one stands in when no renderer wrote pixels."""
    folder, name = os.path.split(path)
    if name and not re.search(r"#|%0?\d*d", name) and os.path.isdir(folder or ".") and not os.path.exists(path):
        open(path, "wb").close()


def install() -> FakeNuke:
    """Put a fresh fake into ``sys.modules`` (as ``nuke`` and ``nuke.rotopaint``) and return it."""
    fake = FakeNuke()
    sys.modules["nuke"] = fake
    sys.modules["nuke.rotopaint"] = fake.rotopaint
    return fake


def uninstall() -> None:
    for name in ("nuke", "nuke.rotopaint"):
        sys.modules.pop(name, None)
    package = sys.modules.get("nuke_smite")
    for name in ("node", "render_refs"):  # modules bound to this fake: the next test imports them afresh
        sys.modules.pop("nuke_smite." + name, None)
        if package is not None and hasattr(package, name):
            delattr(package, name)


def make_roto(fake: FakeNuke, layers: List[RotoLayer], name: str = "Roto1", cls: str = "Roto") -> Node:
    """A Roto node whose ``curves`` knob holds ``layers`` at top level."""
    roto = fake.create(cls, name=name)
    roto._attach(CurvesKnob(layers))
    return roto


def _empty(fmt: "Format") -> Dict[str, Any]:
    return {"channels": {}, "bbox": (0, 0, fmt.width(), fmt.height()), "format": (fmt.width(), fmt.height())}


def _union(a: Tuple[int, ...], b: Tuple[int, ...]) -> Tuple[int, int, int, int]:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


_CHANNEL_SETS = {"alpha": ["rgba.alpha"], "rgb": ["rgba.red", "rgba.green", "rgba.blue"],
                 "rgba": ["rgba.red", "rgba.green", "rgba.blue", "rgba.alpha"]}


def _channels_of(value: str) -> List[str]:
    """Channels of a channel-set knob value: ``alpha``, ``rgb``, ``rgba``, ``<layer>.<chan>`` or ``<layer>``."""
    if value in _CHANNEL_SETS:
        return list(_CHANNEL_SETS[value])
    if "." in value:
        return [value]
    if value == "none":
        return []
    return [f"{value}.a"]  # a one-channel custom layer


def _in_set(channel: str, value: str) -> bool:
    return channel in _channels_of(value)


def _leaves(layer: RotoLayer, frame: int) -> List[_Element]:
    """Shapes and strokes a Roto draws at ``frame``: visible themselves and in every enclosing layer, and alive."""
    out: List[_Element] = []
    for element in layer:
        if not element.getVisible(frame) or not element.lives_at(frame):
            continue
        if isinstance(element, RotoLayer):
            out.extend(_leaves(element, frame))
        else:
            out.append(element)
    return out
