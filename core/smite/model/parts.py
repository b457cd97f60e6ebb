"""The part model file: what `smite learn` produces and `smite segment --parts` consumes.

One `.smite` file is a safetensors archive: the text conditioning with the learned part vectors in
it, optional fine-tuned attn2 k/v deltas, and JSON metadata (format version, part names, the
backbone identity hash, the settings it was learned with). The backbone hash is checked on use:
part vectors only mean something in the text space of the model they were learned in.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import BadInputError, MissingModelError
from ..hostapi.atomic import replacing

PART_MODEL_FORMAT = "smite-part-model"
PART_MODEL_VERSION = 1
KV_PREFIX = "kv/"


@dataclass
class PartModel:
    """Learned parts.

    context: `(L, D)` text-encoder output with background at column 0 and part k at column k.
    kv_deltas: `{module name: weight delta}` for attn2 `to_k`/`to_v` (empty without the k/v phase).
    """

    parts: tuple[str, ...]
    context: Tensor
    backbone_hash: str
    settings: dict[str, Any] = field(default_factory=dict)
    kv_deltas: dict[str, Tensor] = field(default_factory=dict)
    version: int = PART_MODEL_VERSION

    @property
    def vectors(self) -> Tensor:
        """The learned part vectors `(K, D)` (columns 1..K of the context)."""
        return self.context[1 : 1 + len(self.parts)]

    def check_backbone(self, backbone_hash: str, source: str = "part model") -> None:
        if backbone_hash != self.backbone_hash:
            raise BadInputError(
                f"{source} was learned on backbone {self.backbone_hash} but the loaded model is {backbone_hash}: "
                "learn the parts again with this model (smite learn) or pass the model they were learned with"
            )


def save_part_model(path: str, model: PartModel) -> str:
    """Write `model` to `path` atomically (temp file + rename); returns the path."""
    from safetensors.torch import save_file

    tensors = {"context": model.context.detach().to("cpu", torch.float32).contiguous()}
    for name, delta in model.kv_deltas.items():
        tensors[KV_PREFIX + name] = delta.detach().to("cpu", torch.float32).contiguous()
    metadata = {
        "format": PART_MODEL_FORMAT,
        "version": str(model.version),
        "parts": json.dumps(list(model.parts)),
        "backbone": model.backbone_hash,
        "settings": json.dumps(model.settings, sort_keys=True),
    }
    with replacing(path) as temp:
        save_file(tensors, temp, metadata=metadata)
    return path


def load_part_model(path: str, backbone_hash: str | None = None) -> PartModel:
    """Read a part model; with `backbone_hash`, refuse one learned on another backbone."""
    from safetensors import SafetensorError, safe_open

    if not os.path.isfile(path):
        raise MissingModelError(f"part model not found: {path}")
    try:
        with safe_open(path, framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise BadInputError(f"{path} is not a SMITE part model ({reason})") from None
    if meta.get("format") != PART_MODEL_FORMAT or "context" not in tensors:
        raise BadInputError(f"{path} is not a SMITE part model (no '{PART_MODEL_FORMAT}' metadata)")
    version = int(meta.get("version", "0"))
    if version > PART_MODEL_VERSION:
        raise BadInputError(
            f"part model {path} has format version {version}; this SMITE reads up to {PART_MODEL_VERSION}")
    model = PartModel(
        parts=tuple(json.loads(meta["parts"])),
        context=tensors.pop("context"),
        backbone_hash=meta.get("backbone", ""),
        settings=json.loads(meta.get("settings", "{}")),
        kv_deltas={k[len(KV_PREFIX):]: v for k, v in tensors.items() if k.startswith(KV_PREFIX)},
        version=version,
    )
    if backbone_hash is not None:
        model.check_backbone(backbone_hash, f"part model {path}")
    return model
