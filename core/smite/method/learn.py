"""Learning part vectors from a few annotated references (SMITE-METHOD §2, "learn").

Reads like the paper and computes what the authors' `src/training.py` does: for each step pick a
reference, augment it in model space, noise its latent to a random t in U{5..100}, run the UNet with
the part vectors in the text conditioning, read the cross- and self-attention maps, and minimise

    L = CE(C, M; class weights) + (K+1)·MSE(W, onehot(M)) + 0.005·L_SD + 0.001·L_freq(W, onehot(M))

(W = WAS(C, A), L_freq from epoch 6, L_SD under classifier-free guidance 100) over the part vectors
(Adam, lr 0.1). A second phase (official default) freezes the vectors and fine-tunes every
cross-attention `to_k`/`to_v` (Adam, lr 1e-6). With a held-out reference the state with the best
held-out mIoU is kept. The backbone comes in through the caller and is left as it was found.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import ShotSpec
from ..errors import BadInputError, CancelledError, ReferenceMaskError
from ..model.attention import was_map
from ..model.backbone import Backbone, load_backbone
from ..model.encode import encode_latents, encode_prompt, labels_to_grid, to_model_images, unet_with_maps
from ..model.parts import PartModel, save_part_model
from ..model.settings import DiffusionSettings
from .augment import augment, to_model_space

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int, str], None]  # (stage, done, total, message), as in smite.engine
# The prompt the vectors start from: the authors' prompts are "background <part> <part> ..." (scripts/configs/*.sh).
BACKGROUND_WORD = "background"
FREQ_CUTOFF = 30  # src/frequency_filter.py:39-43: the "high-pass" zeroes the central (2·30)² shifted coefficients
FREQ_HIGH_WEIGHT = 10.0  # src/frequency_filter.py:61: high-pass terms count 10x


@dataclass
class Example:
    """One reference: image `(H, W, 3)` float [0, 1], labels `(H, W)` uint8 (0 background, k part k)."""

    image: np.ndarray
    labels: np.ndarray
    name: str = ""


@dataclass
class LearnResult:
    path: str
    parts: tuple[str, ...]
    steps: int
    losses: list[float] = field(default_factory=list)
    best_step: int = 0
    val_miou: float | None = None
    backbone_hash: str = ""

    def to_dict(self) -> dict:
        return {"path": self.path, "parts": list(self.parts), "steps": self.steps, "final_loss": self.losses[-1] if
                self.losses else None, "best_step": self.best_step, "val_miou": self.val_miou,
                "backbone_hash": self.backbone_hash}


# -- losses (pure) ---------------------------------------------------------------------------------

def class_weights(labels: Tensor, classes: int) -> Tensor:
    """SMITE's CE weights: background 1, part k = (#foreground px)/(#px of k), absent parts 0.

    labels: `(P,)` or any shape of class ids. Returns `(classes,)` float32.
    """
    counts = torch.bincount(labels.reshape(-1), minlength=classes)[:classes].float()
    fg = counts[1:].sum()
    weights = torch.where(counts > 0, fg / counts.clamp_min(1.0), torch.zeros_like(counts))
    weights[0] = 1.0
    return weights


def part_losses(cross: Tensor, self_attn: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(class-weighted CE of the cross logits, MSE and FFT loss of the WAS map to one-hot labels).

    cross `(B, P, K+1)` raw logits, self_attn `(B, P, P)`, labels `(B, P)` long with P a square number.
    The caller scales the MSE by K+1 (the authors' `num_parts` counts background, src/training.py:145).
    """
    classes = cross.shape[-1]
    weights = class_weights(labels, classes).to(cross.device, cross.dtype)
    ce = F.cross_entropy(cross.reshape(-1, classes), labels.reshape(-1), weight=weights)
    target = F.one_hot(labels, classes).to(cross.dtype)
    was = was_map(cross, self_attn)
    mse = F.mse_loss(was, target)
    side = int(round(was.shape[1] ** 0.5))
    maps = was.reshape(-1, side, side, classes).permute(0, 3, 1, 2)
    truth = target.reshape(-1, side, side, classes).permute(0, 3, 1, 2)
    freq = sum(frequency_loss(m, g) for m, g in zip(maps, truth))
    return ce, mse, freq


