"""Solutions to the exercises of notebook 03 (denoisers compared)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cryodiff.baselines.lowpass import gaussian_lowpass
from cryodiff.metrics import psnr


def psnr_gain_of_averaging(clean: torch.Tensor, noise_std: float, k: int,
                           seed: int = 0) -> float:
    """Exercise 1. The PSNR gain (dB, mean over images) of averaging ``k`` independent noisy
    copies of ``clean (N, L, L)`` (white noise of std ``noise_std``) over a single copy.
    The noise variance falls ``k``-fold, so the gain is ``10·log10(k)`` dB."""
    generator = torch.Generator().manual_seed(seed)
    copies = clean + noise_std * torch.randn((k, *clean.shape), generator=generator,
                                             dtype=clean.dtype)
    return float((psnr(copies.mean(dim=0), clean) - psnr(copies[0], clean)).mean())


def wiener_gain(ctf: torch.Tensor, signal_power: torch.Tensor,
                noise_power: torch.Tensor) -> torch.Tensor:
    """Exercise 2. The Wiener filter's gain per frequency for the CTF-modulated target:
    ``C²S / (C²S + N)`` — 0 at a CTF zero, ½ where ``C²S = N``, → 1 where noise vanishes."""
    modulated = ctf.square() * signal_power
    return modulated / (modulated + noise_power)


def best_gaussian_sigma(noisy: torch.Tensor, clean: torch.Tensor,
                        sigmas_px: Sequence[float]) -> tuple[float, float]:
    """Exercise 3. Of the Gaussian blur widths ``sigmas_px`` (pixels), the one whose low-pass
    output has the best mean PSNR against ``clean``; returns ``(sigma_px, psnr_dB)``."""
    scores = [(float(psnr(gaussian_lowpass(noisy, s), clean).mean()), float(s))
              for s in sigmas_px]
    best_psnr, best_sigma = max(scores)
    return best_sigma, best_psnr

