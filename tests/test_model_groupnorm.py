"""Window-pooled GroupNorm of the inflated UNet (model.groupnorm, encode.unet_with_maps(groupnorm=...))."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("diffusers")

from smite.model import settings  # noqa: E402
from smite.model.attention import installed, smite_processors  # noqa: E402
from smite.model.groupnorm import pooled_groupnorm, window_group_norm, window_norms  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _norm(groups=4, channels=8, seed=0):
    torch.manual_seed(seed)
    norm = nn.GroupNorm(groups, channels, eps=1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return norm


def test_one_frame_is_the_stock_group_norm():
    norm = _norm()
    x = torch.randn(3, 8, 5, 5) * 2 + 1
    torch.testing.assert_close(window_group_norm(x, norm, 1), norm(x), atol=1e-6, rtol=0)


def test_several_frames_pool_statistics_over_group_frames_and_pixels_by_hand():
    """Authors' models/resnet.py:149,189: nn.GroupNorm on (b, c, f, h, w) -> one mean/variance per
    (video, group) over (c/G, f, h, w). Hand computation: 2 windows x 3 frames, 8 channels in 4 groups."""
    norm = _norm()
    x = torch.randn(6, 8, 4, 4) * 3
    x[1] += 5.0  # frames with different statistics, so pooling matters
    out = window_group_norm(x, norm, 3)
    expected = torch.empty_like(x)
    for b in range(2):
        for g in range(4):
            block = x[3 * b: 3 * b + 3, 2 * g: 2 * g + 2]
            mean, var = block.mean(), block.var(unbiased=False)
            expected[3 * b: 3 * b + 3, 2 * g: 2 * g + 2] = (block - mean) / torch.sqrt(var + norm.eps)
    expected = expected * norm.weight[:, None, None] + norm.bias[:, None, None]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    five_d = norm(x.view(2, 3, 8, 4, 4).transpose(1, 2)).transpose(1, 2).reshape(x.shape)  # the authors' call
    torch.testing.assert_close(out, five_d, atol=1e-5, rtol=1e-5)
    assert (out - norm(x)).abs().max() > 0.1  # per-frame statistics differ
    with pytest.raises(ValueError, match="multiple"):
        window_group_norm(x[:5], norm, 3)


def test_the_pooled_norms_are_resnet_norm1_norm2_and_conv_norm_out(unet):
    from diffusers.models.resnet import ResnetBlock2D

    names = sorted(window_norms(unet))
    resnets = [n for n, m in unet.named_modules() if isinstance(m, ResnetBlock2D)]
    assert names == sorted([f"{r}.{leaf}" for r in resnets for leaf in ("norm1", "norm2")] + ["conv_norm_out"])
    transformer_norms = [n for n, m in unet.named_modules() if isinstance(m, nn.GroupNorm) and n not in names]
    assert transformer_norms and all(".attentions." in n and n.endswith(".norm") for n in transformer_norms)


def _run(unet, latents, text, t=50):
    return unet(latents, t, encoder_hidden_states=text).sample


def test_pooled_unet_one_frame_equals_stock_and_restores(unet):
    torch.manual_seed(0)
    latents, text = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 32)
    with torch.no_grad():
        stock = _run(unet, latents, text)
        with pooled_groupnorm(unet, 1):
            pooled = _run(unet, latents, text)
        assert not any("forward" in vars(m) for m in unet.modules())
        after = _run(unet, latents, text)
    torch.testing.assert_close(pooled, stock, atol=1e-5, rtol=1e-5)
    assert torch.equal(after, stock)
    with pytest.raises(RuntimeError, match="nested"), pooled_groupnorm(unet, 2), pooled_groupnorm(unet, 2):
        pass
    assert not any("forward" in vars(m) for m in unet.modules())  # restored even after the error


def test_transformer_norms_stay_per_frame_while_resnet_norms_pool(unet):
    seen: dict[str, tuple] = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, (inputs[0], output))  # first call of each norm; returns None: output kept
        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in unet.named_modules() if isinstance(m, nn.GroupNorm)]
    pooled = set(window_norms(unet))
    torch.manual_seed(1)
    latents, text = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 32)
    latents[1] = latents[1] * 2 + 1
    try:
        with torch.no_grad(), pooled_groupnorm(unet, 2):
            _run(unet, latents, text)
    finally:
        for h in hooks:
            h.remove()
    assert pooled <= set(seen) and len(seen) > len(pooled)
    for name, (x, out) in seen.items():
        norm = unet.get_submodule(name)
        want = window_group_norm(x, norm, 2) if name in pooled else nn.GroupNorm.forward(norm, x)
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    name, (x, out) = next((n, v) for n, v in seen.items() if n in pooled)
    assert (out - nn.GroupNorm.forward(unet.get_submodule(name), x)).abs().max() > 1e-3


def test_window_of_identical_frames_equals_one_frame(unet):
    """Copies of one frame leave pooled statistics (and inflated attention) unchanged: a known answer."""
    torch.manual_seed(2)
    one, text = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32)
    with torch.no_grad():
        single = _run(unet, one, text)
        with installed(unet, smite_processors(unet, frames=3)), pooled_groupnorm(unet, 3):
            window = _run(unet, one.repeat(3, 1, 1, 1), text.repeat(3, 1, 1))
    for i in range(3):
        torch.testing.assert_close(window[i: i + 1], single, atol=1e-5, rtol=1e-5)


def test_unet_with_maps_groupnorm_setting_and_gradients(tmp_path):
    from smite.model.backbone import load_backbone, make_tiny
    from smite.model.encode import unet_with_maps

    backbone = load_backbone(make_tiny(str(tmp_path / "tiny"), seed=0))
    torch.manual_seed(3)
    latents, text = torch.randn(2, 4, 8, 8), torch.randn(1, 77, 32)
    latents[1] = latents[1] * 1.5 - 0.5
    outs = {}
    for mode in settings.GROUPNORMS:
        z = latents.clone().requires_grad_(True)
        eps, cross, attn = unet_with_maps(backbone, z, 50, text, 3, frames=2, groupnorm=mode)
        (eps.square().mean() + cross[..., 1].mean()).backward()
        assert z.grad is not None and z.grad.abs().sum() > 0
        outs[mode] = (eps.detach(), z.grad)
    assert (outs["window"][0] - outs["frame"][0]).abs().max() > 1e-4
    one = [unet_with_maps(backbone, latents[:1], 50, text, 3, frames=1, groupnorm=m)[0] for m in settings.GROUPNORMS]
    assert torch.equal(one[0], one[1])  # one frame: both settings run the stock UNet
    assert not any("forward" in vars(m) for m in backbone.unet.modules())
    with pytest.raises(ValueError, match="groupnorm"):
        unet_with_maps(backbone, latents, 50, text, 3, frames=2, groupnorm="batch")
