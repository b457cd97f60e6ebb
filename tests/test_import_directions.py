"""Import directions (issue 10): hosts reach the core only through its host API (loaded, not imported); hostapi imports
nothing else of smite; the method never imports io or cli. Read from the source (ast), not by importing."""

from __future__ import annotations

import ast
import os
from typing import Iterator, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = os.path.join(ROOT, "core", "smite")


def _sources(folder: str) -> Iterator[str]:
    for base, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(base, name)


def _imports(path: str, package: str) -> Iterator[Tuple[str, int]]:
    """Absolute module names ``path`` imports (relative imports resolved against ``package``)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield base, node.lineno
            for alias in node.names:  # "from .. import io" names a module too
                yield f"{base}.{alias.name}", node.lineno


def _package(path: str) -> str:
    rel = os.path.relpath(os.path.dirname(path), os.path.join(ROOT, "core"))
    return rel.replace(os.sep, ".")


def test_hosts_import_nothing_of_the_core_and_share_one_loader():
    """Both hosts load the core's host API through blender_smite.hostlink (a private package name), so
    neither imports ``smite``; Nuke takes only that loader from the add-on package."""
    bad = []
    for host in ("nuke_smite", "blender_smite"):
        for path in _sources(os.path.join(ROOT, host)):
            pkg = os.path.relpath(os.path.dirname(path), ROOT).replace(os.sep, ".")
            for name, line in _imports(path, pkg):
                top = name.split(".")[0]
                if top == "smite" or (host == "nuke_smite" and top == "blender_smite"
                                      and name not in ("blender_smite", "blender_smite.hostlink")):
                    bad.append(f"{path}:{line} imports {name}")
    assert not bad, bad


def test_hostapi_imports_nothing_else_of_smite():
    bad = []
    for path in _sources(os.path.join(CORE, "hostapi")):
        for name, line in _imports(path, _package(path)):
            if name.split(".")[0] == "smite" and not name.startswith("smite.hostapi"):
                bad.append(f"{path}:{line} imports {name}")
    assert not bad, bad


def test_method_never_imports_io_or_cli():
    bad = set()
    for path in _sources(os.path.join(CORE, "method")):
        for name, _ in _imports(path, _package(path)):
            if name.startswith(("smite.io", "smite.cli")):
                bad.add((os.path.relpath(path, os.path.join(CORE, "method")), ".".join(name.split(".")[:3])))
    assert not bad, bad


def test_the_walk_sees_relative_imports():
    """The walk resolves ``from ..hostapi.names import PART_NAME`` in smite/io/matte.py (so it can fail)."""
    names = {n for n, _ in _imports(os.path.join(CORE, "io", "matte.py"), "smite.io")}
    assert "smite.hostapi.names" in names
