"""Speed and memory of the SMITE diffusion backend on an SD-2.1-base-shaped model with random weights.

Run on a GPU node:   .venv/bin/python bench/gpu_smite.py --device cuda --dtype fp16
CPU smoke version:   .venv/bin/python bench/gpu_smite.py --tiny
Prints seconds per frame for learn steps, the reference pass + DDIM passes, the guided latent
updates and tracking, plus peak accelerator memory; then the same counts run the way the public code
does (one tracker call per query frame) side by side. Random weights: the numbers are about cost,
not quality. No asserts; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from smite.method.learn import Example, PartLearner
from smite.method.segment import WindowSegmenter, plan_windows
from smite.model.backbone import SCHEDULER_CONFIG, Backbone, load_backbone, make_tiny, write_tiny_tokenizer
from smite.model.encode import encode_prompt
from smite.model.settings import DiffusionSettings
from smite.track.flow import FlowTracker


def sd21_shaped(dtype: torch.dtype, device: str, folder: str) -> Backbone:
    """UNet/VAE/text encoder with SD 2.1-base's shapes and random weights (tokenizer: the tiny one)."""
    import diffusers
    import transformers

    write_tiny_tokenizer(folder)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512,
    )
    vocab = tokenizer.get_vocab()
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=1024,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["!"]))
    scheduler = diffusers.DDIMScheduler(**SCHEDULER_CONFIG)
    return Backbone(unet, vae, text, tokenizer, scheduler, path="<random SD-2.1-base shape>").to(device, dtype).freeze()


class TimedSegmenter(WindowSegmenter):
    """WindowSegmenter that adds up the time spent tracking and in guided latent updates."""

    def __init__(self, *args, sync=lambda: None, per_frame_tracking=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.sync, self.per_frame = sync, per_frame_tracking
        self.times = {"tracking": 0.0, "guided updates": 0.0}

    def _tracks(self, frames_model, side):
        start = time.perf_counter()
        if self.per_frame:  # the public code's pattern: one tracker call per query frame
            for q in range(frames_model.shape[0]):
                ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
                queries = np.column_stack([np.full(side * side, q, np.float32), xs.ravel(), ys.ravel()])
                FlowTracker(max_side=self.tracker.max_side).track(frames_model, queries)
        out = super()._tracks(frames_model, side)
        self.times["tracking"] += time.perf_counter() - start
        return out

    def _optimise(self, *args, **kwargs):
        self.sync()
        start = time.perf_counter()
        out = super()._optimise(*args, **kwargs)
        self.sync()
        self.times["guided updates"] += time.perf_counter() - start
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny model, 64², 8 frames")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--learn-steps", type=int, default=10)
    args = parser.parse_args()
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    import tempfile

    tmp = tempfile.mkdtemp()
    if args.tiny:
        torch.set_num_threads(1)
        backbone, res, frames = load_backbone(make_tiny(tmp)).to(args.device, dtype), 64, min(args.frames, 8)
        settings = DiffusionSettings(resolution=res, window=4, overlap=2, learn_steps=args.learn_steps)
    else:
        backbone, res, frames = sd21_shaped(dtype, args.device, tmp), 512, args.frames
        settings = DiffusionSettings(resolution=res, learn_steps=args.learn_steps)
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rng = np.random.default_rng(0)
    video = [rng.random((res, res, 3), dtype=np.float32) for _ in range(frames)]
    labels = np.zeros((res, res), np.uint8)
    labels[res // 4 : res // 2, res // 4 : 3 * res // 4] = 1
    labels[res // 2 : 3 * res // 4, res // 4 : 3 * res // 4] = 2
    print(f"device {args.device} ({torch.cuda.get_device_name() if cuda else 'CPU'}), {args.dtype}, {res}², "
          f"{frames} frames, window {settings.window}/{settings.overlap}, "
          f"{settings.guided_steps}x{settings.guide_iters} guided iterations")

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    learner = PartLearner(backbone, settings)
    learner([Example(video[0], labels)], ("a", "b"))
    sync()
    learn_s = (time.perf_counter() - start) / args.learn_steps
    print(f"learn: {learn_s:.3f} s/step")

    context = encode_prompt(backbone, "part part")[0]
    for pattern, per_frame in (("ours (one tracker call per window)", False),
                               ("public code (one tracker call per query frame)", True)):
        seg = TimedSegmenter(backbone, context, 3, settings, tracker=FlowTracker(max_side=min(res, 480)),
                             sync=sync, per_frame_tracking=per_frame)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        for window in plan_windows(list(range(frames)), settings.window, settings.overlap):
            seg([video[f] for f in window], 0)
        sync()
        total = time.perf_counter() - start
        passes = total - sum(seg.times.values())
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        print(f"segment, {pattern}: {total / frames:.3f} s/frame total | reference+DDIM passes "
              f"{passes / frames:.3f} | guided updates {seg.times['guided updates'] / frames:.3f} | "
              f"tracking {seg.times['tracking'] / frames:.3f} | peak {peak:.1f} GiB")


if __name__ == "__main__":
    main()
