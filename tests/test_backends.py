"""The backend table and contract (issue 10): names, classes, defaults, and a light import of the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from smite.backends import BACKEND_NAMES, backend_class, make_backend
from smite.backends.base import BackendBase
from smite.config import Settings
from smite.errors import BadInputError

CORE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core")


def test_every_table_entry_is_a_backend_of_that_name():
    pytest.importorskip("diffusers")
    for name in BACKEND_NAMES:
        cls = backend_class(name)
        assert issubclass(cls, BackendBase) and cls.name == name
    with pytest.raises(BadInputError, match="unknown backend 'sam'; known: propagate, diffusion"):
        backend_class("sam")


def test_the_declared_defaults_and_progress_passed_in():
    calls = []
    backend = make_backend(Settings(), progress=lambda *args: calls.append(args))
    assert backend.name == "propagate" and backend.model_hash == ""
    assert backend.first_needed(1017) == 1017 and backend.shrink_settings(backend.settings) is None
    backend.report("flow", 1, 2, "optical flow")
    assert calls == [("flow", 1, 2, "optical flow")]


def test_reading_the_table_and_settings_imports_no_backend():
    code = ("import json, sys; import smite.config, smite.backends; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'cv2', 'diffusers') "
            "or m in ('smite.backends.base', 'smite.backends.propagate', 'smite.backends.diffusion'))))")
    env = {**os.environ, "PYTHONPATH": CORE}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert json.loads(out) == []

