"""Guided denoising numbers of the diffusion backend against the authors' code (no weights needed).

Facts are from the authors' repository alimohammadiamirhossein/smite (commit 7ecfff7); each test
names the file and line its number comes from.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

import diffusers  # noqa: E402

from smite.config import Settings  # noqa: E402
from smite.errors import BadInputError  # noqa: E402
from smite.method.segment import (  # noqa: E402
    ADAM_EPS, adam_update, ddim_move, guide_step_size, guided_timesteps, reg_tau_at,
)
from smite.model.backbone import SCHEDULER_CONFIG  # noqa: E402
from smite.model.settings import DiffusionSettings  # noqa: E402

# stabilityai/stable-diffusion-2-1-base scheduler/scheduler_config.json, loaded by the authors as a
# DDIMScheduler (utils/setup.py `load_schedulers`).
SD21_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


@pytest.fixture(scope="module")
def sd21():
    return diffusers.DDIMScheduler(**SD21_SCHEDULER)


def test_our_tiny_and_loaded_schedulers_use_sd21s_config():
    assert {k: SCHEDULER_CONFIG[k] for k in SD21_SCHEDULER} == SD21_SCHEDULER


def test_guided_step_uses_the_per_step_alpha(sd21):
    """Step = 10·σ_t, σ_t = (1 - α_t)/α_t, α_t = scheduler.alphas[t] (src/latent_optimization.py:219-220, lr 10).

    SD 2.1's scaled_linear betas: β_t = (√0.00085 + t·(√0.012 - √0.00085)/999)², at t = 103
    β = 0.0014020, so 10·β/(1 - β) = 0.01404 (the issue rounds this to 0.0141, which is t = 104's value).
    The cumulative ᾱ_103 = 0.8905 would give 10·(1 - ᾱ)/ᾱ = 1.2299, 87.6x larger.
    """
    beta_103 = (0.00085**0.5 + 103 * (0.012**0.5 - 0.00085**0.5) / 999) ** 2
    # rel 1e-4: the scheduler keeps its betas in float32
    assert guide_step_size(sd21, 103, 10.0) == pytest.approx(10 * beta_103 / (1 - beta_103), rel=1e-4)
    assert guide_step_size(sd21, 103, 10.0) == pytest.approx(0.01404, abs=5e-6)
    assert guide_step_size(sd21, 104, 10.0) == pytest.approx(0.01410, abs=5e-6)
    alpha_bar = float(sd21.alphas_cumprod[103])
    assert 10 * (1 - alpha_bar) / alpha_bar == pytest.approx(1.2299, abs=1e-3)  # the rule we had


def test_adam_epsilon_is_the_authors():
    """ε = 1e-5 (src/latent_optimization.py:224): a first step with |g| = ε moves lr/2, not ~lr as with 1e-8."""
    assert ADAM_EPS == 1e-5
    grad = torch.tensor([1e-5, -1e-5, 1.0])
    moved = adam_update(torch.zeros(3), grad, torch.zeros(3), torch.zeros(3), 1, 0.1)
    torch.testing.assert_close(moved, torch.tensor([-0.05, 0.05, -0.1 / (1 + 1e-5)]), atol=1e-7, rtol=0)


def test_guided_timesteps_are_the_last_four_of_1000_shifted_by_100(sd21):
    """`set_timesteps(1000)` then `timesteps[996:] + 100` (src/inference.py:441-462 and 175).

    DDIM's "leading" spacing with steps_offset 1 lays out [1000, 999, ..., 1]; the last four are
    [4, 3, 2, 1], shifted [104, 103, 102, 101]; one DDIM step moves 1000 // 1000 = 1 timestep.
    """
    s = DiffusionSettings()
    before = sd21.timesteps.clone()
    ts, stride = guided_timesteps(sd21, s.guide_schedule_steps, s.guide_steps, s.guide_t_shift)
    assert (ts, stride) == ([104, 103, 102, 101], 1)
    assert torch.equal(sd21.timesteps, before)  # the caller's scheduler is left as it was
    # the rule, not a list: 500 steps lay out [999, 997, ..., 1] with stride 2
    assert guided_timesteps(sd21, 500, 4, 100) == ([107, 105, 103, 101], 2)
    with pytest.raises(BadInputError, match="range"):
        guided_timesteps(sd21, 1000, 4, 996)


def test_ddim_move_between_guided_timesteps_is_the_schedulers_step(sd21):
    """The authors move with `scheduler.step(noise_pred, t, latents)` after `set_timesteps(1000)`
    (src/inference.py:548): eta 0, from t to t - 1. Our `ddim_move` with ᾱ_t, ᾱ_{t-1} is that step."""
    torch.manual_seed(0)
    z, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    layout = diffusers.DDIMScheduler.from_config(sd21.config)
    layout.set_timesteps(1000)
    for t in (104, 103, 102, 101):
        expected = layout.step(eps, t, z, eta=0.0).prev_sample
        ours = ddim_move(z, eps, float(sd21.alphas_cumprod[t]), float(sd21.alphas_cumprod[t - 1]))
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_reg_tau_schedule_is_0999_then_04():
    """τ = 0.999 at the first guided step, then `dct_threshold` (src/latent_optimization.py:157), whose
    default and shipped value is 0.4 (utils/args.py:25, scripts/common/common_inference_params.sh:6)."""
    taus = DiffusionSettings().reg_tau
    assert [reg_tau_at(taus, i) for i in range(3)] == [0.999, 0.4, 0.4]
    assert reg_tau_at((0.999, 0.4), 5) == 0.4  # the last one repeats for longer schedules


def test_guide_settings_save_load_equal_and_validate():
    s = DiffusionSettings(reg_tau=[0.9, 0.3], guide_schedule_steps=500, guide_t_shift=50, guided_steps=2)
    assert s.reg_tau == (0.9, 0.3)  # a list is stored as a tuple: hashable, frozen
    data = json.loads(s.to_json())
    assert data["reg_tau"] == [0.9, 0.3]
    assert DiffusionSettings.from_dict(data) == s
    assert DiffusionSettings.from_dict({"reg_tau": [1, 0.5]}).reg_tau == (1.0, 0.5)
    nested = Settings(backend="diffusion", diffusion=s)  # and nested in the shot settings
    assert Settings.from_dict(json.loads(nested.to_json())) == nested
    for bad in ({"reg_tau": []}, {"reg_tau": [0.0]}, {"reg_tau": [1.5]}, {"reg_tau": 0.4}, {"reg_tau": [True]},
                {"reg_tau": ["0.4"]}, {"guided_steps": 4}, {"guide_steps": 0}, {"guide_t_shift": -1},
                {"guide_steps": 5, "guide_schedule_steps": 4}, {"ref_t": 0}):
        with pytest.raises(BadInputError):
            DiffusionSettings.from_dict(bad)


def test_reference_timestep_is_drawn_per_window_from_95_to_104():
    """src/inference.py:602: `t = torch.randint(95, 105, [1])` for every reference pass, i.e. each of
    95..104 (high end exclusive) with probability 1/10; ours: ref_t 100, ref_t_jitter 5 by default.
    The draw is a pure function of the window's seed (farm chunks redraw the same t)."""
    from smite.method.segment import reference_timestep

    s = DiffusionSettings()
    assert (s.ref_t, s.ref_t_jitter) == (100, 5)
    draws = [reference_timestep(s.ref_t, s.ref_t_jitter, seed) for seed in range(4000)]
    assert set(draws) == set(range(95, 105))
    counts = np.bincount(np.array(draws) - 95)
    assert counts.min() > 300 and counts.max() < 500  # ~400 each (binomial sd ~19)
    assert reference_timestep(100, 5, 123) == reference_timestep(100, 5, 123)
    assert reference_timestep(100, 0, 123) == 100
    with pytest.raises(BadInputError, match="ref_t_jitter"):
        DiffusionSettings(ref_t=3, ref_t_jitter=5)
