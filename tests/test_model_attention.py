"""Attention processors: inflation, capture, WAS map, restore (model.attention)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers.models.attention_processor import AttnProcessor2_0  # noqa: E402

from smite.model.attention import (  # noqa: E402
    AttentionStore, installed, smite_processors, was_map, was_readout,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(unet, latents, text, t=50):
    return unet(latents, t, encoder_hidden_states=text).sample


def test_inflated_one_frame_equals_stock(unet):
    torch.manual_seed(0)
    latents, text = torch.randn(3, 4, 8, 8), torch.randn(3, 77, 32)
    unet.set_attn_processor(AttnProcessor2_0())
    with torch.no_grad():
        stock = _run(unet, latents, text)
        with installed(unet, smite_processors(unet, frames=1)):
            inflated = _run(unet, latents, text)
    torch.testing.assert_close(inflated, stock, atol=1e-5, rtol=1e-5)


def test_inflated_window_of_identical_frames_equals_per_frame(unet):
    # duplicated keys/values leave every softmax-weighted mean unchanged
    torch.manual_seed(1)
    one, text = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32)
    with torch.no_grad():
        single = _run(unet, one, text)
        with installed(unet, smite_processors(unet, frames=3)):
            window = _run(unet, one.repeat(3, 1, 1, 1), text.repeat(3, 1, 1))
    for i in range(3):
        torch.testing.assert_close(window[i : i + 1], single, atol=1e-5, rtol=1e-5)


def test_inflated_frames_see_each_other(unet):
    torch.manual_seed(2)
    latents, text = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 32)
    changed = latents.clone()
    changed[1] += 1.0
    with torch.no_grad(), installed(unet, smite_processors(unet, frames=2)):
        a, b = _run(unet, latents, text), _run(unet, changed, text)
    assert (a[0] - b[0]).abs().max() > 1e-4  # frame 0 changes when only frame 1 did
    with torch.no_grad():
        c, d = _run(unet, latents, text), _run(unet, changed, text)
    torch.testing.assert_close(c[0], d[0])  # but not without inflation


def test_capture_shapes_rows_and_restore(unet):
    before = dict(unet.attn_processors)
    store = AttentionStore((8, 8), num_tokens=3)
    with torch.no_grad(), installed(unet, smite_processors(unet, store, frames=2)):
        _run(unet, torch.randn(2, 4, 8, 8), torch.randn(2, 77, 32))
    assert unet.attn_processors == before
    assert sorted(k for k, v in store.layers.items() if v == "cross") == [
        f"up_blocks.{b}.attentions.{i}.transformer_blocks.0.attn2" for b, i in ((1, 0), (1, 1), (1, 2), (2, 0), (2, 1))]
    assert sum(v == "self" for v in store.layers.values()) == 3
    cross, attn = store.cross(), store.self_attn()
    assert cross.shape == (2, 64, 3) and attn.shape == (2, 64, 64)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 64))
    w = was_map(cross, attn)
    assert w.shape == (2, 64, 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 64))


def test_was_map_known_answers():
    cross = torch.randn(1, 4, 3)
    eye = torch.eye(4).unsqueeze(0)
    torch.testing.assert_close(was_map(cross, eye), cross.softmax(-1))
    uniform = torch.full((1, 4, 4), 0.25)
    expected = cross.softmax(-1).mean(1, keepdim=True).expand(1, 4, 3)
    torch.testing.assert_close(was_map(cross, uniform), expected)


def test_was_readout_known_answer_from_calculate_was_mask():
    """The authors' readout (src/was_attention.py, calculate_was_mask) by hand on a 4-pixel frame, K = 2.

    C_0 = [4, 0, 2, -2] (mean 1) keeps [4, 0, 2, 0] (:265-270: kept only where > mean); C_1 = [1, 3, -1, 5].
    A rows (queries) average two neighbouring keys, so W_k(q) = Σ_p A(q,p)·C'_k(p) (:277-280):
    W_0 = [2, 1, 1, 2], W_1 = [2, 1, 2, 3]. The affine map onto [min, max] of the *raw* C_k, taken before the
    background threshold (:260-261, :287-295): S_0 = -2 + (W_0 - 1)·6/1 = [4, -2, -2, 4] (the thresholded
    min 0 would give [4, 0, 0, 4]); S_1 = -1 + (W_1 - 1)·6/2 = [2, -1, 2, 5].
    """
    cross = torch.tensor([[[4.0, 1.0], [0.0, 3.0], [2.0, -1.0], [-2.0, 5.0]]])
    attn = torch.tensor([[[0.5, 0.5, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0.5, 0.5], [0.5, 0, 0, 0.5]]])
    expected = torch.tensor([[[4.0, 2.0], [-2.0, -1.0], [-2.0, 2.0], [4.0, 5.0]]])
    torch.testing.assert_close(was_readout(cross, attn), expected)
    # per frame: a second frame in the batch does not change the first one's S
    both = was_readout(torch.cat([cross, cross * 3 + 1]), attn.repeat(2, 1, 1))
    torch.testing.assert_close(both[:1], expected)
    torch.testing.assert_close(both[1:], expected * 3 + 1)  # S follows an affine change of the logits


def test_was_readout_spans_each_class_logit_range_and_flat_maps_read_the_minimum():
    torch.manual_seed(3)
    cross, attn = torch.randn(2, 16, 3) * 4, torch.rand(2, 16, 16).softmax(-1)
    s = was_readout(cross, attn)
    torch.testing.assert_close(s.amin(1), cross.amin(1))
    torch.testing.assert_close(s.amax(1), cross.amax(1))
    flat = was_readout(cross, torch.full((2, 16, 16), 1 / 16))  # W_k constant: 0/0 in the authors' code
    assert torch.isfinite(flat).all()
    torch.testing.assert_close(flat, cross.amin(1, keepdim=True).expand_as(flat))


def test_gradients_reach_latents(unet):
    latents = torch.randn(2, 4, 8, 8, requires_grad=True)
    store = AttentionStore((8, 8), num_tokens=2)
    with installed(unet, smite_processors(unet, store, frames=2)):
        _run(unet, latents, torch.randn(2, 77, 32))
    cross, attn = store.cross(), store.self_attn()
    (was_map(cross, attn)[..., 1].sum() + was_readout(cross, attn)[..., 1].sum()).backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0


def test_bad_layer_names_fail(unet):
    with pytest.raises(ValueError, match="does not exist"):
        smite_processors(unet, AttentionStore((8, 8), 2), cross_layers=("up_blocks.9.attentions.0",))
    with pytest.raises(ValueError, match="multiple"):
        with torch.no_grad(), installed(unet, smite_processors(unet, frames=2)):
            _run(unet, torch.randn(3, 4, 8, 8), torch.randn(3, 77, 32))
