"""Model-space plumbing shared by learning and segmenting: images in, latents, prompts, attention maps out.

Learning and segmenting must see frames the same way (same resize, same VAE scaling, same layers
read), or vectors learned in one would not fit the other; so both go through these functions.
Model space is a square of `resolution` pixels: frames are stretched to it and maps are stretched
back (`smite.refine` then restores plate-resolution edges).
"""

from __future__ import annotations

from contextlib import ExitStack

import cv2
import numpy as np
import torch
from torch import Tensor

from .attention import AttentionStore, installed, smite_processors
from .backbone import Backbone
from .groupnorm import pooled_groupnorm
from .settings import GROUPNORMS


def to_model_images(images: list[np.ndarray] | np.ndarray, side: int) -> Tensor:
    """`(H, W, 3)` float [0, 1] images -> `(N, 3, side, side)` float32 in [-1, 1] (SD's input range)."""
    out = [cv2.resize(np.asarray(im, np.float32), (side, side), interpolation=cv2.INTER_AREA) for im in images]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).mul(2.0).sub(1.0).contiguous()


def labels_to_grid(labels: np.ndarray, classes: int, side: int) -> Tensor:
    """Label map `(H, W)` -> class ids `(side, side)` long: area-averaged one-hot, then argmax.

    Area averaging (not nearest sampling) lets a thin part that covers most of a cell keep it.
    """
    onehot = np.stack([(labels == c).astype(np.float32) for c in range(classes)], axis=-1)
    small = cv2.resize(onehot, (side, side), interpolation=cv2.INTER_AREA).reshape(side, side, classes)
    return torch.from_numpy(small.argmax(-1)).long()


def encode_latents(backbone: Backbone, images: Tensor) -> Tensor:
    """VAE posterior means of `(N, 3, S, S)` images in [-1, 1] -> scaled latents `(N, 4, S/8, S/8)`."""
    vae = backbone.vae
    param = next(vae.parameters())
    with torch.no_grad():
        dist = vae.encode(images.to(param.device, param.dtype)).latent_dist
    return dist.mean * backbone.vae_scale


def encode_prompt(backbone: Backbone, text: str) -> Tensor:
    """Text-encoder output `(1, 77, D)` of `text` (padded to the tokenizer's length)."""
    tok = backbone.tokenizer
    ids = tok([text], padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
    encoder = backbone.text_encoder
    with torch.no_grad():
        return encoder(ids.input_ids.to(next(encoder.parameters()).device))[0]


def unet_with_maps(backbone: Backbone, latents: Tensor, t: Tensor | int, context: Tensor, num_tokens: int,
                   frames: int = 1, groupnorm: str = "window") -> tuple[Tensor, Tensor, Tensor]:
    """One UNet pass that also reads SMITE's attention maps.

    latents `(B, 4, h, w)`; context `(B or 1, L, D)`; frames > 1 inflates the UNet over windows of that many
    consecutive batch items: self-attention over all their tokens and, with groupnorm="window" (the
    authors'), the ResNet GroupNorms pooled over their frames ("frame": per frame; frames=1: stock UNet).
    Returns (noise prediction `(B, 4, h, w)`, cross-attention logits `(B, P, num_tokens)`, self-attention
    `(B, P, P)`) with P = h·w. Differentiable in latents and context.
    """
    if groupnorm not in GROUPNORMS:
        raise ValueError(f"groupnorm must be one of {', '.join(GROUPNORMS)}, got {groupnorm!r}")
    b, _, h, w = latents.shape
    if context.shape[0] != b:
        context = context.expand(b, -1, -1)
    store = AttentionStore((h, w), num_tokens)
    with ExitStack() as stack:
        stack.enter_context(installed(backbone.unet, smite_processors(backbone.unet, store, frames=frames)))
        if groupnorm == "window" and frames > 1:
            stack.enter_context(pooled_groupnorm(backbone.unet, frames))
        eps = backbone.unet(latents, t, encoder_hidden_states=context).sample
    return eps, store.cross(), store.self_attn()
