"""Solutions to the exercises of notebook 02 (the diffusion model)."""

from __future__ import annotations

import math

import torch

from cryodiff.diffusion import NoiseSchedule


def step_at_gamma(schedule: NoiseSchedule, gamma: float = 0.5) -> int:
    """Exercise 1. The first step ``t`` (1-based) at which ``γ̄_t`` (the fraction of signal
    power left) has fallen to ``gamma`` or below."""
    below = torch.nonzero(schedule.gammas_exact <= gamma)
    return int(below[0, 0]) + 1


def forward_snr_db(sqrt_gamma: float) -> float:
    """Exercise 2. The SNR of ``y_t = √γ̄·y₀ + √(1−γ̄)·ε`` for a unit-variance ``y₀``, in dB:
    ``10·log10(γ̄ / (1 − γ̄))``."""
    gamma = sqrt_gamma ** 2
    return 10 * math.log10(gamma / (1 - gamma))


def predict_y0(y_t: torch.Tensor, eps: torch.Tensor, sqrt_gamma: float) -> torch.Tensor:
    """Exercise 3. Invert the forward process: given the noise ``ε`` (the network's
    prediction), ``ŷ₀ = (y_t − √(1−γ̄)·ε) / √γ̄``."""
    return (y_t - math.sqrt(1 - sqrt_gamma ** 2) * eps) / sqrt_gamma
