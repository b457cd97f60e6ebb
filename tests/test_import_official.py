"""`smite import-official`: the authors' ckpt_best.pt as a part model (model.official, cli.import_official).

The checkpoints here are written in the authors' layout (alimohammadiamirhossein/smite), from the tiny model:
- src/unet_utils.py:90-105 `save_weights`: one torch.save dict = hparams (src/training.py:59-70) +
  "embeddings" {"embedding_i": (1, 1, D) parameter} (unet_utils.py:83-87) + "unet" {parameter name: full weight}
  of every parameter whose name contains "attn2.to_k"/"attn2.to_v" (src/optimization.py:17, default training
  mode text_embeds+crossattn_kv in scripts/common/common_train_params.sh:12);
- full weights, not deltas: `load_weights` copies them over the UNet's (unet_utils.py:115-119);
- context = [start-of-text column, the K vectors, columns K+1.. of the encoded base prompt]
  (src/embeddings.py:87-92), base prompt "" in the reference pass (src/inference.py:597-600);
  classes = token columns 0..K, background first (run.py:55).
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("diffusers")

from smite.backends.diffusion import _applied_kv  # noqa: E402
from smite.cli.main import main  # noqa: E402
from smite.errors import BadInputError, MissingModelError  # noqa: E402
from smite.model.backbone import load_backbone, make_tiny  # noqa: E402
from smite.model.encode import encode_prompt  # noqa: E402
from smite.model.official import (  # noqa: E402
    ADAM_STEP_BOUND, kv_drift_bound, official_to_part_model, read_official)
from smite.model.parts import load_part_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# training.py:59-70 keys with the authors' defaults (common_train_params.sh: 300 epochs, lr 1e-6) and 10 images
HPARAMS = {"dataset_name": "car", "dataset_size": 10, "guidance_scale": 100, "num_of_epochs": 300,
           "learning_rate": 1e-6, "time_interval": "5-100", "use_controlnet": False,
           "training_mode": "text_embeds+crossattn_kv", "coef_loss_sd": 0.005, "coef_loss_fourier": 0.001,
           "m_iou": 0.75}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny(str(tmp_path_factory.mktemp("tiny")), seed=0)


@pytest.fixture(scope="module")
def backbone(tiny):
    return load_backbone(tiny)


def official_ckpt(path, backbone, k=2, *, width=None, kv_scale=1e-3, extra=None, seed=0, dtype=torch.float32,
                  **hparams) -> dict:
    """Write a checkpoint as the authors' save_weights does: full k/v weights = backbone's + a small change."""
    gen = torch.Generator().manual_seed(seed)
    width = width or backbone.text_width
    embeddings = {f"embedding_{i}": torch.nn.Parameter(torch.randn(1, 1, width, generator=gen)) for i in range(k)}
    unet = {name: torch.nn.Parameter((p.detach() + kv_scale * torch.randn(p.shape, generator=gen)).to(dtype))
            for name, p in backbone.unet.named_parameters() if "attn2.to_k" in name or "attn2.to_v" in name}
    unet.update(extra or {})
    data = {**HPARAMS, **hparams, "embeddings": embeddings, "unet": unet}
    torch.save(data, str(path))
    return data


def test_drift_bound_follows_the_authors_schedule():
    """Adam (optimization.py:62, betas 0.9/0.999) moves a weight by ≤ lr·0.1/√(0.001·(1−0.81/0.999)) = 7.27·lr
    a step;
    with text_embeds+… the UNet steps in epochs > 50 not divisible by 10 (training.py:171-180): of 300 epochs
    that is 249 − 24 = 225, times 10 images (one batch each, args.py:9) at lr 1e-6 → 7.27 × 2.25e-3 = 0.0164.
    Without text embeddings every epoch steps, at 100× lr before epoch 10 and 10× before 40 (training.py:183-190):
    10·100 + 30·10 + 260 = 1560 lr-epochs."""
    assert ADAM_STEP_BOUND == pytest.approx(7.2703, abs=1e-4)
    assert kv_drift_bound(HPARAMS) == pytest.approx(ADAM_STEP_BOUND * 225 * 10 * 1e-6)
    assert kv_drift_bound({**HPARAMS, "training_mode": "crossattn_kv"}) == pytest.approx(
        ADAM_STEP_BOUND * 1560 * 10 * 1e-6)
    assert kv_drift_bound({"training_mode": "text_embeds"}) is None


def test_import_round_trips_through_the_segment_loader(tmp_path, tiny, backbone):
    """CLI import, then load_part_model with the backbone check (as `smite segment --parts` loads it):
    context column 0 = start-of-text of "", columns 1..K = embedding_0..K-1, the rest = encoded "" (embeddings.py:87-92,
    inference.py:597-600); backbone weights + deltas = the checkpoint's full k/v weights (unet_utils.py:115-119)."""
    ckpt = tmp_path / "ckpt_best.pt"
    data = official_ckpt(ckpt, backbone, k=2)
    out = tmp_path / "parts.smite"
    assert main(["import-official", str(ckpt), "--parts", "body,wheel", "--model", tiny, "--out", str(out)]) == 0
    model = load_part_model(str(out), backbone_hash=backbone.hash)
    assert model.parts == ("body", "wheel") and model.context.shape == (77, backbone.text_width)
    empty = encode_prompt(backbone, "")[0]
    torch.testing.assert_close(model.context[0], empty[0])
    torch.testing.assert_close(model.context[1], data["embeddings"]["embedding_0"].detach().reshape(-1))
    torch.testing.assert_close(model.context[2], data["embeddings"]["embedding_1"].detach().reshape(-1))
    torch.testing.assert_close(model.context[3:], empty[3:])
    assert sorted(model.kv_deltas) == sorted(n[: -len(".weight")] for n in data["unet"])
    modules = dict(backbone.unet.named_modules())
    before = {n: modules[n].weight.detach().clone() for n in model.kv_deltas}
    with _applied_kv(backbone, model):  # how the diffusion backend applies a part model's k/v
        for name in model.kv_deltas:
            torch.testing.assert_close(modules[name].weight, data["unet"][name + ".weight"].detach())
    for name, weight in before.items():
        torch.testing.assert_close(modules[name].weight, weight)
    assert model.settings["imported_from"] == "official" and model.settings["hparams"]["num_of_epochs"] == 300
    with pytest.raises(BadInputError, match="learned on backbone"):
        load_part_model(str(out), backbone_hash="0123456789abcdef")


