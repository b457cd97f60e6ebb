"""Window-pooled GroupNorm for the inflated UNet (SMITE-METHOD §3).

The authors' inflated UNet feeds 5-D `(b, c, f, h, w)` tensors to each ResNet block's `norm1` and `norm2`
and to the UNet's `conv_norm_out`, so torch's GroupNorm pools each group's statistics over its channels
and all f frames of the window (authors' models/resnet.py:149,165 built, :189,200 applied;
models/unet.py:205 built, :430 applied). The transformers' GroupNorm sees `(b·f, c, h, w)`
(models/attention.py:93 rearrange, :99 norm) and stays per frame; the time embedding (diffusers'
TimestepEmbedding, models/unet.py:16,91: linear-SiLU-linear) has no norm, and the up/down samplers none.

We run diffusers' 2-D UNet on `(b·f, c, h, w)` batches of consecutive windows of f frames (the layout the
inflated attention processors assume). `pooled_groupnorm(unet, frames)` swaps the forward of exactly
those GroupNorms for the pooled one inside a block and restores them afterwards, like `installed`.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Iterator

import torch.nn.functional as F
from torch import Tensor, nn


def window_group_norm(x: Tensor, norm: nn.GroupNorm, frames: int) -> Tensor:
    """GroupNorm of `(b·f, C, ...)` with statistics per (window, group) over (C/G channels, f frames, pixels).

    Equals `norm` applied to the 5-D `(b, C, f, ...)` tensor (what the authors' UNet does); frames=1 is
    `norm(x)` itself. The affine weight and bias stay per channel.
    """
    bf, c = x.shape[:2]
    if bf % frames:
        raise ValueError(f"batch {bf} is not a multiple of the window's {frames} frames")
    b = bf // frames
    pooled = x.reshape(b, frames, c, -1).transpose(1, 2).reshape(b, c, -1)
    out = F.group_norm(pooled, norm.num_groups, norm.weight, norm.bias, norm.eps)
    return out.reshape(b, c, frames, -1).transpose(1, 2).reshape(x.shape)


def window_norms(unet: nn.Module) -> dict[str, nn.GroupNorm]:
    """The GroupNorms the authors pool over frames: every ResNet block's norm1/norm2 and conv_norm_out."""
    from diffusers.models.resnet import ResnetBlock2D

    norms = {}
    for name, module in unet.named_modules():
        if isinstance(module, ResnetBlock2D):
            for leaf in ("norm1", "norm2"):
                norm = getattr(module, leaf, None)
                if isinstance(norm, nn.GroupNorm):
                    norms[f"{name}.{leaf}"] = norm
    if isinstance(getattr(unet, "conv_norm_out", None), nn.GroupNorm):
        norms["conv_norm_out"] = unet.conv_norm_out
    return norms


@contextmanager
def pooled_groupnorm(unet: nn.Module, frames: int) -> Iterator[None]:
    """Inside the block, `window_norms(unet)` normalise over windows of `frames` consecutive batch items."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    norms = list(window_norms(unet).values())
    if any("forward" in vars(norm) for norm in norms):
        raise RuntimeError("the UNet's GroupNorms are already pooled (nested pooled_groupnorm)")
    try:
        for norm in norms:
            norm.forward = partial(window_group_norm, norm=norm, frames=int(frames))
        yield
    finally:
        for norm in norms:
            vars(norm).pop("forward", None)
