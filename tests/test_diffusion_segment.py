"""SMITE diffusion segmenting on the tiny SD: windows, seeds, DDIM, guidance energies, end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from smite.backends.diffusion import DiffusionBackend  # noqa: E402
from smite.config import Settings, load_shot  # noqa: E402
from smite.engine import learn_parts  # noqa: E402
from smite.frames import FrameSource  # noqa: E402
from smite.io.image import read_label_map  # noqa: E402
from smite.method.segment import (  # noqa: E402
    ADAM_BETAS, WindowSegmenter, adam_update, ddim_move, plan_windows, reference_timestep, voted_labels, window_seed,
)
from smite.model.backbone import load_backbone, make_tiny  # noqa: E402
from smite.model.parts import load_part_model  # noqa: E402
from smite.model.settings import DiffusionSettings  # noqa: E402

CHAIR = os.path.join(os.path.dirname(__file__), "data", "chair")
NO_AUG = dict(aug_crop=0.0, aug_rotate=0.0, aug_flip=0.0, aug_blur=0.0, aug_dropout=0.0, aug_zoom_out=0.0)
FAST = DiffusionSettings(resolution=64, window=4, overlap=2, guide_iters=2, guided_steps=2, learn_steps=6,
                         kv_phase=False, **NO_AUG)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shot_and_model(tmp_path_factory):
    """A 2-part chair shot (mask split left/right) with 2 references, a tiny SD and a part model learned on it."""
    root = tmp_path_factory.mktemp("seg")
    tiny = make_tiny(str(root / "tiny"), seed=0)
    from PIL import Image

    refs = []
    for f in (0, 11):
        labels = read_label_map(os.path.join(CHAIR, "masks", f"{f:05d}.png")).astype(np.uint8)
        xs = np.nonzero(labels)[1]
        labels[(labels > 0) & (np.arange(labels.shape[1])[None, :] > np.median(xs))] = 2
        Image.fromarray(labels).save(root / f"m{f}.png")
        refs.append({"frame": f, "labels": str(root / f"m{f}.png")})
    manifest = {"plate": os.path.join(CHAIR, "frames", "%05d.jpg"), "frames": "0-11", "parts": ["left", "right"],
                "references": refs}
    (root / "shot.json").write_text(json.dumps(manifest))
    shot = load_shot(str(root / "shot.json"))
    backbone = load_backbone(tiny)
    result = learn_parts(shot, str(root / "parts.smite"), Settings(diffusion=FAST), backbone=backbone)
    return shot, backbone, result.path


def test_plan_windows_cover_and_anchor():
    assert plan_windows(list(range(40)), 16, 8) == [list(range(0, 16)), list(range(8, 24)), list(range(16, 32)),
                                                    list(range(24, 40))]
    assert plan_windows(list(range(5, 21)), 16, 8) == [list(range(5, 16)), list(range(8, 21))]
    assert plan_windows(list(range(3)), 16, 8) == [[0, 1, 2]]
    # a chunk's windows sit on the same grid as the whole run's
    whole = plan_windows(list(range(100)), 16, 8)
    chunk = plan_windows(list(range(40, 70)), 16, 8)
    assert all(w in whole for w in chunk[1:-1])
    for frames in (list(range(7, 57)), list(range(1001, 1030))):
        windows = plan_windows(frames, 16, 8)
        assert sorted({f for w in windows for f in w}) == frames and all(len(w) <= 16 for w in windows)


def test_window_seed_depends_on_shot_frame_and_seed():
    a = window_seed("plate.%04d.exr", 1001, 0)
    assert a == window_seed("plate.%04d.exr", 1001, 0)
    assert len({a, window_seed("plate.%04d.exr", 1009, 0), window_seed("plate.%04d.exr", 1001, 1),
                window_seed("other.%04d.exr", 1001, 0)}) == 4


def test_ddim_move_round_trip_and_adam_step():
    torch.manual_seed(0)
    z, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    up = ddim_move(z, eps, 0.9, 0.8)
    torch.testing.assert_close(ddim_move(up, eps, 0.8, 0.9), z)
    grad = torch.tensor([2.0, -0.5, 0.0])
    moved = adam_update(torch.zeros(3), grad, torch.zeros(3), torch.zeros(3), 1, 0.1)
    # first step: -lr·g/(|g| + ε) with the authors' ε = 1e-5
    torch.testing.assert_close(moved, torch.tensor([-0.1 * 2 / (2 + 1e-5), 0.1 * 0.5 / (0.5 + 1e-5), 0.0]),
                               atol=1e-8, rtol=0)


def test_voted_labels_majority_on_static_tracks():
    # 5 frames of a 2x2 map; pixel 0 flickers to class 1 in one frame; tracks stand still, all visible
    maps = torch.zeros(5, 4, 2)
    maps[..., 0] = 1.0
    maps[2, 0] = torch.tensor([0.0, 1.0])
    ys, xs = np.mgrid[0:2, 0:2]
    cells = torch.tensor(np.stack([xs.ravel(), ys.ravel()], -1), dtype=torch.float32)
    tracks = cells.expand(5, 5, 4, 2).clone()
    labels = voted_labels(maps, tracks, torch.ones(5, 5, 4, dtype=torch.bool), 5)
    assert labels.eq(0).all()


def test_voted_labels_use_the_authors_shifted_window():
    """The diffusion path votes as src/tracking.py:126 (`determine_window(i, 16, 15)`): frame 0 of a
    16-frame window votes over frames 0..14. Frames 0-6 say class 0 and 7-15 class 1: 8 of 15 votes
    give class 1 (a window centred and truncated at frame 0 would see 0..7 and say class 0)."""
    maps = torch.zeros(16, 1, 2)
    maps[:7, 0] = torch.tensor([1.0, 0.0])
    maps[7:, 0] = torch.tensor([0.0, 1.0])
    tracks = torch.zeros(16, 16, 1, 2)
    labels = voted_labels(maps, tracks, torch.ones(16, 16, 1, dtype=torch.bool), 15)
    assert labels[:, 0].tolist() == [1] * 16


def _window(shot, n=4):
    source = FrameSource(shot.plate, list(range(n)), shot.colorspace)
    return [source.get(f) for f in range(n)]


def test_guided_iterations_decrease_the_energy(shot_and_model):
    shot, backbone, path = shot_and_model
    model = load_part_model(path, backbone.hash)
    # the official step (10·σ_t with the per-step α_t, 0.014 here) over the paper's 15 iterations
    seg = WindowSegmenter(backbone, model.context, 3, FAST.replace(guide_iters=15), tracker=None)
    frames = _window(shot)
    from smite.model.encode import encode_latents, to_model_images

    z0 = encode_latents(backbone, to_model_images(frames, 64))
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0))
    _, s_ref = seg._maps(backbone.scheduler.add_noise(z0, noise, torch.tensor([100])), 100)
    z = backbone.scheduler.add_noise(z0, noise, torch.tensor([103]))
    _, maps = seg._maps(z, 103)
    target = maps.argmax(-1).roll(1, dims=0)  # a fixed, partly wrong target so E_track has work to do
    before = float(seg.energy(maps, s_ref, target, 8, 8))
    after_z = seg._optimise(z, 103, s_ref, target, 8, 8)
    after = float(seg.energy(seg._maps(after_z, 103)[1], s_ref, target, 8, 8))
    assert after < before


def _latents_and_ref(seg, backbone, frames):
    from smite.model.encode import encode_latents, to_model_images

    z0 = encode_latents(backbone, to_model_images(frames, 64))
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0))
    _, s_ref = seg._maps(backbone.scheduler.add_noise(z0, noise, torch.tensor([100])), 100)
    return z0, noise, s_ref


def test_one_guided_step_moves_the_latents_by_at_most_the_adam_bound(shot_and_model):
    """One guided step as the authors run it (src/inference.py:217-223, src/latent_optimization.py:86,
    219-224): DDIM from t = 104 to 103, then 15 Adam updates with the UNet at t = 104 and step
    lr = 10·(1 - α_104)/α_104 = 0.0141 (per-step α = scheduler.alphas).

    Bound: Adam's k-th update is lr·m̂_k/(√v̂_k + ε) with m̂_k = Σ_j a_j g_j, v̂_k = Σ_j b_j g_j²
    (a_j = 0.1·0.9^(k-j)/(1-0.9^k), b_j = 0.001·0.999^(k-j)/(1-0.999^k)); Cauchy-Schwarz gives
    |m̂_k| ≤ √(Σ a_j²/b_j)·√v̂_k, so no latent moves more than lr·Σ_k √(Σ_j a_j²/b_j) = 15.52·lr = 0.219
    in 15 iterations, whatever the energy. Measured: max 0.20, mean 0.08 (5.6·lr); with the cumulative
    ᾱ (lr 1.25) the same step moved the latents by mean 4.9, max 12.3. The lower bound mean ≥ lr is
    the measured behaviour (each iteration moves a latent with |g| ≫ ε by about lr).
    """
    shot, backbone, path = shot_and_model
    model = load_part_model(path, backbone.hash)
    seg = WindowSegmenter(backbone, model.context, 3, FAST.replace(guide_iters=15), tracker=None)
    z0, noise, s_ref = _latents_and_ref(seg, backbone, _window(shot))
    alpha_bar = backbone.scheduler.alphas_cumprod
    z = backbone.scheduler.add_noise(z0, noise, torch.tensor([104]))
    eps, maps = seg._maps(z, 104)
    z = ddim_move(z, eps, float(alpha_bar[104]), float(alpha_bar[103]))
    target = maps.argmax(-1).roll(1, dims=0)
    moved = seg._optimise(z, 104, s_ref, target, 8, 8, 0) - z
    alpha = float(backbone.scheduler.alphas[104])
    lr = 10 * (1 - alpha) / alpha
    assert lr == pytest.approx(0.0141, abs=1e-4)
    b1, b2 = ADAM_BETAS
    bound = 0.0
    for k in range(1, 16):
        a = [(1 - b1) * b1 ** (k - j) / (1 - b1**k) for j in range(1, k + 1)]
        b = [(1 - b2) * b2 ** (k - j) / (1 - b2**k) for j in range(1, k + 1)]
        bound += sum(x * x / y for x, y in zip(a, b)) ** 0.5
    assert bound == pytest.approx(15.52, abs=0.01)
    assert float(moved.abs().max()) <= bound * lr
    assert float(moved.abs().mean()) >= lr


def test_guided_loop_order_is_the_authors(shot_and_model, monkeypatch):
    """src/inference.py:173-233: a fresh noise draw puts the clean latents at t = 104; at each of
    [104, 103, 102, 101] the UNet gives maps and noise, DDIM moves the latents to t - 1, and after the
    first three the moved latents are optimised with the UNet run at t and E_reg's τ of that step;
    the maps at 101 are the output. The reference pass (t drawn around ref_t, :602) comes first."""
    shot, backbone, path = shot_and_model
    model = load_part_model(path, backbone.hash)
    seg = WindowSegmenter(backbone, model.context, 3, FAST.replace(guided_steps=3, lambda_track=0.0), tracker=None)
    calls, optimised = [], []
    real_maps = seg._maps

    def record_maps(z, t, *, grad=False):
        eps, maps = real_maps(z, t, grad=grad)
        calls.append((int(t), z.clone(), eps.clone()))
        return eps, maps

    def record_optimise(z, t, s_ref, target, h, w, step=0):
        optimised.append((t, step, z.clone()))
        return z

    monkeypatch.setattr(seg, "_maps", record_maps)
    monkeypatch.setattr(seg, "_optimise", record_optimise)
    frames = _window(shot)
    seg(frames, noise_seed=7)
    assert [t for t, _, _ in calls] == [reference_timestep(100, 5, 7), 104, 103, 102, 101]
    assert [(t, step) for t, step, _ in optimised] == [(104, 0), (103, 1), (102, 2)]
    from smite.model.encode import encode_latents, to_model_images

    z0 = encode_latents(backbone, to_model_images(frames, 64))
    gen = torch.Generator().manual_seed(7)
    ref_noise, guide_noise = torch.randn(z0.shape, generator=gen), torch.randn(z0.shape, generator=gen)
    torch.testing.assert_close(calls[0][1], backbone.scheduler.add_noise(z0, ref_noise, torch.tensor([100])))
    torch.testing.assert_close(calls[1][1], backbone.scheduler.add_noise(z0, guide_noise, torch.tensor([104])))
    alpha_bar = backbone.scheduler.alphas_cumprod
    for (t, z, eps), (_, _, z_opt) in zip(calls[1:], optimised):
        torch.testing.assert_close(z_opt, ddim_move(z, eps, float(alpha_bar[t]), float(alpha_bar[t - 1])))


def test_reg_tau_of_each_guided_step_reaches_the_energy(shot_and_model):
    """E_reg's cut-off follows the guided step (src/latent_optimization.py:157): step 0 uses 0.999, later 0.4."""
    shot, backbone, path = shot_and_model
    model = load_part_model(path, backbone.hash)
    seg = WindowSegmenter(backbone, model.context, 3, FAST.replace(lambda_track=0.0, reg_tau=(0.999, 0.4)),
                          tracker=None)
    z0, noise, s_ref = _latents_and_ref(seg, backbone, _window(shot))
    _, maps = seg._maps(backbone.scheduler.add_noise(z0, noise, torch.tensor([104])), 104)
    from smite.method.energies import smite_reg_energy

    cur, ref = maps.permute(2, 0, 1).reshape(3, -1, 8, 8), s_ref.permute(2, 0, 1).reshape(3, -1, 8, 8)
    for step, tau in ((0, 0.999), (1, 0.4), (2, 0.4)):
        expected = FAST.lambda_reg * smite_reg_energy(cur, ref, tau)
        torch.testing.assert_close(seg.energy(maps, s_ref, None, 8, 8, step), expected)
    assert float(seg.energy(maps, s_ref, None, 8, 8, 0)) != float(seg.energy(maps, s_ref, None, 8, 8, 1))


