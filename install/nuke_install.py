#!/usr/bin/env python3
"""Register the SMITE Nuke plugin: a marked block in ``<nuke dir>/init.py`` plus a small config.

    python3 install/nuke_install.py                       # ~/.nuke, core venv = <repo>/.venv
    python3 install/nuke_install.py --nuke-dir /studio/nuke_path --python /opt/smite/.venv/bin/python
    python3 install/nuke_install.py --uninstall           # removes exactly what was added

The block adds ``<repo>/nuke_smite/startup`` to Nuke's plugin path and says where the config
is; the config (``smite_nuke.json``) names the core venv's python and the core's source
folder. Standard library only; runs with any Python 3.8+ (Nuke's own included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

BEGIN = "# >>> SMITE Nuke plugin (install/nuke_install.py) >>>"
END = "# <<< SMITE Nuke plugin <<<"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # this checkout's plugin: its config name and the hosts' one venv rule
from blender_smite import hostlink  # noqa: E402  (stdlib only)
from nuke_smite.hostconfig import CONFIG_NAME  # noqa: E402  (stdlib only, no nuke)


def default_python(repo: str = REPO) -> str:
    """``<repo>/.venv``'s interpreter (`smite.hostapi.locate.venv_python`)."""
    locate = hostlink.module("locate", lambda: os.path.join(repo, "core"))
    return locate.venv_python(os.path.join(repo, ".venv"))


def block(nuke_dir: str, repo: str = REPO) -> str:
    """The text placed in init.py (json.dumps gives a valid Python string literal for any path)."""
    startup = os.path.join(repo, "nuke_smite", "startup")
    config = os.path.join(nuke_dir, CONFIG_NAME)
    return "\n".join([
        BEGIN,
        "import os as _smite_os",
        "import nuke as _smite_nuke",
        f"_smite_os.environ.setdefault('SMITE_NUKE_ROOT', {json.dumps(repo)})",
        f"_smite_os.environ.setdefault('SMITE_NUKE_CONFIG', {json.dumps(config)})",
        f"_smite_nuke.pluginAddPath({json.dumps(startup)})",
        END,
    ]) + "\n"


def strip_block(text: str) -> str:
    """``text`` without the marked block (and the blank line the installer put before it)."""
    start = text.find(BEGIN)
    if start < 0:
        return text
    stop = text.find(END, start)
    if stop < 0:
        raise SystemExit(f"nuke_install: found '{BEGIN}' without its end marker; fix init.py by hand")
    stop += len(END)
    if text[stop:stop + 1] == "\n":
        stop += 1
    head = text[:start]
    if head.endswith("\n\n"):
        head = head[:-1]
    return head + text[stop:]


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write(path: str, text: str) -> None:
    tmp = path + ".smite-tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def install(nuke_dir: str, python: str, repo: str = REPO) -> List[str]:
    """Add (or refresh) the block and write the config; returns one line per change."""
    changes = []
    os.makedirs(nuke_dir, exist_ok=True)
    init_path = os.path.join(nuke_dir, "init.py")
    config_path = os.path.join(nuke_dir, CONFIG_NAME)
    old = _read(init_path)
    previous = _read(config_path)
    created = old is None
    if previous is not None:  # a re-install keeps the first install's memory of who made init.py
        try:
            created = bool(json.loads(previous).get("created_init_py", created))
        except ValueError:
            pass
    base = strip_block(old or "")
    gap = ("\n" if base and not base.endswith("\n") else "") + ("\n" if base.strip() else "")
    new = base + gap + block(nuke_dir, repo)
    if new != old:
        _write(init_path, new)
        changes.append(f"{'created' if old is None else 'updated'} {init_path}: plugin path "
                       f"{os.path.join(repo, 'nuke_smite', 'startup')}")
    config = {"version": 1, "python": python, "core": os.path.join(repo, "core"),
              "written_by": "install/nuke_install.py", "created_init_py": created}
    text = json.dumps(config, indent=2) + "\n"
    if text != previous:
        _write(config_path, text)
        changes.append(f"wrote {config_path}: python {python}")
    if not os.path.isfile(python):
        changes.append(f"warning: {python} does not exist yet (run install/setup.sh)")
    return changes


def uninstall(nuke_dir: str) -> List[str]:
    """Remove the block and the config, and init.py itself if the installer created it and it is now empty."""
    changes = []
    init_path = os.path.join(nuke_dir, "init.py")
    config_path = os.path.join(nuke_dir, CONFIG_NAME)
    created = False
    config_text = _read(config_path)
    if config_text is not None:
        try:
            data = json.loads(config_text)
        except ValueError:
            data = {}
        if isinstance(data, dict) and data.get("written_by") == "install/nuke_install.py":
            created = bool(data.get("created_init_py"))
            os.remove(config_path)
            changes.append(f"removed {config_path}")
        else:
            changes.append(f"left {config_path} alone: not written by this installer")
    old = _read(init_path)
    if old is not None and BEGIN in old:
        new = strip_block(old)
        if created and not new.strip():
            os.remove(init_path)
            changes.append(f"removed {init_path} (the installer had created it)")
        else:
            _write(init_path, new)
            changes.append(f"removed the SMITE block from {init_path}")
    return changes


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Register (or remove) the SMITE Nuke plugin.")
    parser.add_argument("--nuke-dir", default=os.path.join(os.path.expanduser("~"), ".nuke"),
                        help="folder whose init.py Nuke runs: ~/.nuke (default) or a NUKE_PATH folder")
    parser.add_argument("--python", default=None, help="the core venv's python (default: <repo>/.venv)")
    parser.add_argument("--uninstall", action="store_true", help="remove what an earlier install added")
    args = parser.parse_args(argv)
    nuke_dir = os.path.abspath(os.path.expanduser(args.nuke_dir))
    if args.uninstall:
        changes = uninstall(nuke_dir)
    else:
        changes = install(nuke_dir, os.path.abspath(args.python or default_python()))
    for line in changes or ["nothing to change"]:
        print(f"nuke_install: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
