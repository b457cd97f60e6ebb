"""Attention processors for SMITE: capture the maps the method reads, and inflate self-attention.

SMITE reads two things out of the UNet (SMITE-METHOD §2): raw cross-attention logits `q·kᵀ/√d` at
the 16² and 32² decoder blocks (the part columns 0..K of the prompt) and softmaxed self-attention at
the 64² decoder block, both averaged over heads and layers. For video it also *inflates* every
self-attention so a frame's queries see the keys of all frames in the window (§3).

The processors follow diffusers' contract: `__call__(attn, hidden_states, encoder_hidden_states,
attention_mask, ...)` returns only the new hidden states; what they observe goes into an
`AttentionStore`, which sums each layer's head-averaged map into one running total per kind as soon
as the layer runs, so no more than one layer's maps exist at a time. `installed(unet, processors)`
swaps processors in and restores the saved ones afterwards, so a UNet is never left modified.
Two readouts of the maps: `was_map` (softmax WAS, learning) and `was_readout` (the authors'
logit-scale S, segmenting).

Shapes: B = batch (frames x guidance copies), P = latent pixels (h·w of the finest map), K = token
columns read (background + parts).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# SMITE-METHOD §2 (official layer choice): cross-attention from the 16² and 32² decoder blocks,
# self-attention from the 64² decoder block.
CROSS_LAYERS = (
    "up_blocks.1.attentions.0", "up_blocks.1.attentions.1", "up_blocks.1.attentions.2",
    "up_blocks.2.attentions.0", "up_blocks.2.attentions.1",
)
SELF_LAYERS = ("up_blocks.3.attentions.0", "up_blocks.3.attentions.1", "up_blocks.3.attentions.2")


class AttentionStore:
    """Running layer sums of head-averaged maps for one UNet pass.

    size: `(h, w)` of the latent grid every map is resized to (P = h·w).
    num_tokens: how many token columns of the cross-attention to keep (K).
    `layers` maps each layer name seen to its kind ("cross" or "self"), in call order.
    """

    def __init__(self, size: tuple[int, int], num_tokens: int) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.num_tokens = int(num_tokens)
        self.layers: dict[str, str] = {}
        self._sum: dict[str, Tensor] = {}
        self._count: dict[str, int] = {"cross": 0, "self": 0}

    def reset(self) -> None:
        self.layers.clear()
        self._sum.clear()
        self._count = {"cross": 0, "self": 0}

    def _grid(self, n: int) -> tuple[int, int]:
        """The (h, w) of a layer with n tokens: the latent grid downsampled by a power of two."""
        h, w = self.size
        factor = math.sqrt(h * w / n)
        lh, lw = round(h / factor), round(w / factor)
        if lh * lw != n:
            raise ValueError(f"a layer with {n} tokens does not fit the latent grid {h}x{w}")
        return lh, lw

    def add_cross(self, name: str, logits: Tensor) -> None:
        """logits `(B, n, K)` at a layer of n = h'·w' tokens; resized to `(B, P, K)` and summed."""
        b, n, k = logits.shape
        lh, lw = self._grid(n)
        if (lh, lw) != self.size:
            grid = logits.transpose(1, 2).reshape(b, k, lh, lw)
            grid = F.interpolate(grid, size=self.size, mode="bilinear", align_corners=False)
            logits = grid.reshape(b, k, -1).transpose(1, 2)
        self._accumulate(name, "cross", logits)

    def add_self(self, name: str, probs: Tensor) -> None:
        """probs `(B, P, P)` softmaxed self-attention at the latent resolution; summed."""
        if probs.shape[-1] != self.size[0] * self.size[1]:
            raise ValueError(
                f"self-attention layer {name} has {probs.shape[-1]} tokens; SMITE reads it at the latent grid "
                f"{self.size[0]}x{self.size[1]} only"
            )
        self._accumulate(name, "self", probs)

    def _accumulate(self, name: str, kind: str, maps: Tensor) -> None:
        self.layers[name] = kind
        self._sum[kind] = maps if kind not in self._sum else self._sum[kind] + maps
        self._count[kind] += 1

    def _mean(self, kind: str) -> Tensor:
        if not self._count[kind]:
            raise ValueError(f"no {kind}-attention layer was captured (check the layer names)")
        return self._sum[kind] / self._count[kind]

    def cross(self) -> Tensor:
        """Layer-averaged raw cross-attention logits `(B, P, K)`."""
        return self._mean("cross")

    def self_attn(self) -> Tensor:
        """Layer-averaged self-attention `(B, P, P)`; rows sum to 1."""
        return self._mean("self")


def was_map(cross: Tensor, self_attn: Tensor) -> Tensor:
    """Weighted accumulated self-attention: `W_k(q) = Σ_p A(q,p)·softmax_k(C)(p)`.

    cross: `(B, P, K)` logits; self_attn: `(B, P, P)` rows over keys. Returns `(B, P, K)`; each row is a
    convex mix of class distributions, so it sums to 1 when A's rows do.
    """
    return torch.bmm(self_attn, cross.softmax(dim=-1))


def was_readout(cross: Tensor, self_attn: Tensor) -> Tensor:
    """The map S that segmenting reads: the authors' `calculate_was_mask`, on the logit scale.

    cross: `(B, P, K)` raw logits (their inference reads maps with apply_softmax=False at 64², run.py:26,39,56),
    column 0 background; self_attn: `(B, P, P)` rows over keys; B = frames.
    Per frame, min/max over the P pixels of the *raw* C (authors' src/was_attention.py:259-261):
      C'_0 = C_0 where C_0 > mean C_0, else 0; C'_k = C_k for k >= 1            (:263-271)
      W_k(q) = Σ_p A(q,p)·C'_k(p)                                                (:277-280)
      S_k = min C_k + (W_k - min W_k)·(max C_k - min C_k)/(max W_k - min W_k)    (:287-295)
    Returns S `(B, P, K)`. Their bilinear resize of W to the 64² mask grid (:282-286) is the identity
    here: A is read at the latent grid, 64² at 512² model space. A flat W_k (0/0, NaN in theirs) reads
    min C_k. Learning keeps `was_map` (softmax(C) in the WAS, as their training does).
    """
    bg = cross[..., :1]
    kept = torch.where(bg > bg.mean(dim=1, keepdim=True), bg, torch.zeros_like(bg))
    w = torch.bmm(self_attn, torch.cat([kept, cross[..., 1:]], dim=-1))
    w_min, w_max = w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True)
    c_min, c_max = cross.amin(dim=1, keepdim=True), cross.amax(dim=1, keepdim=True)
    span = w_max - w_min
    unit = (w - w_min) / torch.where(span > 0, span, torch.ones_like(span))
    return c_min + unit * (c_max - c_min)


# -- processors ------------------------------------------------------------------------------------

def _project(attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None):
    """Queries, keys, values `(B, heads, n, d)` the way diffusers' Attention computes them.

    Returns (q, k, v, residual, restore) where `restore(out (B, n, heads·d))` applies the output
    projection and the module's residual/rescale options.
    """
    residual = hidden_states
    if getattr(attn, "spatial_norm", None) is not None:
        raise NotImplementedError("SMITE processors do not support spatially normalised attention")
    shape4 = None
    if hidden_states.ndim == 4:
        shape4 = hidden_states.shape
        b, c, h, w = shape4
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    if encoder_hidden_states is not None and attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    key, value = attn.to_k(context), attn.to_v(context)
    b = query.shape[0]
    d = key.shape[-1] // attn.heads
    q, k, v = (x.view(b, -1, attn.heads, d).transpose(1, 2) for x in (query, key, value))
    if attn.norm_q is not None:
        q = attn.norm_q(q)
    if attn.norm_k is not None:
        k = attn.norm_k(k)

    def restore(out: Tensor) -> Tensor:
        out = attn.to_out[1](attn.to_out[0](out.to(query.dtype)))
        if shape4 is not None:
            out = out.transpose(-1, -2).reshape(shape4)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    return q, k, v, restore


def _merge_heads(x: Tensor) -> Tensor:
    """`(B, heads, n, d)` -> `(B, n, heads·d)`."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _inflate(x: Tensor, frames: int) -> Tensor:
    """`(b·f, heads, n, d)` -> `(b, heads, f·n, d)`: one sequence over all frames of a window."""
    bf, h, n, d = x.shape
    if bf % frames:
        raise ValueError(f"batch {bf} is not a multiple of the window's {frames} frames")
    return x.view(bf // frames, frames, h, n, d).transpose(1, 2).reshape(bf // frames, h, frames * n, d)


def _deflate(x: Tensor, frames: int) -> Tensor:
    """Inverse of `_inflate`: `(b, heads, f·n, d)` -> `(b·f, heads, n, d)`."""
    b, h, fn, d = x.shape
    n = fn // frames
    return x.view(b, h, frames, n, d).transpose(1, 2).reshape(b * frames, h, n, d)


def _attend(q: Tensor, k: Tensor, v: Tensor, frames: int, mask: Tensor | None) -> Tensor:
    """SDPA per frame (frames=1) or window-wide over `frames` consecutive batch items."""
    if frames > 1:
        if mask is not None:
            raise NotImplementedError("inflated attention does not take an attention mask")
        out = F.scaled_dot_product_attention(_inflate(q, frames), _inflate(k, frames), _inflate(v, frames))
        return _deflate(out, frames)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _mask(attn, attention_mask: Tensor | None, q: Tensor, k: Tensor) -> Tensor | None:
    if attention_mask is None:
        return None
    mask = attn.prepare_attention_mask(attention_mask, k.shape[2], q.shape[0])
    return mask.view(q.shape[0], attn.heads, -1, mask.shape[-1])


class InflatedAttnProcessor:
    """Self-attention over all tokens of all `frames` frames of a window (SMITE's inflated UNet).

    The batch holds consecutive windows of `frames` frames; no new weights. With frames=1 this is
    diffusers' AttnProcessor2_0.
    """

    def __init__(self, frames: int = 1) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.frames = int(frames)

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None, **kwargs) -> Tensor:
        q, k, v, restore = _project(attn, hidden_states, encoder_hidden_states)
        frames = self.frames if encoder_hidden_states is None else 1  # cross-attention stays per frame
        out = _attend(q, k, v, frames, _mask(attn, attention_mask, q, k))
        return restore(_merge_heads(out))


class CaptureAttnProcessor(InflatedAttnProcessor):
    """Attention as usual (inflated when frames > 1) that also records this layer's map.

    Cross-attention layers record raw logits `q·kᵀ/√d` for the first `store.num_tokens` token columns;
    self-attention layers record each frame's own softmax(q·kᵀ/√d) over its own keys (the per-frame
    A of the WAS map), computed one batch item at a time to bound memory. Both are head-averaged.
    """

    def __init__(self, store: AttentionStore, name: str, frames: int = 1) -> None:
        super().__init__(frames)
        self.store = store
        self.name = name

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None, **kwargs) -> Tensor:
        q, k, v, restore = _project(attn, hidden_states, encoder_hidden_states)
        is_cross = encoder_hidden_states is not None
        out = _attend(q, k, v, 1 if is_cross else self.frames, _mask(attn, attention_mask, q, k))
        scale = q.shape[-1] ** -0.5
        if is_cross:
            cols = k[:, :, : self.store.num_tokens]
            self.store.add_cross(self.name, (q @ cols.transpose(-1, -2) * scale).mean(dim=1))
        else:
            maps = [((q[i] @ k[i].transpose(-1, -2)) * scale).softmax(dim=-1).mean(dim=0) for i in range(q.shape[0])]
            self.store.add_self(self.name, torch.stack(maps))
        return restore(_merge_heads(out))


