"""Shared fixtures: the bundled sample shot and small manifests built from it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHAIR = REPO / "tests" / "data" / "chair"


def _shared_data() -> Path:
    """The evaluation clips (never copied into the repo): $SMITE_SHARED_DATA, ../shared/data or /work/shared/data."""
    for candidate in (os.environ.get("SMITE_SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return REPO.parent / "shared" / "data"  # absent: tests that need it skip


SHARED_DATA = _shared_data()


@pytest.fixture
def chair_dir() -> Path:
    return CHAIR


@pytest.fixture
def make_shot(tmp_path: Path):
    """Write a manifest for the bundled chair plate (edit any field through keyword arguments)."""

    def _make(**fields) -> Path:
        data = {
            "plate": str(CHAIR / "frames" / "%05d.jpg"),
            "frames": "0-7",
            "parts": ["chair"],
            "references": [{"frame": 0, "labels": str(CHAIR / "masks" / "00000.png")}],
        }
        data.update(fields)
        for key in [k for k, v in data.items() if v is None]:
            del data[key]
        path = tmp_path / "shot.json"
        path.write_text(json.dumps(data))
        return path

    return _make


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a test module: tiny networks on a busy 2-core machine run ~10x faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def unet():
    """A frozen tiny random SD UNet (text width 32, seed 0), one per test module."""
    from smite.model.backbone import tiny_unet

    net = tiny_unet(text_width=32, seed=0).eval()
    net.requires_grad_(False)
    return net
