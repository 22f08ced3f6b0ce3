"""DDPM/DDIM samplers: exactness with an oracle ε-predictor, the forward marginals they must
reproduce, a Gaussian prior with its exact denoiser, seeding, and posterior statistics."""

from __future__ import annotations

import math

import pytest
import torch

from cryodiff.diffusion import (cosine_schedule, linear_schedule, predict_eps_from_y0, q_sample,
                                respace)
from cryodiff.errors import CryodiffError
from cryodiff.models.unet import SR3UNet, UNetConfig
from cryodiff.sampling import (posterior_samples, sample, sample_ddim, sample_ddpm,
                               sample_progressive)

BASE = linear_schedule()


def oracle(y_t, condition, noise_level):
    """The ε-predictor that knows the clean image, passed as the condition:
    ε = (y_t − √γ̄·y₀)/√(1−γ̄)."""
    assert noise_level.shape == (y_t.shape[0],)
    return predict_eps_from_y0(y_t, condition, noise_level)


def gaussian_denoiser(sigma0: float):
    """Exact E[ε | y_t] when y₀ ~ N(0, σ0²) pixel-wise: √(1−γ̄)·y_t / (γ̄σ0² + 1 − γ̄)."""
    def model(y_t, condition, noise_level):
        g = noise_level.reshape(-1, 1, 1, 1).to(y_t) ** 2
        return (1 - g).sqrt() * y_t / (g * sigma0 ** 2 + 1 - g)
    return model


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("n_steps", [1, 3, 10, 50, 2000])
def test_oracle_returns_clean_image(dtype, tol, sampler, n_steps):
    y0 = torch.randn(3, 1, 15, 15, generator=torch.Generator().manual_seed(0), dtype=dtype)
    out = sample(oracle, y0, respace(BASE, n_steps), sampler,
                 generator=torch.Generator().manual_seed(1))
    assert out.dtype == dtype and out.shape == y0.shape
    torch.testing.assert_close(out, y0, rtol=tol, atol=tol)


