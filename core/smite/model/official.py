"""The authors' checkpoints (`ckpt_best.pt` of alimohammadiamirhossein/smite) as SMITE part models.

Why: parts learned with the authors' code should segment with ours without learning them again.
What their file holds (read from their code, file:line of that repository):

- one `torch.save` dict (src/unet_utils.py:90-105): the training hparams (src/training.py:59-70:
  dataset_name, dataset_size, num_of_epochs, learning_rate, training_mode, ...), `"embeddings"`:
  `{"embedding_i": (1, 1, D)}` for i = 0..K-1 (unet_utils.py:83-87), and, when the UNet was trained,
  `"unet"`: `{parameter name: tensor}` for every parameter whose name contains a string of the training
  mode (unet_utils.py:73-80), i.e. `…attn2.to_k.weight` / `…attn2.to_v.weight` for their default mode
  `text_embeds+crossattn_kv` (src/optimization.py:17, scripts/common/common_train_params.sh:12);
- those k/v tensors are full weights: loading copies them over the UNet's (unet_utils.py:115-119); the
  names are diffusers' 2-D UNet names (utils/transfer_weights.py copies 2-D weights onto them by name);
- the prompt is "background part1 … partK" (scripts/configs/*.sh) with K+1 = words (utils/setup.py:127);
  K vectors (src/embeddings.py:23) go to token columns 1..K, column 0 keeps the start-of-text encoding and
  the columns after K keep the encoded base prompt (embeddings.py:87-92); classes are token columns
  0..K (run.py:55), so column 0 is background, as in our part model;
- the base prompt is "" in the reference pass (src/inference.py:597-600), their shipped inference, and
  the `--prompt` text in the guided pass (inference.py:181-190) and in training (training.py:285-294).

Our part model stores k/v as deltas from the backbone it is used with, so the import needs that backbone;
how far the checkpoint's weights may lie from it follows from how the authors trained them (`kv_drift_bound`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from ..errors import BadInputError, MissingModelError
from .backbone import Backbone
from .encode import encode_prompt
from .parts import PartModel

KV_SUFFIXES = (".to_k.weight", ".to_v.weight")
# Adam with torch's default betas, as the authors build it (optimization.py:62): one step moves a weight by at most
# lr·|m̂|/√v̂ ≤ lr·(1-β1)/√((1-β2)(1-β1²/β2)) (Cauchy-Schwarz over the moment sums; the finite sums, the bias
# corrections and ε only make it smaller).
ADAM_BETAS = (0.9, 0.999)
ADAM_STEP_BOUND = (1 - ADAM_BETAS[0]) / math.sqrt(
    (1 - ADAM_BETAS[1]) * (1 - ADAM_BETAS[0] ** 2 / ADAM_BETAS[1]))
# training.py:171-180: with text_embeds+…, the UNet steps only in epochs > 50 that are not multiples of 10
KV_PHASE_AFTER_EPOCH = 50


@dataclass(frozen=True)
class OfficialCheckpoint:
    """What an authors' checkpoint holds: K part vectors `(D,)`, full k/v weights by module name, hparams."""

    path: str
    embeddings: tuple[Tensor, ...]
    kv: dict[str, Tensor]
    hparams: dict[str, Any]


def read_official(path: str) -> OfficialCheckpoint:
    """Read `ckpt_best.pt` without running code from it (weights-only unpickling)."""
    if not os.path.isfile(path):
        raise MissingModelError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error, said in one line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise BadInputError(f"{path} is not a readable SMITE checkpoint (ckpt_best.pt): {reason}") from None
    if not isinstance(data, dict) or not isinstance(data.get("embeddings"), dict) or not data["embeddings"]:
        mode = data.get("training_mode", "?") if isinstance(data, dict) else "?"
        raise BadInputError(f"{path} has no part embeddings ('embeddings'; training_mode {mode}): "
                            "only checkpoints of a text_embeds training mode can become part models")
    embeddings = data["embeddings"]
    names = [f"embedding_{i}" for i in range(len(embeddings))]
    if sorted(embeddings) != sorted(names):
        raise BadInputError(
            f"{path}: embeddings are named {', '.join(sorted(embeddings))}, expected {', '.join(names)}")
    vectors = tuple(torch.as_tensor(embeddings[n]).detach().float().reshape(-1) for n in names)
    kv: dict[str, Tensor] = {}
    for name, weight in (data.get("unet") or {}).items():
        if ".attn2." not in name or not name.endswith(KV_SUFFIXES):
            raise BadInputError(
                f"{path} fine-tunes {name} (training_mode {data.get('training_mode', '?')}); "
                "a SMITE part model holds only attn2 to_k/to_v weights")
        kv[name[: -len(".weight")]] = torch.as_tensor(weight).detach()
    hparams = {k: v for k, v in data.items() if k not in ("embeddings", "unet")}
    return OfficialCheckpoint(path, vectors, kv, hparams)


