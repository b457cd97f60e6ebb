"""A small fake of Nuke's Python API: records calls and raises on anything it does not know.

Only what `nuke_smite` uses (and a few neighbours) exists here, with Nuke's names and call
shapes; any other module attribute, node class or knob name raises, so a typo in a ``nuke``
call fails a test instead of passing silently. Graph edits (node creation, inputs, knob
values, deletion) raise off the thread that installed the fake, standing in for Nuke's rule
that only the main thread touches the graph; ``executeInMainThread`` queues calls that the
test runs with `FakeNuke.pump`.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from typing import Any, Callable, Dict, List, Optional

COMMON_KNOBS = {"name": "", "label": "", "xpos": 0, "ypos": 0, "disable": False}
NODE_KNOBS: Dict[str, Dict[str, Any]] = {
    "Read": {"file": "", "first": 1, "last": 1, "origfirst": 1, "origlast": 1, "before": "hold", "after": "hold",
             "colorspace": "default (sRGB)", "raw": False, "on_error": "error", "reload": None},
    "Write": {"file": "", "file_type": "", "channels": "rgb", "raw": False, "colorspace": "default",
              "create_directories": False},
    "Copy": {"from0": "rgba.alpha", "to0": "rgba.alpha", "from1": "none", "to1": "none",
             "from2": "none", "to2": "none", "from3": "none", "to3": "none", "channels": "none"},
    "Input": {"number": 0},
    "Output": {},
    "Group": {},
    "Roto": {"curves": None, "output": "alpha"},
    "RotoPaint": {"curves": None, "output": "alpha"},
    "Grade": {"white": 1.0},
    "Root": {"name": "", "first_frame": 1, "last_frame": 100},
}
ENUM_VALUES = {("Read", "on_error"): ("error", "black", "checkerboard", "nearest frame")}


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

    def _attach(self, knob: Knob) -> None:
        knob.node = self
        self._knobs[knob.name()] = knob

    def Class(self) -> str:
        return self._class

    def name(self) -> str:
        return self._knobs["name"].value()

    def fullName(self) -> str:
        if self._parent is None or self._parent is self.fake.root_node:
            return self.name()
        return self._parent.fullName() + "." + self.name()

    def __getitem__(self, key: str) -> Knob:
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

class _Element:
    def __init__(self, name: str) -> None:
        self.name = name
        self._vis: Dict[int, bool] = {}
        self.vis_calls: List[Any] = []

    def getVisible(self, time: float) -> bool:
        return self._vis.get(int(time), True)

    def setVisible(self, time: float, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError("setVisible: value must be a bool")
        self.vis_calls.append((time, value))
        self._vis[int(time)] = value


class RotoLayer(_Element):
    def __init__(self, name: str, children: Optional[List[Any]] = None) -> None:
        super().__init__(name)
        self.children = list(children or [])

    def __iter__(self):
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)

    def __getitem__(self, i: int) -> Any:
        return self.children[i]


class AnimControlPoint:
    def __init__(self, keys: List[float]) -> None:
        self._keys = list(keys)

    def getControlPointKeyTimes(self) -> List[float]:
        return list(self._keys)


class ShapeControlPoint:
    def __init__(self, keys: List[float]) -> None:
        self.center = AnimControlPoint(keys)


class RotoShape(_Element):
    def __init__(self, name: str, keys: List[float], points: int = 3) -> None:
        super().__init__(name)
        self.points = [ShapeControlPoint(keys) for _ in range(points)]

    def __iter__(self):
        return iter(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> Any:
        return self.points[i]


class RotoStroke(_Element):
    def __init__(self, name: str, keys: List[float]) -> None:
        super().__init__(name)
        self.points = [AnimControlPoint(keys)]

    def __iter__(self):
        return iter(self.points)


class CurvesKnob(Knob):
    def __init__(self, layers: List[RotoLayer]) -> None:
        super().__init__("curves", None, None)
        self.rootLayer = RotoLayer("Root", layers)


# --- misc API objects --------------------------------------------------------------------

class ProgressTask:
    instances: List["ProgressTask"] = []

    def __init__(self, title: str) -> None:
        self.title = title
        self.progress: List[int] = []
        self.messages: List[str] = []
        self.cancel_requested = False
        ProgressTask.instances.append(self)

    def setProgress(self, percent: int) -> None:
        if not isinstance(percent, int):
            raise TypeError("setProgress takes an int")
        self.progress.append(percent)

    def setMessage(self, message: str) -> None:
        self.messages.append(message)

    def isCancelled(self) -> bool:
        return self.cancel_requested


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
        self.ProgressTask = ProgressTask
        ProgressTask.instances = []
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
        node = self.root_node
        for part in name.split("."):
            node = next((n for n in node.children if n.name() == part), None)
            if node is None:
                return None
        return node

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

    def execute(self, node: Node, start: int, end: int, incr: int = 1) -> None:
        self.check_main_thread("nuke.execute")
        if node.Class() != "Write":
            raise RuntimeError(f"fake nuke: cannot execute a {node.Class()} node")
        if not all(isinstance(v, int) for v in (start, end, incr)):
            raise TypeError("nuke.execute frame numbers must be int")
        for frame in range(start, end + 1, incr):
            self.calls.append(("execute", node.name(), frame, node["file"].value()))
            if self.renderer is not None:
                self.renderer(node, frame)

    def executeInMainThread(self, call: Callable[..., Any], args: Any = (), kwargs: Optional[Dict] = None) -> None:
        if not isinstance(args, tuple):
            args = (args,)
        with self.queue_lock:
            self.main_queue.append((call, args, kwargs or {}))

    def layers(self, node: Optional[Node] = None) -> List[str]:
        return ["rgba", "rgb", "alpha", "depth", "forward", "backward", "motion", "mask"] + list(self.declared_layers)

    def filename(self, node: Node, replace: Optional[int] = None) -> str:
        return node["file"].value()

    def root(self) -> Node:
        return self.root_node

    def menu(self, name: str) -> Menu:
        return self.menus.setdefault(name, Menu(name))

    def toolbar(self, name: str) -> Menu:
        return self.menu(name)

    def message(self, text: str) -> None:
        self.calls.append(("message", text))


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
    knob = CurvesKnob(layers)
    roto._attach(knob)
    return roto
