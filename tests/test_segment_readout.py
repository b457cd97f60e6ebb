"""Segmenting reads the authors' map S and pooled GroupNorm by default; both old behaviours stay as named options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from smite.errors import BadInputError  # noqa: E402
from smite.method.segment import WindowSegmenter  # noqa: E402
from smite.model.attention import was_map, was_readout  # noqa: E402
from smite.model.backbone import load_backbone, make_tiny  # noqa: E402
from smite.model.encode import encode_latents, to_model_images, unet_with_maps  # noqa: E402
from smite.model.settings import DiffusionSettings  # noqa: E402

FAST = DiffusionSettings(resolution=64, window=4, overlap=2)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return load_backbone(make_tiny(str(tmp_path_factory.mktemp("readout") / "tiny"), seed=0))


def _frames(n=4, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random((64, 64, 3), dtype=np.float32)
    return [np.clip(base + 0.2 * rng.standard_normal((64, 64, 3)).astype(np.float32), 0, 1) for _ in range(n)]


def _segmenter(backbone, settings):
    context = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))
    return WindowSegmenter(backbone, context, 3, settings, tracker=None, temporal=False)


def test_defaults_are_the_authors():
    assert FAST.map_readout == "official" and FAST.groupnorm == "window"
    for bad in (dict(map_readout="softmax"), dict(groupnorm="batch")):
        with pytest.raises(BadInputError):
            FAST.replace(**bad)
    again = DiffusionSettings.from_dict(FAST.replace(map_readout="softmax_was", groupnorm="frame").to_dict())
    assert (again.map_readout, again.groupnorm) == ("softmax_was", "frame")


def test_maps_are_the_readout_of_the_pooled_unet(backbone):
    """`_maps` returns was_readout (official) or was_map (softmax_was) of one pooled, inflated UNet pass."""
    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    context = _segmenter(backbone, FAST).context
    _, cross, attn = unet_with_maps(backbone, z, torch.full((3,), 100), context, 3, frames=3, groupnorm="window")
    _, official = _segmenter(backbone, FAST)._maps(z, 100)
    _, soft = _segmenter(backbone, FAST.replace(map_readout="softmax_was"))._maps(z, 100)
    torch.testing.assert_close(official, was_readout(cross, attn))
    torch.testing.assert_close(soft, was_map(cross, attn))
    torch.testing.assert_close(official.amin(1), cross.amin(1))  # logit scale: spans each class's logit range


def test_result_probabilities_per_readout(backbone):
    """Official: softmax over classes of S (SMITE-METHOD §3 output; argmax = the authors' argmax of S).
    softmax_was: the WAS rows, clipped at 0 and renormalised."""
    s = torch.tensor([[[4.0, 2.0, 0.0], [-2.0, -1.0, 1.0], [-2.0, 2.0, 2.0], [4.0, 5.0, -3.0]]])
    probs = _segmenter(backbone, FAST)._result(s, 2, 2).probs
    torch.testing.assert_close(probs, s.transpose(1, 2).reshape(1, 3, 2, 2).softmax(1))
    torch.testing.assert_close(probs[0, :, 0, 0], torch.tensor([4.0, 2.0, 0.0]).softmax(0))
    w = torch.tensor([[[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 1.0, 0.0], [0.25, 0.25, 0.5]]])
    old = _segmenter(backbone, FAST.replace(map_readout="softmax_was"))._result(w, 2, 2).probs
    torch.testing.assert_close(old, w.transpose(1, 2).reshape(1, 3, 2, 2))


def test_readout_and_groupnorm_settings_change_the_window_result(backbone):
    frames = _frames()
    base = _segmenter(backbone, FAST)(frames, noise_seed=5)
    assert base.probs.shape == (4, 3, 8, 8)
    torch.testing.assert_close(base.probs.sum(1), torch.ones(4, 8, 8))
    for change in (dict(map_readout="softmax_was"), dict(groupnorm="frame")):
        other = _segmenter(backbone, FAST.replace(**change))(frames, noise_seed=5)
        assert (other.probs - base.probs).abs().max() > 1e-4, change
    again = _segmenter(backbone, FAST)(frames, noise_seed=5)
    assert torch.equal(again.probs, base.probs)


def test_one_frame_window_does_not_depend_on_groupnorm(backbone):
    frames = _frames(1)
    a = _segmenter(backbone, FAST)(frames, noise_seed=5)
    b = _segmenter(backbone, FAST.replace(groupnorm="frame"))(frames, noise_seed=5)
    assert torch.equal(a.probs, b.probs)


def test_guided_gradients_flow_through_the_official_readout(backbone):
    z0 = encode_latents(backbone, to_model_images(_frames(2), 64))
    seg = _segmenter(backbone, FAST)
    z = z0.clone().requires_grad_(True)
    _, maps = seg._maps(z, 100, grad=True)
    (grad,) = torch.autograd.grad(maps[..., 1].mean() - maps[..., 0].mean(), z)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