def test_ddim_oracle_path_is_the_forward_process_of_one_noise():
    """With η = 0 and an oracle, y_t = √γ̄_t·y₀ + √(1−γ̄_t)·ε for the ε fixed by y_T."""
    y0 = torch.randn(2, 1, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    schedule = respace(BASE, 20)
    y_T = torch.randn(y0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    g = schedule.gammas_exact
    eps = (y_T - g[-1].sqrt() * y0) / (1 - g[-1]).sqrt()
    frames = list(sample_progressive(oracle, y0, schedule, "ddim", y_T=y_T))
    assert [f["step"] for f in frames] == list(range(20))
    assert [f["timestep"] for f in frames] == schedule.timesteps.flip(0).tolist()
    for frame, g_prev in zip(frames[:-1], g.flip(0)[1:]):
        expected = g_prev.sqrt() * y0 + (1 - g_prev).sqrt() * eps
        torch.testing.assert_close(frame["y_t"], expected, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(frame["y0"], y0, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sampler,eta", [("ddpm", 0.0), ("ddim", 1.0), ("ddim", 0.5)])
def test_oracle_states_follow_forward_marginals(sampler, eta):
    """Every member of the DDPM/DDIM family keeps q(y_t | y₀) = N(√γ̄ y₀, 1−γ̄) along the
    way when it knows y₀: a check of the posterior coefficients and noise scales."""
    gen = torch.Generator().manual_seed(4)
    y0 = torch.randn(4, 1, 64, 64, dtype=torch.float64, generator=gen)
    schedule = respace(cosine_schedule(1000), 25)
    g = schedule.gammas_exact
    y_T = q_sample(y0, g[-1:].sqrt().expand(4), torch.randn(y0.shape, generator=gen, dtype=torch.float64))
    frames = list(sample_progressive(oracle, y0, schedule, sampler, eta=eta,
                                     generator=gen, y_T=y_T))
    n_pixels = y0.numel()
    for frame, g_prev in zip(frames[:-1], g.flip(0)[1:]):
        z = (frame["y_t"] - g_prev.sqrt() * y0) / (1 - g_prev).sqrt()
        assert abs(z.mean().item()) < 5 / math.sqrt(n_pixels)
        assert z.std().item() == pytest.approx(1.0, abs=5 * math.sqrt(2 / n_pixels))


def test_ddim_with_eta_one_is_ddpm():
    cond = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    schedule = respace(BASE, 30)
    model = gaussian_denoiser(0.7)
    a = sample_ddpm(model, cond, schedule, torch.Generator().manual_seed(5))
    b = sample_ddim(model, cond, schedule, eta=1.0, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sampler,n_steps,rel", [("ddim", 250, 0.02), ("ddpm", 2000, 0.03)])
def test_gaussian_prior_is_recovered(sampler, n_steps, rel):
    """With the exact denoiser of y₀ ~ N(0, σ0²) the samples have standard deviation σ0."""
    cond = torch.zeros(4, 1, 48, 48, dtype=torch.float64)
    out = sample(gaussian_denoiser(0.5), cond, respace(BASE, n_steps), sampler,
                 generator=torch.Generator().manual_seed(6))
    assert out.std().item() == pytest.approx(0.5, rel=rel)
    assert abs(out.mean().item()) < 0.02


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return SR3UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                              attention_resolutions=(8,), image_size=16, norm_groups=4)).eval()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_seeded_runs_repeat_and_differ(tiny_model, sampler):
    cond = torch.randn(2, 1, 17, 17, generator=torch.Generator().manual_seed(7))
    schedule = respace(BASE, 4)

    def run(seed):
        return sample(tiny_model, cond, schedule, sampler, generator=torch.Generator().manual_seed(seed))

    first, again, other = run(1), run(1), run(2)
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3
    assert torch.isfinite(first).all()


def test_ddim_eta_zero_ignores_generator_given_y_T(tiny_model):
    cond = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(8))
    y_T = torch.randn(cond.shape, generator=torch.Generator().manual_seed(9))
    schedule = respace(BASE, 5)
    a = list(sample_progressive(tiny_model, cond, schedule, "ddim", y_T=y_T,
                                generator=torch.Generator().manual_seed(1)))[-1]["y_t"]
    b = list(sample_progressive(tiny_model, cond, schedule, "ddim", y_T=y_T,
                                generator=torch.Generator().manual_seed(2)))[-1]["y_t"]
    assert torch.equal(a, b)


def test_callback_and_progressive_agree_with_sample(tiny_model):
    cond = torch.randn(1, 1, 12, 12, generator=torch.Generator().manual_seed(10))
    schedule = respace(BASE, 6)
    seen = []
    out = sample_ddpm(tiny_model, cond, schedule, torch.Generator().manual_seed(3), callback=seen.append)
    frames = list(sample_progressive(tiny_model, cond, schedule, "ddpm",
                                     generator=torch.Generator().manual_seed(3)))
    assert [f["step"] for f in seen] == list(range(6))
    assert torch.equal(frames[-1]["y_t"], out)
    levels = [f["sqrt_gamma"] for f in seen]
    assert levels == sorted(levels) and levels[-1] == pytest.approx(math.sqrt(1 - 1e-6))
    assert not out.requires_grad


def test_clip_y0_bounds_the_prediction():
    y0 = 3 * torch.randn(2, 1, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    out = sample(oracle, y0, respace(BASE, 10), "ddim", clip_y0=(-1.0, 1.0),
                 generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, y0.clamp(-1, 1), rtol=1e-9, atol=1e-9)


def test_unknown_sampler_raises():
    with pytest.raises(CryodiffError, match="euler"):
        sample(gaussian_denoiser(1.0), torch.zeros(1, 1, 4, 4), respace(BASE, 2), "euler")
    with pytest.raises(CryodiffError):
        posterior_samples(gaussian_denoiser(1.0), torch.zeros(1, 1, 4, 4), BASE, 0)


def test_posterior_of_oracle_has_no_spread():
    y0 = torch.randn(3, 1, 13, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    mean, std = posterior_samples(oracle, y0, respace(BASE, 8), n_samples=4,
                                  generator=torch.Generator().manual_seed(0), batch_size=5)
    assert mean.shape == std.shape == y0.shape
    torch.testing.assert_close(mean, y0, rtol=1e-10, atol=1e-10)
    assert std.max() < 1e-10


def test_posterior_of_gaussian_prior_has_its_spread():
    """For y₀ ~ N(0, σ0²) every pixel's posterior std over samples is σ0 (no conditioning)."""
    cond = torch.zeros(2, 1, 24, 24, dtype=torch.float64)
    mean, std = posterior_samples(gaussian_denoiser(0.5), cond, respace(BASE, 100), n_samples=16,
                                  sampler="ddim", generator=torch.Generator().manual_seed(1),
                                  postprocess=lambda s, c: s + 1)
    assert std.mean().item() == pytest.approx(0.5, rel=0.05)
    assert mean.mean().item() == pytest.approx(1.0, abs=0.03)
    single_mean, single_std = posterior_samples(gaussian_denoiser(0.5), cond, respace(BASE, 5), 1)
    assert torch.equal(single_std, torch.zeros_like(single_mean))