def _segment(shot, backbone, path, diffusion, settings=None, frames=range(4)):
    backend = DiffusionBackend(settings or Settings(backend="diffusion"), diffusion.replace(part_model=path),
                               backbone=backbone)
    source = FrameSource(shot.plate, list(range(12)), shot.colorspace)
    state = backend.init_state(source, shot.parts)
    return dict(backend.propagate(state, list(frames)))


def test_same_seed_same_maps_and_no_dead_settings(shot_and_model):
    shot, backbone, path = shot_and_model
    base = _segment(shot, backbone, path, FAST)
    assert sorted(base) == list(range(4))
    probs = base[0]
    assert probs.shape == (3, 43, 64) and np.allclose(probs.sum(0), 1.0, atol=1e-5)
    again = _segment(shot, backbone, path, FAST)
    assert all(np.array_equal(base[f], again[f]) for f in base)
    changes = {
        "lambda_reg": FAST.replace(lambda_reg=0.0), "lambda_track": FAST.replace(lambda_track=0.0),
        "inversion": FAST.replace(inversion="ddim", inversion_steps=2), "guide_iters": FAST.replace(guide_iters=1),
        "overlap": FAST.replace(overlap=1), "ref_t": FAST.replace(ref_t=50), "ref_t_jitter": FAST.replace(ref_t_jitter=0),
        "guide_t_shift": FAST.replace(guide_t_shift=50), "guide_schedule_steps": FAST.replace(guide_schedule_steps=500),
        "guide_steps": FAST.replace(guide_steps=3), "guided_steps": FAST.replace(guided_steps=1),
        "reg_tau": FAST.replace(reg_tau=(0.999, 0.2)),
        # the tiny model's coarse pass finds no subject (whole-frame boxes), so crop_margin and
        # coarse_window are shown to act in test_hierarchical.py and the coarse-pass test below
        "hierarchical": FAST.replace(hierarchical=False), "tiles": FAST.replace(tiles=2),
        "tile_side": FAST.replace(tiles=2, tile_side=300),
    }
    for name, diffusion in changes.items():
        other = _segment(shot, backbone, path, diffusion)
        assert any(not np.allclose(other[f], base[f]) for f in other), name
    off = _segment(shot, backbone, path, FAST, Settings(backend="diffusion", temporal=False))
    assert any(not np.allclose(off[f], base[f]) for f in off)
    seeded = _segment(shot, backbone, path, FAST, Settings(backend="diffusion", seed=1))
    assert any(not np.allclose(seeded[f], base[f]) for f in seeded)


