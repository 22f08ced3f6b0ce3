"""Reverse-process samplers for the conditional ε-model: ancestral DDPM and DDIM.

Every sampler has one contract: ``model(y_t, condition, noise_level) -> ε̂`` with
``noise_level (B,) = √γ̄_t`` of the schedule's step, a (possibly re-spaced, see
:func:`cryodiff.diffusion.respace`) :class:`~cryodiff.diffusion.NoiseSchedule`, a
``torch.Generator`` for every random draw, and an optional ``callback(step_dict)``. Samplers
do not touch the model's mode: call ``model.eval()`` first (dropout would otherwise draw from
the global RNG). Step coefficients are computed in float64 and applied in the data's dtype.
There is no clamping to [−1, 1] — cryodiff normalises by dataset statistics — only an optional
clip of the predicted ``ŷ₀`` to ``clip_y0 = (low, high)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

from cryodiff.diffusion import NoiseSchedule, predict_eps_from_y0, predict_y0_from_eps
from cryodiff.errors import CryodiffError
from cryodiff.threads import adapt_threads
from cryodiff.uncertainty import posterior_moments

SAMPLERS = ("ddpm", "ddim")
Model = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
PostProcess = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[dict[str, Any]], None]


def _randn(shape: torch.Size, like: torch.Tensor,
           generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal draws from ``generator`` (on its own device), moved to ``like``."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


@torch.no_grad()
def sample_progressive(model: Model, condition: torch.Tensor, schedule: NoiseSchedule,
                       sampler: str = "ddpm", eta: float = 0.0,
                       generator: torch.Generator | None = None,
                       clip_y0: tuple[float, float] | None = None,
                       y_T: torch.Tensor | None = None,
                       progress: bool = False) -> Iterator[dict[str, Any]]:
    """Run the reverse process and yield a dict after every step.

    Starts from ``y_T ~ N(0, I)`` (or the given ``y_T``) with the shape of ``condition
    (B, C, L, L)`` and walks the schedule from its noisiest step to its first. Each dict holds
    ``step`` (0 … n−1 in sampling order), ``timestep`` (the step's ``t`` in the original
    schedule), ``sqrt_gamma`` (float), ``y_t`` (the new state, after the update) and ``y0``
    (the prediction ŷ₀ at this step). The last ``y_t`` is the sample.

    * ``"ddpm"``: ancestral sampling, Ho et al. 2020 Alg. 2 written with the posterior
      ``q(y_{t−1} | y_t, ŷ₀)`` (their eqs. 6–7), as in SR3 (Saharia et al. 2021, eq. 11).
    * ``"ddim"``: Song et al. 2021, eq. 12, with
      ``σ_t = η·√((1−γ̄_{t−1})/(1−γ̄_t))·√(1−γ̄_t/γ̄_{t−1})``; ``eta = 0`` is deterministic
      given ``y_T``, ``eta = 1`` is DDPM.
    """
    if sampler not in SAMPLERS:
        raise CryodiffError(f"unknown sampler {sampler!r} (choose from {', '.join(SAMPLERS)})")
    gammas = schedule.gammas_exact.tolist()
    gammas_prev = [1.0] + gammas[:-1]
    timesteps = schedule.timesteps.tolist()
    y = _randn(condition.shape, condition, generator) if y_T is None else y_T.to(condition)
    batch = condition.shape[0]
    n = schedule.n_steps
    for step, index in enumerate(tqdm(range(n - 1, -1, -1), total=n, disable=not progress,
                                      desc=f"{sampler} sampling", leave=False)):
        adapt_threads(y.device)
        g, g_prev = gammas[index], gammas_prev[index]
        sqrt_gamma = math.sqrt(g)
        level = condition.new_full((batch,), sqrt_gamma)
        eps = model(y, condition, level).to(y.dtype)
        y0 = predict_y0_from_eps(y, eps, level)
        if clip_y0 is not None:
            y0 = y0.clamp(*clip_y0)
            eps = predict_eps_from_y0(y, y0, level)
        if sampler == "ddpm":
            beta = 1 - g / g_prev
            coef_y0 = math.sqrt(g_prev) * beta / (1 - g)
            coef_yt = math.sqrt(1 - beta) * (1 - g_prev) / (1 - g)
            std = math.sqrt(beta * (1 - g_prev) / (1 - g))
            y_next = coef_y0 * y0 + coef_yt * y
        else:
            std = eta * math.sqrt((1 - g_prev) / (1 - g) * (1 - g / g_prev))
            y_next = math.sqrt(g_prev) * y0 + math.sqrt(max(1 - g_prev - std ** 2, 0.0)) * eps
        if index > 0 and std > 0:
            y_next = y_next + std * _randn(y.shape, y, generator)
        y = y_next
        yield {"step": step, "timestep": timesteps[index], "sqrt_gamma": sqrt_gamma,
               "y_t": y, "y0": y0}


def _run(steps: Iterator[dict[str, Any]], callback: StepCallback | None) -> torch.Tensor:
    result = None
    for result in steps:
        if callback is not None:
            callback(result)
    return result["y_t"]


def sample_ddpm(model: Model, condition: torch.Tensor, schedule: NoiseSchedule,
                generator: torch.Generator | None = None, callback: StepCallback | None = None,
                progress: bool = False, clip_y0: tuple[float, float] | None = None) -> torch.Tensor:
    """Ancestral DDPM sample ``ŷ₀ (B, C, L, L)`` (Ho et al. 2020, Alg. 2; SR3 eq. 11)."""
    return _run(sample_progressive(model, condition, schedule, "ddpm", generator=generator,
                                   clip_y0=clip_y0, progress=progress), callback)


def sample_ddim(model: Model, condition: torch.Tensor, schedule: NoiseSchedule, eta: float = 0.0,
                generator: torch.Generator | None = None, callback: StepCallback | None = None,
                progress: bool = False, clip_y0: tuple[float, float] | None = None) -> torch.Tensor:
    """DDIM sample ``ŷ₀ (B, C, L, L)`` (Song et al. 2021, eq. 12); the generator only sets
    ``y_T`` when ``eta = 0``."""
    return _run(sample_progressive(model, condition, schedule, "ddim", eta=eta, generator=generator,
                                   clip_y0=clip_y0, progress=progress), callback)


def sample(model: Model, condition: torch.Tensor, schedule: NoiseSchedule, sampler: str = "ddpm",
           eta: float = 0.0, generator: torch.Generator | None = None,
           callback: StepCallback | None = None, progress: bool = False,
           clip_y0: tuple[float, float] | None = None) -> torch.Tensor:
    """Dispatch to :func:`sample_ddpm` or :func:`sample_ddim` by name."""
    if sampler == "ddpm":
        return sample_ddpm(model, condition, schedule, generator, callback, progress, clip_y0)
    if sampler == "ddim":
        return sample_ddim(model, condition, schedule, eta, generator, callback, progress, clip_y0)
    raise CryodiffError(f"unknown sampler {sampler!r} (choose from {', '.join(SAMPLERS)})")


@torch.no_grad()
def posterior_samples(model: Model, condition: torch.Tensor, schedule: NoiseSchedule,
                      n_samples: int, sampler: str = "ddpm",
                      generator: torch.Generator | None = None, eta: float = 0.0,
                      batch_size: int = 64,
                      postprocess: PostProcess | None = None,
                      clip_y0: tuple[float, float] | None = None,
                      progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and per-pixel standard deviation from ``n_samples`` samples per particle.

    ``condition (B, C, L, L)`` is repeated ``n_samples`` times and sampled in chunks of at most
    ``batch_size`` images; ``postprocess(sample, condition)`` (e.g. the post-processing U-Net)
    is applied to each sample first. The std uses Bessel's correction (0 when
    ``n_samples == 1``). Returns ``(mean, std)``, both ``(B, C, L, L)``.
    """
    if n_samples < 1:
        raise CryodiffError(f"the number of samples per particle must be ≥ 1, got {n_samples}")
    repeated = condition.repeat_interleave(n_samples, dim=0)
    chunks = []
    for start in tqdm(range(0, repeated.shape[0], batch_size), disable=not progress,
                      desc="posterior samples", leave=False):
        cond = repeated[start:start + batch_size]
        out = sample(model, cond, schedule, sampler, eta=eta, generator=generator, clip_y0=clip_y0)
        chunks.append(postprocess(out, cond) if postprocess is not None else out)
    samples = torch.cat(chunks).reshape(condition.shape[0], n_samples, *condition.shape[1:])
    return posterior_moments(samples, dim=1)
