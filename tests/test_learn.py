"""Learning part vectors on the tiny SD (method.learn, method.augment, `smite learn`)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from smite.cli.main import main  # noqa: E402
from smite.io.image import read_label_map, read_rgb  # noqa: E402
from smite.method.augment import augment  # noqa: E402
from smite.method.learn import Example, class_weights, learn_examples, part_losses  # noqa: E402
from smite.model.backbone import load_backbone, make_tiny  # noqa: E402
from smite.model.parts import load_part_model  # noqa: E402
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
    ce_good, mse_good = part_losses(good, eye, labels)
    ce_bad, mse_bad = part_losses(good.roll(1, dims=-1), eye, labels)
    assert ce_good < 1e-3 < ce_bad and mse_good < 1e-3 < mse_bad


def test_every_augmentation_setting_changes_the_view():
    ex = chair_example(0)
    plain = DiffusionSettings(**NO_AUG)
    base_img, base_lab = augment(ex.image, ex.labels, plain, np.random.default_rng(0))
    np.testing.assert_array_equal(base_lab, ex.labels)
    on = dict(aug_crop=1.0, aug_rotate=30.0, aug_flip=1.0, aug_blur=1.0, aug_dropout=1.0, aug_zoom_out=1.0)
    for name, value in on.items():
        img, lab = augment(ex.image, ex.labels, plain.replace(**{name: value}), np.random.default_rng(0))
        assert img.shape != base_img.shape or not np.allclose(img, base_img), name
        assert lab.dtype == np.uint8 and set(np.unique(lab)) <= {0, 1, 2}, name


def test_learn_two_parts_loss_decreases_and_file_round_trips(tiny, tmp_path):
    backbone = load_backbone(tiny)
    before = {k: v.clone() for k, v in backbone.unet.state_dict().items() if "attn2.to_k" in k}
    settings = DiffusionSettings(resolution=64, learn_steps=24, kv_start_epoch=8, val_every=8, **NO_AUG)
    examples = [chair_example(0), chair_example(30)]
    seen = []
    result = learn_examples(examples, ("left", "right"), str(tmp_path / "p.smite"), settings, backbone=backbone,
                            val=[examples[1]], progress=lambda *a: seen.append(a))
    assert result.steps == 24 and len(seen) == 24 and seen[-1][:3] == ("learn", 24, 24)
    assert np.mean(result.losses[-4:]) < np.mean(result.losses[:4])
    assert result.val_miou is not None and result.best_step in (8, 16, 24)
    model = load_part_model(result.path, backbone_hash=backbone.hash)
    assert model.parts == ("left", "right") and model.context.shape == (77, 32)
    cross_attentions = [n for n, _ in backbone.unet.named_modules() if n.endswith("attn2")]
    assert sorted(model.kv_deltas) == sorted(f"{n}.{w}" for n in cross_attentions for w in ("to_k", "to_v"))
    for k, v in backbone.unet.state_dict().items():  # the backbone is left as it was found
        if k in before:
            torch.testing.assert_close(v, before[k])
    # same seed, same result
    again = learn_examples(examples, ("left", "right"), str(tmp_path / "q.smite"), settings.replace(kv_phase=False,
                           learn_steps=3), backbone=backbone)
    third = learn_examples(examples, ("left", "right"), str(tmp_path / "r.smite"), settings.replace(kv_phase=False,
                           learn_steps=3), backbone=backbone)
    assert again.losses == third.losses
    torch.testing.assert_close(load_part_model(again.path).context, load_part_model(third.path).context)
    assert not load_part_model(again.path).kv_deltas
    # the k/v phase moves the cross-attention weights (and only those) once it starts
    kv = learn_examples(examples, ("left", "right"), str(tmp_path / "kv.smite"), settings.replace(
        learn_steps=3, kv_start_epoch=1, kv_lr=1e-3), backbone=backbone)
    deltas = load_part_model(kv.path).kv_deltas
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

    from smite.config import load_shot
    from smite.errors import BadInputError
    from smite.method.learn import learn_parts

    manifest = {"plate": os.path.join(CHAIR, "frames", "%05d.jpg"), "frames": "0-30", "parts": ["chair"],
                "references": [{"frame": f, "labels": os.path.join(CHAIR, "masks", f"{f:05d}.png")} for f in (0, 30)]}
    (tmp_path / "shot.json").write_text(json.dumps(manifest))
    shot = load_shot(str(tmp_path / "shot.json"))
    settings = DiffusionSettings(resolution=64, learn_steps=2, kv_phase=False, val_every=1, **NO_AUG)
    backbone = load_backbone(tiny)
    result = learn_parts(shot, str(tmp_path / "c.smite"), settings, backbone=backbone, holdout=30)
    assert result.parts == ("chair",) and result.val_miou is not None and result.steps == 2
    with pytest.raises(BadInputError, match="holdout frame 7"):
        learn_parts(shot, str(tmp_path / "d.smite"), settings, backbone=backbone, holdout=7)