def test_wrong_parts_or_backbone_are_clear_errors(shot_and_model, tmp_path):
    from smite.errors import BadInputError

    shot, backbone, path = shot_and_model
    backend = DiffusionBackend(Settings(backend="diffusion"), FAST.replace(part_model=path), backbone=backbone)
    state = backend.init_state(FrameSource(shot.plate, [0, 1], shot.colorspace), ("seat", "legs"))
    with pytest.raises(BadInputError, match="has parts left, right but the shot has seat, legs"):
        list(backend.propagate(state))
    other = load_backbone(make_tiny(str(tmp_path / "other"), seed=5))
    with pytest.raises(BadInputError, match="learned on backbone"):
        DiffusionBackend(Settings(backend="diffusion"), FAST.replace(part_model=path), backbone=other).model_hash


def test_end_to_end_engine_writes_part_mattes(shot_and_model, tmp_path, monkeypatch):
    import smite.engine as engine
    from smite.io.matte import read_matte

    shot, backbone, path = shot_and_model
    backend = DiffusionBackend(Settings(backend="diffusion"), FAST.replace(part_model=path, window=8, overlap=4),
                               backbone=backbone)
    monkeypatch.setattr(engine, "make_backend", lambda settings, progress: backend)
    out = str(tmp_path / "out" / "m.####.exr")
    result = engine.segment_shot(shot, out, Settings(backend="diffusion"), frames=list(range(12)))
    assert result.written == list(range(12))
    parts, probs, meta = read_matte(out.replace("####", "0005"))
    assert parts == ["left", "right"] and probs.shape == (2, 240, 360)
    assert meta["smite/backend"] == "diffusion" and meta["smite/model"] == backend.model_hash
    assert np.isfinite(probs).all() and probs.min() >= 0 and probs.sum(0).max() <= 1.0 + 1e-3


