"""install/nuke_install.py against a temporary HOME: adds a marked block, writes the config, undoes exactly that."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "install", "nuke_install.py")


def run(home, *args):
    env = {**os.environ, "HOME": str(home), "USERPROFILE": str(home)}
    proc = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_install_into_a_fresh_home_and_uninstall_leaves_nothing(tmp_path):
    out = run(tmp_path, "--python", sys.executable)
    nuke_dir = tmp_path / ".nuke"
    init_text = (nuke_dir / "init.py").read_text()
    assert "created" in out and str(nuke_dir / "init.py") in out
    assert os.path.join(REPO, "nuke_smite", "startup") in init_text
    config = json.loads((nuke_dir / "smite_nuke.json").read_text())
    assert config["python"] == os.path.abspath(sys.executable) and config["core"] == os.path.join(REPO, "core")
    compile(init_text, "init.py", "exec")  # the block is valid Python

    assert "nothing to change" in run(tmp_path, "--python", sys.executable)  # idempotent

    out = run(tmp_path, "--uninstall")
    assert "removed" in out
    assert os.listdir(nuke_dir) == []


def test_existing_init_py_is_restored_exactly(tmp_path):
    nuke_dir = tmp_path / "studio_nuke_path"
    nuke_dir.mkdir()
    original = "import nuke\nnuke.pluginAddPath('./gizmos')\n"
    (nuke_dir / "init.py").write_text(original)
    run(tmp_path, "--nuke-dir", str(nuke_dir), "--python", "/opt/smite/.venv/bin/python")
    text = (nuke_dir / "init.py").read_text()
    assert text.startswith(original) and text.count("SMITE Nuke plugin") == 2
    assert "does not exist yet" in run(tmp_path, "--nuke-dir", str(nuke_dir), "--python", "/other/python")
    assert text == (nuke_dir / "init.py").read_text()  # a re-install replaces the block, never stacks it
    assert json.loads((nuke_dir / "smite_nuke.json").read_text())["python"] == "/other/python"
    run(tmp_path, "--nuke-dir", str(nuke_dir), "--uninstall")
    assert (nuke_dir / "init.py").read_text() == original
    assert sorted(os.listdir(nuke_dir)) == ["init.py"]


def test_installed_block_points_the_node_at_the_config(tmp_path, monkeypatch):
    """Execute the installed block with a stand-in nuke and check the env it sets is what hostconfig reads."""
    import types

    run(tmp_path, "--python", "/venv/bin/python")
    added = []
    fake = types.ModuleType("nuke")
    fake.pluginAddPath = added.append
    monkeypatch.setitem(sys.modules, "nuke", fake)
    for name in ("SMITE_NUKE_CONFIG", "SMITE_NUKE_ROOT"):  # set-then-delete: teardown removes what exec sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    exec(compile((tmp_path / ".nuke" / "init.py").read_text(), "init.py", "exec"), {})
    assert added == [os.path.join(REPO, "nuke_smite", "startup")]
    sys.path.insert(0, REPO)
    from nuke_smite import hostconfig

    assert hostconfig.resolve_python("", environ=dict(os.environ)) == "/venv/bin/python"
    assert os.environ["SMITE_NUKE_ROOT"] == REPO