def frequency_loss(pred: Tensor, target: Tensor, cutoff: int = FREQ_CUTOFF) -> Tensor:
    """The authors' FFT loss (src/frequency_filter.py:10-65): amplitude and phase MSE of the spectra.

    pred, target `(C, H, W)`. Per class c, with S = fftshift(fft2(x_c)) and S_hi = S with the central
    `[H/2 - cutoff, H/2 + cutoff)` x `[W/2 - cutoff, W/2 + cutoff)` block set to 0:

        L = sum_c  mse(|S_p|, |S_t|) + mse(arg S_p, arg S_t) + 10·(mse(|S_hi_p|, |S_hi_t|) + mse(arg ..., arg ...))

    Their "low-pass" mask is all ones (it sets a block of a ones-mask to 1), so the first pair is the
    full spectrum. The zeroed coefficients count as 0 in every mean (amplitude and phase). Their complex
    multiply by the 0 mask leaves signed zeros whose angle can read π; that adds a constant with no
    gradient to their loss value, which we leave out: the gradients are the same.
    """
    spec_p = torch.fft.fftshift(torch.fft.fft2(pred), dim=(-2, -1))
    spec_t = torch.fft.fftshift(torch.fft.fft2(target), dim=(-2, -1))
    h, w = pred.shape[-2:]
    high = torch.ones((h, w), dtype=torch.bool, device=pred.device)
    high[max(h // 2 - cutoff, 0) : h // 2 + cutoff, max(w // 2 - cutoff, 0) : w // 2 + cutoff] = False

    def pair(a: Tensor, b: Tensor, keep: Tensor | None = None) -> Tensor:
        amp_a, amp_b, ph_a, ph_b = a.abs(), b.abs(), torch.angle(a), torch.angle(b)
        if keep is not None:
            amp_a, amp_b, ph_a, ph_b = (x * keep for x in (amp_a, amp_b, ph_a, ph_b))
        per_class = ((amp_a - amp_b) ** 2).mean((-2, -1)) + ((ph_a - ph_b) ** 2).mean((-2, -1))
        return per_class.sum()

    return pair(spec_p, spec_t) + FREQ_HIGH_WEIGHT * pair(spec_p, spec_t, high)


def initial_context(backbone: Backbone, parts: Sequence[str]) -> tuple[Tensor, Tensor, list[int]]:
    """The text conditioning learning starts from: (encoded prompt `(1, 77, D)`, vectors `(K, D)`, positions).

    The prompt is the authors' "background <part 1> ... <part K>" (src/embeddings.py:8-29 encodes it and
    src/embeddings.py:87-92 puts the vectors at columns 1..K, background reading column 0). Part k starts
    from the encoder output at the first token of its own name (theirs takes column k, the word before it;
    SMITE-METHOD §2), so different names start from different vectors.
    """
    tok = backbone.tokenizer
    position = 1 + len(tok(BACKGROUND_WORD, add_special_tokens=False).input_ids)
    positions = []
    for name in parts:
        positions.append(position)
        position += max(1, len(tok(name, add_special_tokens=False).input_ids))
    if position >= tok.model_max_length:
        raise BadInputError(f"the part names ({', '.join(parts)}) are too long for the text encoder's "
                            f"{tok.model_max_length} tokens")
    base = encode_prompt(backbone, " ".join([BACKGROUND_WORD, *parts]))
    return base, base[0, positions].clone(), positions


def miou(pred: Tensor, labels: Tensor, classes: int) -> float:
    """Mean IoU over the classes present in either map (background included)."""
    ious = []
    for c in range(classes):
        a, b = pred == c, labels == c
        union = (a | b).sum().item()
        if union:
            ious.append((a & b).sum().item() / union)
    return float(np.mean(ious)) if ious else 1.0


# -- inputs ----------------------------------------------------------------------------------------

def examples_from_shot(shot: ShotSpec, frames: Sequence[int] | None = None) -> list[Example]:
    """The shot's references (or the given reference frames) as examples, in model colour space."""
    from ..frames import FrameSource
    from ..references import load_references

    wanted = list(shot.reference_frames if frames is None else frames)
    source = FrameSource(shot.plate, wanted, shot.colorspace)
    probs = load_references(shot, source.size)
    return [Example(source.get(f), probs[f].argmax(0).astype(np.uint8), f"frame {f}") for f in wanted if f in probs]


def examples_from_folder(folder: str, num_parts: int) -> list[Example]:
    """References from `folder/{images|frames}/NAME.*` with label maps `folder/masks/NAME.png`."""
    from ..io.image import read_label_map, read_rgb

    candidates = [os.path.join(folder, d) for d in ("images", "frames")]
    images_dir = next((d for d in candidates if os.path.isdir(d)), None)
    if images_dir is None or not os.path.isdir(os.path.join(folder, "masks")):
        raise BadInputError(f"reference folder {folder} needs images/ (or frames/) and masks/ subfolders")
    examples = []
    for path in sorted(glob.glob(os.path.join(images_dir, "*"))):
        stem = os.path.splitext(os.path.basename(path))[0]
        masks = glob.glob(os.path.join(glob.escape(folder), "masks", glob.escape(stem) + ".*"))
        if not masks:
            continue
        labels = read_label_map(masks[0])
        if int(labels.max()) > num_parts:
            raise ReferenceMaskError(
                f"label map {masks[0]} has label id {int(labels.max())} but only {num_parts} part(s) were named")
        examples.append(Example(read_rgb(path), labels.astype(np.uint8), stem))
    if not examples:
        raise BadInputError(f"no image in {images_dir} has a label map of the same name in {folder}/masks")
    return examples


# -- the learner -----------------------------------------------------------------------------------

class PartLearner:
    """Learns part vectors (and optionally k/v deltas) on a frozen backbone; see module doc."""

    def __init__(self, backbone: Backbone, settings: DiffusionSettings, seed: int = 0) -> None:
        self.backbone = backbone
        self.settings = settings
        self.seed = seed  # the job's one seed (`config.Settings.seed`)
        self.device = next(backbone.unet.parameters()).device

    def _kv_modules(self) -> dict[str, torch.nn.Linear]:
        mods = {}
        for name, module in self.backbone.unet.named_modules():
            if name.endswith("attn2"):
                mods[f"{name}.to_k"], mods[f"{name}.to_v"] = module.to_k, module.to_v
        return mods

    def _prepare(self, example: Example, classes: int, rng: np.random.Generator | None,
                 keep_class: int = 0) -> tuple[Tensor, Tensor]:
        s = self.settings
        if rng is None:
            image, labels = to_model_space(example.image, example.labels, s.resolution)
        else:
            image, labels = augment(example.image, example.labels, s, rng, keep_class)
        latents = encode_latents(self.backbone, to_model_images([image], s.resolution))
        side = latents.shape[-1]
        return latents, labels_to_grid(labels, classes, side).reshape(1, -1).to(self.device)

    def _evaluate(self, examples: list[Example], context: Tensor, classes: int) -> float:
        """Mean held-out mIoU of argmax WAS at t = ref_t with fixed noise."""
        scores = []
        gen = torch.Generator().manual_seed(self.seed + 1)
        for ex in examples:
            latents, labels = self._prepare(ex, classes, None)
            noise = torch.randn(latents.shape, generator=gen).to(latents)
            t = torch.tensor([self.settings.ref_t], device=self.device)
            with torch.no_grad():
                _, cross, attn = unet_with_maps(self.backbone, self.backbone.scheduler.add_noise(latents, noise, t), t,
                                                context, classes)
            scores.append(miou(was_map(cross, attn).argmax(-1), labels, classes))
        return float(np.mean(scores))

    def step_loss(self, latents: Tensor, labels: Tensor, t: Tensor, noise: Tensor, context: Tensor,
                  uncond: Tensor | None, classes: int, epoch: int, kv_phase: bool) -> Tensor:
        """The loss of one step (module doc). latents `(1, 4, h, w)`, labels `(1, h·w)`, context `(1, 77, D)`.

        Under guidance the unconditional half runs with gradients in the k/v phase, as the authors' one
        batched pass does (src/training.py:309-336): the k/v weights shape it too. In the vector phase it
        does not depend on the vectors, so it runs without a graph.
        """
        s, bb = self.settings, self.backbone
        noisy = bb.scheduler.add_noise(latents, noise, t)
        eps, cross, attn = unet_with_maps(bb, noisy, t, context, classes)
        ce, mse, freq = part_losses(cross, attn, labels)
        if uncond is not None:
            with torch.set_grad_enabled(kv_phase and torch.is_grad_enabled()):
                eps_u = bb.unet(noisy, t, encoder_hidden_states=uncond).sample
            eps = eps_u + s.sd_guidance * (eps - eps_u)
        loss = s.ce_weight * ce + s.was_weight * classes * mse + s.sd_weight * F.mse_loss(eps, noise)
        if epoch >= s.freq_start_epoch and s.freq_weight:  # src/training.py:154: from epoch 6 (epoch > 5)
            loss = loss + s.freq_weight * freq
        return loss

    def __call__(self, examples: Sequence[Example], parts: Sequence[str], *, val: Sequence[Example] = (),
                 progress: ProgressFn | None = None, cancel: threading.Event | None = None):
        """Returns (context `(77, D)`, kv deltas, losses, best step, held-out mIoU or None)."""
        s, bb = self.settings, self.backbone
        report = progress or (lambda *a: None)
        examples, val = list(examples), list(val)
        if not examples:
            raise BadInputError("learning needs at least one reference")
        k = len(parts)
        classes = k + 1
        steps = s.learn_steps or s.learn_epochs * len(examples)
        kv_start = s.kv_start_epoch * len(examples) if s.kv_phase else steps
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)

        # 1. text conditioning: background = start-of-text column, part k initialised from its own name
        base, vectors, _ = initial_context(bb, parts)
        base, vectors = base.to(self.device), vectors.to(self.device).requires_grad_(True)
        uncond = encode_prompt(bb, "").to(self.device) if s.sd_guidance != 1.0 else None
        kv = self._kv_modules() if kv_start < steps else {}
        originals = {name: m.weight.detach().clone() for name, m in kv.items()}
        optimizer = torch.optim.Adam([vectors], lr=s.learn_lr)

        def context() -> Tensor:
            return torch.cat([base[:, :1], vectors.unsqueeze(0), base[:, 1 + k :]], dim=1)

        def snapshot():
            return context()[0].detach().clone(), {n: (m.weight.detach() - originals[n]).clone() for n, m in kv.items()}

        losses: list[float] = []
        best, best_score, best_step = None, -1.0, 0
        order: list[int] = []
        try:
            for step in range(steps):
                if cancel is not None and cancel.is_set():
                    raise CancelledError(f"learning cancelled at step {step} of {steps}; nothing was written")
                if step == kv_start:  # 2. second phase: vectors frozen, attn2 k/v fine-tuned
                    vectors.requires_grad_(False)
                    for m in kv.values():
                        m.weight.requires_grad_(True)
                    optimizer = torch.optim.Adam([m.weight for m in kv.values()], lr=s.kv_lr)
                if not order:
                    order = list(rng.permutation(len(examples)))
                # the crop keeps class (step mod K+1): the authors' dataset cycles it per item (utils/dataset.py:224)
                latents, labels = self._prepare(examples[order.pop()], classes, rng, step % classes)
                # 3. noise to a random low timestep, read the maps, score them
                t = torch.randint(s.learn_t_min, s.learn_t_max + 1, (1,), generator=gen).to(self.device)
                noise = torch.randn(latents.shape, generator=gen).to(latents)
                loss = self.step_loss(latents, labels, t, noise, context(), uncond, classes,
                                      step // len(examples), step >= kv_start)
                optimizer.zero_grad(set_to_none=True)
                (loss * s.loss_scale).backward()  # src/training.py:402 (scale=0.01), :163
                optimizer.step()
                losses.append(float(loss.detach()))
                # 4. keep the best state on held-out references
                last = step == steps - 1
                if val and ((step + 1) % s.val_every == 0 or last):
                    score = self._evaluate(val, context().detach(), classes)
                    if score > best_score:
                        best, best_score, best_step = snapshot(), score, step + 1
                report("learn", step + 1, steps, f"loss {losses[-1]:.4f}")
            if best is None:
                best, best_step = snapshot(), steps
        finally:
            with torch.no_grad():
                for name, m in kv.items():
                    m.weight.copy_(originals[name])
                    m.weight.requires_grad_(False)
        ctx, deltas = best
        return ctx, deltas, losses, best_step, (best_score if val else None)


def learn_examples(examples: Sequence[Example], parts: Sequence[str], out_path: str, settings: DiffusionSettings, *,
                   seed: int = 0, backbone: Backbone | None = None, val: Sequence[Example] = (),
                   progress: ProgressFn | None = None,
                   cancel: threading.Event | None = None) -> LearnResult:
    """Learn `parts` from examples and write the part model to `out_path`.

    `settings` is a DiffusionSettings, or a Settings object that nests one as `.diffusion`; `seed` is
    the job's one seed (`config.Settings.seed`).
    """
    settings = getattr(settings, "diffusion", settings)
    parts = tuple(parts)
    for ex in examples:
        top = int(ex.labels.max()) if ex.labels.size else 0
        if top > len(parts):
            raise ReferenceMaskError(f"reference {ex.name} has label id {top} but only {len(parts)} part(s) were named")
    backbone = backbone or load_backbone(settings.model or None)
    ctx, deltas, losses, best_step, score = PartLearner(backbone, settings, seed)(
        examples, parts, val=val, progress=progress, cancel=cancel)
    model = PartModel(parts=parts, context=ctx, backbone_hash=backbone.hash, settings=settings.to_dict(),
                      kv_deltas=deltas)
    save_part_model(out_path, model)
    return LearnResult(out_path, parts, len(losses), losses, best_step, score, backbone.hash)


def learn_parts(shot: ShotSpec, out_path: str, settings: DiffusionSettings, *, seed: int = 0,
                backbone: Backbone | None = None,
                holdout: int | None = None, progress: ProgressFn | None = None,
                cancel: threading.Event | None = None) -> LearnResult:
    """Learn the shot's parts from its references; `holdout` names a reference frame kept for validation."""
    examples = examples_from_shot(shot)
    val = [e for e, f in zip(examples, shot.reference_frames) if f == holdout]
    train = [e for e, f in zip(examples, shot.reference_frames) if f != holdout]
    if holdout is not None and not val:
        raise BadInputError(f"holdout frame {holdout} is not a reference frame of {shot.source}")
    if not train:
        raise BadInputError(f"{shot.source}: no reference left to learn from after holding out frame {holdout}")
    return learn_examples(train, shot.parts, out_path, settings, seed=seed, backbone=backbone, val=val,
                          progress=progress, cancel=cancel)
