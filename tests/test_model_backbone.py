"""Backbone loading, identity hash and the tiny SD stand-in (model.backbone, `smite models`)."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("diffusers")

from smite.cli.main import main  # noqa: E402
from smite.errors import MissingModelError  # noqa: E402
from smite.model.backbone import backbone_hash, load_backbone, make_tiny  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny(str(tmp_path_factory.mktemp("tiny")), seed=0)


def test_make_tiny_has_sd_layout_and_loads(tiny):
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert os.path.isdir(os.path.join(tiny, sub))
    b = load_backbone(tiny)
    assert type(b.unet).__name__ == "UNet2DConditionModel"
    assert type(b.vae).__name__ == "AutoencoderKL"
    assert type(b.text_encoder).__name__ == "CLIPTextModel"
    assert type(b.scheduler).__name__ == "DDIMScheduler"
    cfg = b.scheduler.config
    assert (cfg.beta_start, cfg.beta_end, cfg.beta_schedule, cfg.num_train_timesteps, cfg.prediction_type) == (
        0.00085, 0.012, "scaled_linear", 1000, "epsilon")
    # the layers SMITE reads attention from exist
    assert len(b.unet.up_blocks[1].attentions) == 3 and len(b.unet.up_blocks[3].attentions) == 3
    assert b.latent_factor == 8
    ids = b.tokenizer(["part back"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert b.tokenizer.convert_ids_to_tokens(ids[0, :4].tolist()) == [
        "<|startoftext|>", "part</w>", "back</w>", "<|endoftext|>"]
    with torch.no_grad():
        enc = b.text_encoder(ids)[0]
        out = b.unet(torch.randn(1, 4, 8, 8), 10, encoder_hidden_states=enc).sample
    assert out.shape == (1, 4, 8, 8)
    assert not any(p.requires_grad for p in b.unet.parameters())


def test_hash_is_stable_and_tracks_weights(tiny, tmp_path):
    a, b = load_backbone(tiny), load_backbone(tiny)
    assert backbone_hash(a) == backbone_hash(b) == a.hash
    assert a.to("cpu", torch.float16) is a and backbone_hash(a) == b.hash  # same weights in half precision
    same_seed = make_tiny(str(tmp_path / "again"), seed=0)
    assert load_backbone(same_seed).hash == b.hash
    other = make_tiny(str(tmp_path / "other"), seed=1)
    assert load_backbone(other).hash != b.hash
    names = sorted(b.unet.state_dict())
    with torch.no_grad():
        b.unet.state_dict()[names[0]].add_(1.0)
    assert backbone_hash(b) != a.hash


def test_missing_and_bad_models_fail_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("SMITE_MODEL", raising=False)
    with pytest.raises(MissingModelError, match="--model"):
        load_backbone(None)
    with pytest.raises(MissingModelError, match="not found"):
        load_backbone(str(tmp_path / "nope"))
    with pytest.raises(MissingModelError, match="subfolder"):
        load_backbone(str(tmp_path))
    ckpt = tmp_path / "sd.safetensors"
    ckpt.write_bytes(b"")
    with pytest.raises(MissingModelError, match="config folder") as info:
        load_backbone(str(ckpt))
    assert "\n" not in str(info.value)


def test_cli_make_tiny_and_offline_fetch(tmp_path, monkeypatch, capsys):
    assert main(["models", "make-tiny", str(tmp_path / "m"), "--seed", "3"]) == 0
    assert os.path.isfile(tmp_path / "m" / "unet" / "config.json")
    capsys.readouterr()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["models", "fetch", "--dest", str(tmp_path / "sd")])
    assert code == MissingModelError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot fetch" in err[0]