def test_three_chunks_equal_one_run(shot_and_model, tmp_path, monkeypatch):
    """A farm chunk (default context) carries what a whole-shot run carries: same mattes (issue: <= 1e-3)."""
    import smite.engine as engine
    from smite.io.matte import read_matte

    shot, backbone, path = shot_and_model
    diffusion = FAST.replace(part_model=path)
    monkeypatch.setattr(engine, "make_backend", lambda s, progress: DiffusionBackend(s, diffusion, backbone=backbone))
    settings = Settings(backend="diffusion")
    one, chunks = str(tmp_path / "one" / "m.####.exr"), str(tmp_path / "chunks" / "m.####.exr")
    engine.segment_shot(shot, one, settings)
    for first, last in ((0, 3), (4, 7), (8, 11)):
        engine.segment_shot(shot, chunks, settings, frames=list(range(first, last + 1)))
    diff = max(float(np.abs(read_matte(one.replace("####", f"{f:04d}"))[1]
                            - read_matte(chunks.replace("####", f"{f:04d}"))[1]).max()) for f in range(12))
    assert diff <= 1e-3


def test_chunks_start_on_the_window_grid_with_warm_up():
    backend = DiffusionBackend(Settings(backend="diffusion"), FAST.replace(window=8, overlap=4, hierarchical=False))
    # windows start at multiples of 4; the earliest holding frame 21 starts at 16; two more windows back: 8
    assert backend.first_needed(21) == 8
    assert backend.first_needed(16) == 4
    # hierarchical: back to the start of the coarse window (multiples of coarse_window) holding that frame
    coarse = DiffusionBackend(Settings(backend="diffusion"), FAST.replace(window=8, overlap=4, coarse_window=6))
    assert coarse.first_needed(21) == 6 and coarse.first_needed(16) == 0


