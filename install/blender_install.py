#!/usr/bin/env python3
"""Build the Blender extension zip and install it into a Blender extensions folder (stdlib only).

    python install/blender_install.py                       # build dist/blender_smite.zip only
    python install/blender_install.py --into DIR            # also unpack it into DIR/blender_smite
    python install/blender_install.py --into DIR --uninstall

DIR is a Blender extensions repository folder, e.g. ``~/.config/blender/4.2/extensions/user_default``
(Linux), ``~/Library/Application Support/Blender/4.2/extensions/user_default`` (macOS) or
``%APPDATA%\\Blender Foundation\\Blender\\4.2\\extensions\\user_default`` (Windows); enable the add-on
afterwards in Preferences > Add-ons (or install the zip with "Install from Disk" instead of --into).
The zip carries ``core_location.json`` pointing at this checkout's ``core/`` and its ``.venv``
Python, so the add-on finds the core without settings. Every change is printed; --uninstall
removes exactly the folder this script installs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's add-on package: its record name and the one host loader
from blender_smite import corelink, hostlink  # noqa: E402  (stdlib only, no bpy)

LOCATION_FILE = corelink.LOCATION_FILE  # read by blender_smite.corelink
PACKAGE = "blender_smite"
SKIP_DIRS = {"__pycache__"}
SKIP_EXT = (".pyc", ".pyo")


def default_python() -> str:
    """This checkout's ``.venv`` interpreter, by the hosts' one rule (`smite.hostapi.locate.venv_python`)."""
    locate = hostlink.module("locate", lambda: os.path.join(ROOT, "core"))
    return locate.venv_python(os.path.join(ROOT, ".venv"))


def package_files(src: str) -> list:
    """(path on disk, name in zip) for the add-on's files, sorted, without caches."""
    out = []
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if name.endswith(SKIP_EXT) or name == LOCATION_FILE:
                continue
            path = os.path.join(folder, name)
            out.append((path, os.path.relpath(path, src).replace(os.sep, "/")))
    return out


def build_zip(out: str, core: str, python: str, src: str = os.path.join(ROOT, PACKAGE)) -> str:
    """Write the extension zip (manifest at the zip root, as Blender expects) and return its path."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, name in package_files(src):
            zf.write(path, name)
        zf.writestr(LOCATION_FILE, json.dumps({"core": core, "python": python}, indent=1) + "\n")
    os.replace(tmp, out)
    return out


def install(zip_path: str, into: str) -> str:
    """Unpack the zip into ``into/blender_smite`` (replacing an earlier install); returns that folder."""
    target = os.path.join(into, PACKAGE)
    if os.path.isdir(target):
        shutil.rmtree(target)
        print(f"removed previous install {target}")
    os.makedirs(target)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(target)
    print(f"installed {zip_path} -> {target}")
    return target


def uninstall(into: str) -> bool:
    target = os.path.join(into, PACKAGE)
    if not os.path.isfile(os.path.join(target, "blender_manifest.toml")):
        print(f"nothing to remove: {target} is not a SMITE install")
        return False
    shutil.rmtree(target)
    print(f"removed {target}")
    return True


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--into", help="Blender extensions repository folder to install into")
    parser.add_argument("--uninstall", action="store_true", help="remove what --into installed")
    parser.add_argument("--zip", default=os.path.join(ROOT, "dist", PACKAGE + ".zip"), help="zip to write")
    parser.add_argument("--core", default=os.path.join(ROOT, "core"), help="SMITE core folder to record")
    parser.add_argument("--python", default=default_python(), help="core Python to record")
    args = parser.parse_args(argv)
    if args.uninstall:
        if not args.into:
            parser.error("--uninstall needs --into")
        uninstall(os.path.abspath(args.into))
        return 0
    if not os.path.isfile(os.path.join(args.core, "smite", "hostapi", "client.py")):
        print(f"blender_install: no SMITE core at {args.core}", file=sys.stderr)
        return 2
    if not os.path.isfile(args.python):
        print(f"blender_install: warning: {args.python} does not exist yet (run install/setup.sh)", file=sys.stderr)
    zip_path = build_zip(os.path.abspath(args.zip), os.path.abspath(args.core), os.path.abspath(args.python))
    print(f"wrote {zip_path} (core {os.path.abspath(args.core)}, python {os.path.abspath(args.python)})")
    if args.into:
        install(zip_path, os.path.abspath(args.into))
    return 0


if __name__ == "__main__":
    sys.exit(main())
