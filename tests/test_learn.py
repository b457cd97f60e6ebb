"""Learning part vectors on the tiny SD (method.learn, method.augment, `smite learn`)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from smite.cli.main import main  # noqa: E402
from smite.io.image import read_label_map, read_rgb  # noqa: E402
from smite.method.energies import class_weights, frequency_loss, part_losses  # noqa: E402
from smite.method.learn import Example, PartLearner, initial_context  # noqa: E402
from smite.model.backbone import load_backbone, make_tiny  # noqa: E402
from smite.model.encode import encode_prompt, unet_with_maps  # noqa: E402
from smite.model.parts import load_part_model, save_part_model  # noqa: E402
from smite.model.settings import DiffusionSettings  # noqa: E402

CHAIR = os.path.join(os.path.dirname(__file__), "data", "chair")
NO_AUG = dict(aug_crop=0.0, aug_rotate=0.0, aug_flip=0.0, aug_blur=0.0, aug_dropout=0.0, aug_zoom_out=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def chair_example(frame: int) -> Example:
    """A crop around the chair with its mask split into two parts (left/right of the median column)."""
    image = read_rgb(os.path.join(CHAIR, "frames", f"{frame:05d}.jpg"))
    labels = read_label_map(os.path.join(CHAIR, "masks", f"{frame:05d}.png")).astype(np.uint8)
    ys, xs = np.nonzero(labels)
    labels[(labels > 0) & (np.arange(labels.shape[1])[None, :] > np.median(xs))] = 2
    cy, cx, r = int(ys.mean()), int(xs.mean()), int(max(np.ptp(ys), np.ptp(xs)) * 0.8)
    sl = (slice(max(cy - r, 0), cy + r), slice(max(cx - r, 0), cx + r))
    return Example(image[sl], labels[sl], f"frame {frame}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny(str(tmp_path_factory.mktemp("tiny")), seed=0)


def test_class_weights_known_answer():
    w = class_weights(torch.tensor([0, 0, 1, 1, 1, 2]), 4)
    torch.testing.assert_close(w, torch.tensor([1.0, 4 / 3, 4.0, 0.0]))


def test_part_losses_prefer_the_right_labels():
    labels = torch.tensor([[0, 1, 2, 1]])
    good = torch.nn.functional.one_hot(labels, 3).float() * 10
    eye = torch.eye(4).unsqueeze(0)
    ce_good, mse_good, freq_good = part_losses(good, eye, labels)
    ce_bad, mse_bad, freq_bad = part_losses(good.roll(1, dims=-1), eye, labels)
    assert ce_good < 1e-3 < ce_bad and mse_good < 1e-3 < mse_bad and freq_good < 1e-3 < freq_bad


def test_frequency_loss_known_answers():
    """src/frequency_filter.py:10-65: per class, mse of |S| and arg S over the shifted FFT S (their "low-pass"
    mask is all ones, line 18-20) plus 10x (line 61) the same for S with the central [32-30, 32+30)² block
    zeroed (the "high-pass", lines 21-22, cutoff 30 at line 39-43), summed over classes.

    On 64² (N² = 4096 coefficients): a constant c adds c·N² at the DC coefficient only, which sits in the
    zeroed block: L = (c·N²)²/N² = c²·N² = 0.4096 for c = 0.01. A checkerboard δ(-1)^(x+y) is δ·N² at the
    Nyquist coefficient, shifted to (0, 0), outside the block: L = 11·δ²·N² = 4.5056; with δ < 0 its phase
    is π against 0, adding 11·π²/N². On an 8² map the block covers everything: only the full term is left.
    """
    n = 64
    gt = torch.zeros(2, n, n, dtype=torch.float64)
    gt[0, 10:30, 5:50] = 1.0
    gt[1] = 1.0 - gt[0]
    assert float(frequency_loss(gt, gt)) == 0.0
    shifted = gt.clone()
    shifted[1] += 0.01
    assert float(frequency_loss(shifted, gt)) == pytest.approx(0.01 ** 2 * n * n, rel=1e-9)
    zero = torch.zeros(1, n, n, dtype=torch.float64)
    board = (-1.0) ** (torch.arange(n)[:, None] + torch.arange(n)[None, :]).double()
    assert float(frequency_loss(0.01 * board[None], zero)) == pytest.approx(11 * 0.01 ** 2 * n * n, rel=1e-9)
    assert float(frequency_loss(-0.01 * board[None], zero)) == pytest.approx(
        11 * (0.01 ** 2 * n * n + np.pi ** 2 / (n * n)), rel=1e-9)
    small = board[:8, :8][None]
    assert float(frequency_loss(0.01 * small, zero[:, :8, :8])) == pytest.approx(0.01 ** 2 * 64, rel=1e-9)
    # differentiable, finite at zero coefficients
    pred = shifted.clone().requires_grad_(True)
    frequency_loss(pred, gt).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_parts_start_from_their_own_names(tiny):
    """src/embeddings.py:15-26 encodes the prompt "background <parts>" and starts part k from column k (the word
    before it); SMITE-METHOD §2: part k starts from the first token of its own name. The tiny tokenizer spells
    "background" as ba|c|k|ground and "left" as l|e|f|t, so "left" starts at column 5 and "right" at 9.
    """
    backbone = load_backbone(tiny)
    tok = backbone.tokenizer
    ids = tok("background left right").input_ids
    assert tok.convert_ids_to_tokens(ids)[1:6] == ["ba", "c", "k", "ground</w>", "l"]
    base, vectors, positions = initial_context(backbone, ("left", "right"))
    assert positions == [5, 9]
    assert [ids[p] for p in positions] == [tok("left").input_ids[1], tok("right").input_ids[1]]
    encoded = encode_prompt(backbone, "background left right")[0]
    torch.testing.assert_close(base[0], encoded)
    torch.testing.assert_close(vectors[0], encoded[5])
    torch.testing.assert_close(vectors[1], encoded[9])
    assert (vectors[0] - vectors[1]).abs().max() > 1e-3


def _step_inputs(backbone, settings):
    learner = PartLearner(backbone, settings)
    ex = chair_example(0)
    latents, labels = learner._prepare(ex, 3, None)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(latents.shape, generator=gen)
    base, vectors, _ = initial_context(backbone, ("left", "right"))
    context = torch.cat([base[:, :1], vectors[None], base[:, 3:]], dim=1)
    return learner, latents, labels, torch.tensor([50]), noise, context, encode_prompt(backbone, "")


def test_was_term_counts_background_and_freq_starts_at_epoch_6(tiny):
    """src/training.py:145: MSE x num_parts, and num_parts counts background (utils/setup.py:99: the words of
    "background <parts>"), so K+1 = 3 for two parts. src/training.py:154: the FFT term (weight 0.001,
    scripts/common/common_train_params.sh:10) counts when epoch > 5.
    """
    backbone = load_backbone(tiny)
    only_was = DiffusionSettings(resolution=64, ce_weight=0.0, sd_weight=0.0, freq_weight=0.0, sd_guidance=1.0)
    learner, latents, labels, t, noise, context, _ = _step_inputs(backbone, only_was)
    with torch.no_grad():
        loss = learner.step_loss(latents, labels, t, noise, context, None, 3, 0, False)
        _, cross, attn = unet_with_maps(backbone, backbone.scheduler.add_noise(latents, noise, t), t, context, 3)
        _, mse, freq = part_losses(cross, attn, labels)
        assert float(loss) == pytest.approx(3 * float(mse), rel=1e-5)
        only_freq = only_was.replace(was_weight=0.0, freq_weight=0.001)
        learner = PartLearner(backbone, only_freq)
        assert float(learner.step_loss(latents, labels, t, noise, context, None, 3, 5, False)) == 0.0
        at6 = float(learner.step_loss(latents, labels, t, noise, context, None, 3, 6, False))
        assert at6 == pytest.approx(0.001 * float(freq), rel=1e-5) and at6 > 0
        later = PartLearner(backbone, only_freq.replace(freq_start_epoch=7))
        assert float(later.step_loss(latents, labels, t, noise, context, None, 3, 6, False)) == 0.0


def test_kv_phase_gradient_flows_through_the_unconditional_half(tiny):
    """src/training.py:309-336: one batched UNet pass over [uncond, cond] under enable_grad, then
    eps = eps_u + 100·(eps_c - eps_u) (guidance 100, scripts/common/common_train_params.sh:2): the k/v weights
    get gradient from both halves; the unconditional half's share is (1 - 100)·d eps_u, not small.
    """
    backbone = load_backbone(tiny)
    settings = DiffusionSettings(resolution=64, ce_weight=0.0, was_weight=0.0, freq_weight=0.0, sd_weight=1.0)
    learner, latents, labels, t, noise, context, uncond = _step_inputs(backbone, settings)
    weight = backbone.unet.up_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k.weight
    weight.requires_grad_(True)
    try:
        learner.step_loss(latents, labels, t, noise, context, uncond, 3, 60, True).backward()
        ours, weight.grad = weight.grad.clone(), None
        noisy = backbone.scheduler.add_noise(latents, noise, t)
        eps_c = unet_with_maps(backbone, noisy, t, context, 3)[0]

        def sd_grad(eps_u):
            weight.grad = None
            torch.nn.functional.mse_loss(eps_u + 100.0 * (eps_c - eps_u), noise).backward(retain_graph=True)
            return weight.grad.clone()

        eps_u = backbone.unet(noisy, t, encoder_hidden_states=uncond).sample
        both, cond_only = sd_grad(eps_u), sd_grad(eps_u.detach())
        torch.testing.assert_close(ours, both, rtol=1e-4, atol=1e-7)
        assert (both - cond_only).norm() > 0.1 * both.norm()
    finally:
        weight.requires_grad_(False)
        weight.grad = None


def test_learn_two_parts_loss_decreases_and_file_round_trips(tiny, tmp_path):
    backbone = load_backbone(tiny)
    before = {k: v.clone() for k, v in backbone.unet.state_dict().items() if "attn2.to_k" in k}
    settings = DiffusionSettings(resolution=64, learn_steps=24, kv_start_epoch=8, val_every=8, **NO_AUG)
    examples = [chair_example(0), chair_example(30)]
    seen = []
    result = PartLearner(backbone, settings)(examples, ("left", "right"), val=[examples[1]],
                                             progress=lambda *a: seen.append(a))
    assert result.steps == 24 and len(seen) == 24 and seen[-1][:3] == ("learn", 24, 24)
    assert np.mean(result.losses[-4:]) < np.mean(result.losses[:4])
    assert result.val_miou is not None and result.best_step in (8, 16, 24)
    assert not os.listdir(tmp_path)  # learning writes nothing; the caller saves the part model
    path = save_part_model(str(tmp_path / "p.smite"), result.model)
    model = load_part_model(path, backbone_hash=backbone.hash)
    assert model.parts == ("left", "right") and model.context.shape == (77, 32)
    torch.testing.assert_close(model.context, result.model.context)
    cross_attentions = [n for n, _ in backbone.unet.named_modules() if n.endswith("attn2")]
    assert sorted(model.kv_deltas) == sorted(f"{n}.{w}" for n in cross_attentions for w in ("to_k", "to_v"))
    for k, v in backbone.unet.state_dict().items():  # the backbone is left as it was found
        if k in before:
            torch.testing.assert_close(v, before[k])
    # same seed, same result
    short = settings.replace(kv_phase=False, learn_steps=3)
    again = PartLearner(backbone, short)(examples, ("left", "right"))
    third = PartLearner(backbone, short)(examples, ("left", "right"))
    assert again.losses == third.losses
    torch.testing.assert_close(again.model.context, third.model.context)
    assert not again.model.kv_deltas
    # the k/v phase moves the cross-attention weights (and only those) once it starts
    kv_settings = settings.replace(learn_steps=3, kv_start_epoch=1, kv_lr=1e-3)
    kv = PartLearner(backbone, kv_settings)(examples, ("left", "right"))
    deltas = kv.model.kv_deltas
    assert max(float(d.abs().max()) for d in deltas.values()) > 1e-5


def test_cli_learn_from_reference_folder(tiny, tmp_path):
    from smite.io.image import write_image

    refs = tmp_path / "refs"
    for frame in (0, 30):
        ex = chair_example(frame)
        write_image(str(refs / "images" / f"r{frame}.png"), ex.image)
        from PIL import Image

        os.makedirs(refs / "masks", exist_ok=True)
        Image.fromarray(ex.labels).save(refs / "masks" / f"r{frame}.png")
    out = tmp_path / "parts.smite"
    code = main(["learn", "--refs", str(refs), "--parts", "left,right", "--model", tiny, "--out", str(out),
                 "--steps", "3", "--quiet", "--set", "resolution=64", "--set", "kv_phase=false"])
    assert code == 0
    assert load_part_model(str(out)).parts == ("left", "right")


def test_learn_parts_from_shot_with_holdout(tiny, tmp_path):
    import json

    from smite.config import Settings, load_shot
    from smite.engine import learn_parts
    from smite.errors import BadInputError

    manifest = {"plate": os.path.join(CHAIR, "frames", "%05d.jpg"), "frames": "0-30", "parts": ["chair"],
                "references": [{"frame": f, "labels": os.path.join(CHAIR, "masks", f"{f:05d}.png")} for f in (0, 30)]}
    (tmp_path / "shot.json").write_text(json.dumps(manifest))
    shot = load_shot(str(tmp_path / "shot.json"))
    settings = DiffusionSettings(resolution=64, learn_steps=2, kv_phase=False, val_every=1, **NO_AUG)
    backbone = load_backbone(tiny)
    result = learn_parts(shot, str(tmp_path / "c.smite"), Settings(diffusion=settings), backbone=backbone, holdout=30)
    assert result.parts == ("chair",) and result.val_miou is not None and result.steps == 2
    assert result.path == str(tmp_path / "c.smite") and load_part_model(result.path).parts == ("chair",)
    with pytest.raises(BadInputError, match="holdout frame 7"):
        learn_parts(shot, str(tmp_path / "d.smite"), Settings(diffusion=settings), backbone=backbone, holdout=7)


def test_official_learning_defaults():
    """scripts/common/common_train_params.sh: guidance 100 (line 2), 300 epochs (3), t in 5..100 (8), SD 0.005 (9),
    FFT 0.001 (10), k/v lr 1e-6 (11); src/optimization.py:66 vectors lr 0.1; src/training.py:154 FFT when
    epoch > 5; :170-179 vectors while epoch <= 50, k/v after; :402 backward of 0.01·L.
    """
    s = DiffusionSettings()
    assert (s.sd_guidance, s.learn_epochs, s.learn_t_min, s.learn_t_max) == (100.0, 300, 5, 100)
    assert (s.sd_weight, s.freq_weight, s.freq_start_epoch, s.kv_lr, s.learn_lr) == (0.005, 0.001, 6, 1e-6, 0.1)
    assert (s.kv_phase, s.kv_start_epoch, s.loss_scale, s.ce_weight, s.was_weight) == (True, 51, 0.01, 1.0, 1.0)


def test_loss_scale_changes_the_learned_vectors(tiny, tmp_path):
    """Adam is invariant to the loss scale except through eps: 0.01·L (src/training.py:402) moves the vectors
    a little differently from L."""
    backbone = load_backbone(tiny)
    settings = DiffusionSettings(resolution=64, learn_steps=2, kv_phase=False, sd_guidance=1.0, **NO_AUG)
    examples = [chair_example(0)]
    contexts = []
    for scale in (1.0, 0.01):
        result = PartLearner(backbone, settings.replace(loss_scale=scale))(examples, ("left", "right"))
        contexts.append(result.model.context)
    assert not torch.equal(contexts[0], contexts[1])
    torch.testing.assert_close(contexts[0], contexts[1], rtol=0, atol=0.02)
