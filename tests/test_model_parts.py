"""Part model files and diffusion settings (model.parts, model.settings)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("safetensors")

from smite.errors import BadInputError, MissingModelError  # noqa: E402
from smite.model.parts import PartModel, load_part_model, save_part_model  # noqa: E402
from smite.model.settings import DIFFUSION_SETTINGS_VERSION, DiffusionSettings  # noqa: E402


def _model(**kw) -> PartModel:
    torch.manual_seed(0)
    base = dict(parts=("seat", "legs"), context=torch.randn(77, 32), backbone_hash="abc123",
                settings=DiffusionSettings(resolution=64).to_dict(),
                kv_deltas={"up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k": torch.randn(16, 32)})
    base.update(kw)
    return PartModel(**base)


def test_part_model_round_trip(tmp_path):
    model = _model()
    path = save_part_model(str(tmp_path / "p.smite"), model)
    back = load_part_model(path, backbone_hash="abc123")
    assert back.parts == model.parts and back.backbone_hash == "abc123" and back.version == 1
    torch.testing.assert_close(back.context, model.context)
    torch.testing.assert_close(back.vectors, model.context[1:3])
    assert back.kv_deltas.keys() == model.kv_deltas.keys()
    for name, delta in model.kv_deltas.items():
        torch.testing.assert_close(back.kv_deltas[name], delta)
    assert DiffusionSettings.from_dict(back.settings) == DiffusionSettings(resolution=64)
    assert [p.name for p in tmp_path.iterdir()] == ["p.smite"]  # no temp file left


def test_part_model_errors_are_clear(tmp_path):
    path = save_part_model(str(tmp_path / "p.smite"), _model())
    with pytest.raises(BadInputError, match="learned on backbone abc123 but the loaded model is zzz"):
        load_part_model(path, backbone_hash="zzz")
    with pytest.raises(MissingModelError, match="not found"):
        load_part_model(str(tmp_path / "missing.smite"))
    junk = tmp_path / "junk.smite"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(BadInputError, match="not a SMITE part model"):
        load_part_model(str(junk))
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(BadInputError, match="not a SMITE part model"):
        load_part_model(str(tmp_path / "other.safetensors"))


def test_settings_save_load_equal_and_validate():
    s = DiffusionSettings(resolution=256, lambda_track=2.0, inversion="ddim", kv_phase=False)
    data = json.loads(s.to_json())
    assert data["version"] == DIFFUSION_SETTINGS_VERSION == 3 and list(data) == sorted(data)
    assert DiffusionSettings.from_dict(data) == s
    assert DiffusionSettings.from_dict({"lambda_reg": 4}).lambda_reg == 4.0
    for bad in ({"resolution": 100}, {"inversion": "magic"}, {"overlap": 16}, {"aug_flip": 2.0},
                {"nope": 1}, {"kv_phase": 1}, {"window": "16"}, {"learn_t_min": 50, "learn_t_max": 10}):
        with pytest.raises(BadInputError):
            DiffusionSettings.from_dict(bad)
