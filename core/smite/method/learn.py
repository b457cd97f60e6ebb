"""Learning part vectors from a few annotated references (SMITE-METHOD §2, "learn").

Reads like the paper and computes what the authors' `src/training.py` does: for each step pick a
reference, augment it in model space, noise its latent to a random t in U{5..100}, run the UNet with
the part vectors in the text conditioning, read the cross- and self-attention maps, and minimise

    L = CE(C, M; class weights) + (K+1)·MSE(W, onehot(M)) + 0.005·L_SD + 0.001·L_freq(W, onehot(M))

(W = WAS(C, A), L_freq from epoch 6, L_SD under classifier-free guidance 100) over the part vectors
(Adam, lr 0.1). A second phase (official default) freezes the vectors and fine-tunes every
cross-attention `to_k`/`to_v` (Adam, lr 1e-6). With a held-out reference the state with the best
held-out mIoU is kept. The backbone comes in through the caller and is left as it was found.

Learning works on arrays and returns a `LearnResult` (the part model and its statistics); it reads
and writes no file: the caller reads the references (`smite.engine.learn_parts`, `smite learn
--refs`) and saves the part model (`model.parts.save_part_model`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError, CancelledError, ReferenceMaskError
from ..model.attention import was_map
from ..model.backbone import Backbone
from ..model.encode import encode_latents, encode_prompt, labels_to_grid, to_model_images, unet_with_maps
from ..model.parts import PartModel
from ..model.settings import DiffusionSettings
from .augment import augment, to_model_space
from .energies import learning_loss, part_losses

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int, str], None]  # (stage, done, total, message), as in smite.engine
# The prompt the vectors start from: the authors' prompts are "background <part> <part> ..." (scripts/configs/*.sh).
BACKGROUND_WORD = "background"


@dataclass
class Example:
    """One reference: image `(H, W, 3)` float [0, 1], labels `(H, W)` uint8 (0 background, k part k)."""

    image: np.ndarray
    labels: np.ndarray
    name: str = ""


@dataclass
class LearnResult:
    """What learning gives: the part model (context, k/v deltas, part names, backbone identity,
    settings) and how it went. Learning writes nothing; a caller that saves the model sets `path`."""

    model: PartModel
    losses: list[float] = field(default_factory=list)
    best_step: int = 0
    val_miou: float | None = None
    path: str = ""

    @property
    def parts(self) -> tuple[str, ...]:
        return self.model.parts

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def backbone_hash(self) -> str:
        return self.model.backbone_hash

    def to_dict(self) -> dict:
        return {"path": self.path, "parts": list(self.parts), "steps": self.steps, "final_loss": self.losses[-1] if
                self.losses else None, "best_step": self.best_step, "val_miou": self.val_miou,
                "backbone_hash": self.backbone_hash}


# -- learning helpers ----------------------------------------------------------------------------

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
        return learning_loss(ce, mse, freq, eps, noise, classes, epoch, s)

    def __call__(self, examples: Sequence[Example], parts: Sequence[str], *, val: Sequence[Example] = (),
                 progress: ProgressFn | None = None, cancel: threading.Event | None = None):
        """Learn `parts` from `examples` (label k = k-th part); `val` are held-out references.

        Returns the part model with the held-out best state (the last without `val`) and the losses.
        """
        s, bb = self.settings, self.backbone
        report = progress or (lambda *a: None)
        examples, val, parts = list(examples), list(val), tuple(parts)
        if not examples:
            raise BadInputError("learning needs at least one reference")
        for ex in (*examples, *val):
            top = int(ex.labels.max()) if ex.labels.size else 0
            if top > len(parts):
                raise ReferenceMaskError(
                    f"reference {ex.name} has label id {top} but only {len(parts)} part(s) were named")
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
        model = PartModel(parts=parts, context=ctx, backbone_hash=bb.hash, settings=s.to_dict(), kv_deltas=deltas)
        return LearnResult(model, losses, best_step, best_score if val else None)