# -- installing ------------------------------------------------------------------------------------

def _matches(key: str, prefixes: Sequence[str], leaf: str) -> bool:
    return key.endswith(f"{leaf}.processor") and any(key.startswith(p + ".") for p in prefixes)


def smite_processors(unet, store: AttentionStore | None = None, frames: int = 1,
                     cross_layers: Sequence[str] = CROSS_LAYERS, self_layers: Sequence[str] = SELF_LAYERS) -> dict:
    """Processors for every attention of `unet`: captures at the named layers (when a store is given),
    inflated self-attention over `frames` frames everywhere else (frames=1: stock behaviour)."""
    processors = {}
    for key in unet.attn_processors:
        name = key[: -len(".processor")]
        if store is not None and (_matches(key, cross_layers, "attn2") or _matches(key, self_layers, "attn1")):
            processors[key] = CaptureAttnProcessor(store, name, frames)
        elif key.endswith("attn1.processor"):
            processors[key] = InflatedAttnProcessor(frames)
    if store is not None:
        for prefix in tuple(cross_layers) + tuple(self_layers):
            if not any(k.startswith(prefix + ".") for k in processors):
                raise ValueError(f"attention layer {prefix} does not exist in this UNet")
    return processors


@contextmanager
def installed(unet, processors: Mapping[str, object]) -> Iterator[None]:
    """Use `processors` (keys as in `unet.attn_processors`) inside the block; restore the saved ones after."""
    saved = dict(unet.attn_processors)
    unknown = sorted(set(processors) - set(saved))
    if unknown:
        raise KeyError(f"no attention processor named {unknown[0]}")
    unet.set_attn_processor({**saved, **processors})
    try:
        yield
    finally:
        unet.set_attn_processor(dict(saved))  # diffusers pops from the dict it is given