def test_base_prompt_sets_only_the_columns_after_the_parts(tmp_path, backbone):
    """--base-prompt: the guided pass and training encode the authors' --prompt instead of "" (inference.py:181-190,
    training.py:285-294); columns 0..K stay (start-of-text is causal, the vectors are the checkpoint's)."""
    official_ckpt(tmp_path / "c.pt", backbone, k=2)
    ckpt = read_official(str(tmp_path / "c.pt"))
    a = official_to_part_model(ckpt, backbone, ["body", "wheel"])
    b = official_to_part_model(ckpt, backbone, ["body", "wheel"], base_prompt="back part ground")
    torch.testing.assert_close(a.context[:3], b.context[:3])
    torch.testing.assert_close(b.context[3:], encode_prompt(backbone, "back part ground")[0, 3:])
    assert not torch.allclose(a.context[3:6], b.context[3:6])


def test_import_refuses_mismatches_in_one_line(tmp_path, tiny, backbone, capsys):
    official_ckpt(tmp_path / "ok.pt", backbone, k=2)
    ok = read_official(str(tmp_path / "ok.pt"))
    with pytest.raises(BadInputError, match=r"ok.pt holds 2 part embedding\(s\) but 3 part name"):
        official_to_part_model(ok, backbone, ["a", "b", "c"])
    official_ckpt(tmp_path / "wide.pt", backbone, width=backbone.text_width * 2)
    with pytest.raises(BadInputError, match=f"embedding_0 has width {2 * backbone.text_width} but the loaded"):
        official_to_part_model(read_official(str(tmp_path / "wide.pt")), backbone, ["a", "b"])
    # trained on another backbone: same shapes, weights further apart than 0.0164 (tiny init spreads them ~0.1)
    other = load_backbone(make_tiny(str(tmp_path / "other"), seed=1))
    official_ckpt(tmp_path / "foreign.pt", other, k=2)
    with pytest.raises(BadInputError, match="more than its training can move it") as info:
        official_to_part_model(read_official(str(tmp_path / "foreign.pt")), backbone, ["a", "b"])
    assert "attn2.to_" in str(info.value)
    # the same change is within the bound when the hparams say training could make it
    far = math.ceil(1.0 / (ADAM_STEP_BOUND * 225 * 1e-6))
    official_ckpt(tmp_path / "long.pt", other, k=2, dataset_size=far)
    assert official_to_part_model(read_official(str(tmp_path / "long.pt")), backbone, ["a", "b"]).kv_deltas
    # an fp16 copy of the same weights is the same backbone: its rounding (≤ eps16·max|w|) is allowed, nothing more
    official_ckpt(tmp_path / "half.pt", backbone, kv_scale=0.0, dtype=torch.float16, learning_rate=0.0)
    half = official_to_part_model(read_official(str(tmp_path / "half.pt")), backbone, ["a", "b"])
    assert 0 < max(float(d.abs().max()) for d in half.kv_deltas.values()) <= 0.18 * torch.finfo(torch.float16).eps
    official_ckpt(tmp_path / "moved.pt", backbone, kv_scale=1e-3, learning_rate=0.0)
    with pytest.raises(BadInputError, match="more than its training can move it"):
        official_to_part_model(read_official(str(tmp_path / "moved.pt")), backbone, ["a", "b"])
    name = next(n for n, _ in backbone.unet.named_parameters() if "attn2.to_q" in n)
    official_ckpt(tmp_path / "q.pt", backbone, extra={name: torch.zeros(1)})
    with pytest.raises(BadInputError, match="fine-tunes .*attn2.to_q.weight"):
        read_official(str(tmp_path / "q.pt"))
    name = next(n for n, _ in backbone.unet.named_parameters() if "attn2.to_k" in n)
    official_ckpt(tmp_path / "shape.pt", backbone, extra={name: torch.zeros(3, 3)})
    with pytest.raises(BadInputError, match=r"has shape \(3, 3\) but the loaded UNet's is"):
        official_to_part_model(read_official(str(tmp_path / "shape.pt")), backbone, ["a", "b"])
    torch.save({**HPARAMS, "training_mode": "crossattn_kv", "unet": {}}, str(tmp_path / "noemb.pt"))
    with pytest.raises(BadInputError, match="no part embeddings"):
        read_official(str(tmp_path / "noemb.pt"))
    torch.save({"embeddings": {"embedding_0": torch.zeros(1, 1, 4)}, "code": BadInputError("x")}, str(tmp_path / "obj.pt"))
    with pytest.raises(BadInputError, match="not a readable SMITE checkpoint"):
        read_official(str(tmp_path / "obj.pt"))  # weights-only: a pickled object is never built
    with pytest.raises(MissingModelError, match="checkpoint not found"):
        read_official(str(tmp_path / "missing.pt"))
    capsys.readouterr()
    code = main(["import-official", str(tmp_path / "foreign.pt"), "--parts", "a,b", "--model", tiny,
                 "--out", str(tmp_path / "x.smite")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == BadInputError.exit_code and len(err) == 1 and "foreign.pt" in err[0]
    assert not (tmp_path / "x.smite").exists()
