"""Speed and memory of the SMITE diffusion backend on an SD-2.1-base-shaped model with random weights.

Run on a GPU node:   .venv/bin/python bench/gpu_smite.py --device cuda --dtype fp16
CPU smoke version:   .venv/bin/python bench/gpu_smite.py --tiny
Prints seconds per learn step, then runs the whole diffusion backend (windows, carry, hierarchical
coarse + crop pass) over the same clip twice, in one process: our default (guided denoising with
E_track and E_reg, 16/8 windows) and the authors' shipped inference (`--preset official`: weights 0,
so the reference pass only, 18/0 windows). For each: seconds per frame in total, in guided latent
updates and in tracking, and peak accelerator memory. Random weights: the numbers are about cost,
not quality. No asserts; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np
import torch

from smite.backends.diffusion import DiffusionBackend
from smite.config import Settings
from smite.frames import FrameSource
from smite.method.learn import Example, PartLearner
from smite.method.segment import WindowSegmenter
from smite.model.backbone import SCHEDULER_CONFIG, Backbone, load_backbone, make_tiny, write_tiny_tokenizer
from smite.model.settings import PRESETS, DiffusionSettings
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


class Timers:
    """Adds up the time WindowSegmenter spends tracking and in guided latent updates (bench-only wrap)."""

    def __init__(self, sync) -> None:
        self.sync = sync
        self.times = {"tracking": 0.0, "guided updates": 0.0}
        self._saved = {}

    def _timed(self, key: str, method):
        def run(segmenter, *args, **kwargs):
            self.sync()
            start = time.perf_counter()
            out = method(segmenter, *args, **kwargs)
            self.sync()
            self.times[key] += time.perf_counter() - start
            return out
        return run

    def __enter__(self) -> "Timers":
        for key, name in (("tracking", "_tracks"), ("guided updates", "_optimise")):
            self._saved[name] = getattr(WindowSegmenter, name)
            setattr(WindowSegmenter, name, self._timed(key, self._saved[name]))
        return self

    def __exit__(self, *exc) -> None:
        for name, method in self._saved.items():
            setattr(WindowSegmenter, name, method)


def write_plate(folder: str, video: list[np.ndarray]) -> str:
    """The clip as a PNG sequence (the backend reads frames through FrameSource, as in production)."""
    pattern = os.path.join(folder, "plate", "%05d.png")
    os.makedirs(os.path.dirname(pattern), exist_ok=True)
    for i, frame in enumerate(video):
        cv2.imwrite(pattern % i, (frame[:, :, ::-1] * 255).astype(np.uint8))
    return pattern


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
    part_model = learner([Example(video[0], labels)], ("a", "b")).model
    sync()
    print(f"learn: {(time.perf_counter() - start) / args.learn_steps:.3f} s/step")
    pattern = write_plate(tmp, video)
    patterns = (("ours (default: guided)", settings),
                ("authors' shipped (--preset official)", DiffusionSettings.from_dict(
                    {**PRESETS["official"], "resolution": res, "learn_steps": args.learn_steps})))
    for name, diffusion in patterns:
        if args.tiny:
            diffusion = diffusion.replace(window=min(diffusion.window, 4), overlap=min(diffusion.overlap, 2))
        backend = DiffusionBackend(Settings(backend="diffusion", diffusion=diffusion), diffusion, backbone=backbone,
                                   part_model=part_model, tracker=FlowTracker(max_side=min(res, 480)))
        state = backend.init_state(FrameSource(pattern, list(range(frames)), "sRGB - Texture"), ("a", "b"))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        with Timers(sync) as timers:
            for _ in backend.propagate(state):
                pass
        sync()
        total = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        print(f"segment, {name}, windows {diffusion.window}/{diffusion.overlap}: {total / frames:.3f} s/frame total | "
              f"guided updates {timers.times['guided updates'] / frames:.3f} | "
              f"tracking {timers.times['tracking'] / frames:.3f} | peak {peak:.1f} GiB")


if __name__ == "__main__":
    main()