def kv_drift_bound(hparams: dict[str, Any]) -> float | None:
    """Largest change of any k/v weight the authors' training can make, or None without the hparams to tell.

    Steps: `dataset_size` batches per epoch (batch size 1, utils/args.py:9; larger batches take fewer).
    Learning rate: `learning_rate`, the UNet's (optimization.py:47); with text_embeds+… the UNet steps only in
    epochs > 50 not divisible by 10 (training.py:171-180); without text embeddings every epoch, at 100× the rate
    before epoch 10 and 10× before 40 (training.py:183-190). Each step moves a weight by ≤ ADAM_STEP_BOUND·lr.
    """
    try:
        lr, epochs, size = float(hparams["learning_rate"]), int(hparams["num_of_epochs"]), int(hparams["dataset_size"])
    except (KeyError, TypeError, ValueError):
        return None
    mode = str(hparams.get("training_mode", "text_embeds+crossattn_kv"))
    if "text_embeds+" in mode:
        rate = lr * sum(1 for e in range(epochs) if e > KV_PHASE_AFTER_EPOCH and e % 10 != 0)
    else:
        rate = lr * sum(100 if e < 10 else 10 if e < 40 else 1 for e in range(epochs))
    return ADAM_STEP_BOUND * rate * size


def _precision(*tensors: Tensor) -> float:
    """Relative rounding step of the coarsest of these dtypes (fp16 copies of a model are the same model)."""
    return max(torch.finfo(t.dtype).eps if t.dtype.is_floating_point else 0.0 for t in tensors)


def official_to_part_model(ckpt: OfficialCheckpoint, backbone: Backbone, parts: Sequence[str], *,
                           base_prompt: str = "") -> PartModel:
    """The part model that conditions `backbone` as the authors' code does with `ckpt` (see module doc)."""
    parts = tuple(parts)
    path, k = ckpt.path, len(ckpt.embeddings)
    if len(parts) != k:
        raise BadInputError(
            f"{path} holds {k} part embedding(s) but {len(parts)} part name(s) were given ({', '.join(parts)}): "
            "name the words of its --prompt after 'background', in order")
    width = backbone.text_width
    for i, vec in enumerate(ckpt.embeddings):
        if vec.numel() != width:
            raise BadInputError(f"{path}: embedding_{i} has width {vec.numel()} but the loaded model's text width is "
                                f"{width} (learned on another Stable Diffusion version?)")
    base = encode_prompt(backbone, base_prompt)[0].detach().to("cpu", torch.float32)
    context = torch.cat([base[:1], torch.stack(ckpt.embeddings), base[1 + k:]], dim=0)

    modules = dict(backbone.unet.named_modules())
    bound = kv_drift_bound(ckpt.hparams)
    deltas: dict[str, Tensor] = {}
    for name, weight in sorted(ckpt.kv.items()):
        if name not in modules or not hasattr(modules[name], "weight"):
            raise BadInputError(f"{path}: {name} is not a module of the loaded UNet (another model layout?)")
        own = modules[name].weight.detach()
        if tuple(weight.shape) != tuple(own.shape):
            raise BadInputError(f"{path}: {name} has shape {tuple(weight.shape)} but the loaded UNet's is "
                                f"{tuple(own.shape)} (learned on another Stable Diffusion version?)")
        delta = weight.to("cpu", torch.float32) - own.to("cpu", torch.float32)
        if bound is not None:
            limit = bound + float(own.abs().max()) * _precision(weight, own)
            drift = float(delta.abs().max())
            if drift > limit:
                raise BadInputError(
                    f"{path}: {name} differs from the loaded model's by up to {drift:.3g}, more than its training "
                    f"can move it ({limit:.3g}): it was learned on another backbone; pass that model with --model")
        deltas[name] = delta
    scalars = {key: value for key, value in ckpt.hparams.items() if isinstance(value, (str, int, float, bool))}
    settings = {"imported_from": "official", "checkpoint": os.path.basename(path), "base_prompt": base_prompt,
                "hparams": scalars}
    return PartModel(parts=parts, context=context, backbone_hash=backbone.hash, settings=settings, kv_deltas=deltas)