def test_coarse_pass_is_the_reference_pass_only_on_its_own_windows(shot_and_model, monkeypatch):
    """The authors' coarse pass: guidance weights 0 (src/hierarchical_segmentation.py:66), so 18-frame
    windows without overlap (src/inference.py:84) and the reference pass only (l.203-204): one UNet
    call per coarse window, no guided iteration; the guided iterations all run in the main pass."""
    shot, backbone, path = shot_and_model
    calls = []
    unet_calls = {True: 0, False: 0}
    original_call, original_optimise, original_maps = (
        WindowSegmenter.__call__, WindowSegmenter._optimise, WindowSegmenter._maps)

    def call(self, frames, *args, **kwargs):
        calls.append(("window", self.temporal, len(frames)))
        return original_call(self, frames, *args, **kwargs)

    def optimise(self, *args, **kwargs):
        calls.append(("guided", self.temporal, None))
        return original_optimise(self, *args, **kwargs)

    def maps(self, *args, **kwargs):
        unet_calls[self.temporal] += 1
        return original_maps(self, *args, **kwargs)

    monkeypatch.setattr(WindowSegmenter, "__call__", call)
    monkeypatch.setattr(WindowSegmenter, "_optimise", optimise)
    monkeypatch.setattr(WindowSegmenter, "_maps", maps)
    _segment(shot, backbone, path, FAST)
    coarse = [c for c in calls if not c[1]]
    assert coarse == [("window", False, 12)]  # the 12 loaded frames fit one 18-frame coarse window
    assert unet_calls[False] == 1
    guided = [c for c in calls if c[0] == "guided"]
    # main pass: windows [0-3] and [2-5] (frames 0-3 wanted), 2 guided steps each, one chunk of 4 frames
    assert len(guided) == 4 and all(temporal for _, temporal, _ in guided)
    calls.clear()
    _segment(shot, backbone, path, FAST.replace(coarse_window=5))
    # main windows [0-3], [2-5] need the coarse windows [0-4] and [5-9], each computed once
    assert [c[2] for c in calls if not c[1]] == [5, 5]


def test_official_preset_differs_from_the_default_and_is_reference_only(shot_and_model, monkeypatch):
    """--preset official (weights 0, 18/0 windows, as the authors' scripts) runs no guided iteration
    (src/inference.py:203-204) and gives other mattes than our default (guided, λ_reg 8, λ_track 1)."""
    from smite.model.settings import PRESETS

    shot, backbone, path = shot_and_model
    fast = {k: v for k, v in FAST.to_dict().items() if k not in PRESETS["official"]}
    official = DiffusionSettings.from_dict({**fast, "preset": "official"})
    assert (official.window, official.overlap, official.lambda_reg, official.lambda_track) == (18, 0, 0.0, 0.0)
    guided = []
    original = WindowSegmenter._optimise
    monkeypatch.setattr(WindowSegmenter, "_optimise", lambda self, *a, **k: guided.append(1) or original(self, *a, **k))
    out = _segment(shot, backbone, path, official)
    assert guided == []
    base = _segment(shot, backbone, path, FAST.replace(window=18, overlap=0))
    assert guided and any(not np.allclose(out[f], base[f]) for f in out)
