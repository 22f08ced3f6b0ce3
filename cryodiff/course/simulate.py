"""Solutions to the exercises of notebook 01 (simulating particle images)."""

from __future__ import annotations

import numpy as np
import torch

from cryodiff.ctf import ctf_at_frequencies, ctf_params
from cryodiff.fourier import fft2_centered, fft3_centered
from cryodiff.masks import disk_mask
from cryodiff.noise import radial_power_spectrum


def first_ctf_zero_A_inv(defocus_A: float, voltage_kV: float = 300.0, cs_mm: float = 2.7,
                         amplitude_contrast: float = 0.1) -> float:
    """Exercise 1. The spatial frequency (1/Å) of the first zero of a non-astigmatic CTF.

    Samples the CTF along a radial line up to 1/2 Å⁻¹, finds the first sign change and
    refines it by bisection. Without ``Cs`` the zero is where ``χ + asin A = π``:
    ``k = sqrt((π − asin A) / (π λ Δf))``, so doubling the defocus moves it to ``1/√2``
    of the frequency.
    """
    params = ctf_params(defocus_A, voltage_kV=voltage_kV, cs_mm=cs_mm,
                        amplitude_contrast=amplitude_contrast)

    def ctf(k: np.ndarray) -> np.ndarray:
        k = torch.as_tensor(k, dtype=torch.float64)
        return ctf_at_frequencies(params, torch.stack([k, torch.zeros_like(k)], -1))[0].numpy()

    k = np.linspace(0.5 / 20000, 0.5, 20000)  # from just above 0: with A = 0, CTF(0) = 0
    values = ctf(k)
    first = int(np.nonzero(np.sign(values[1:]) != np.sign(values[:-1]))[0][0])
    low, high = k[first], k[first + 1]
    for _ in range(60):
        middle = (low + high) / 2
        if np.sign(ctf(np.array([middle]))[0]) == np.sign(values[first]):
            low = middle
        else:
            high = middle
    return float((low + high) / 2)


def measured_snr(clean_ctf: torch.Tensor, particles: torch.Tensor,
                 radius_fraction: float = 0.4) -> float:
    """Exercise 2. The SNR of a stack ``(N, L, L)``: the variance of the clean CTF-modulated
    signal over the variance of everything else (``particles − clean_ctf``), both measured
    inside the centred disk of radius ``radius_fraction · L`` and summed over the images."""
    mask = disk_mask(clean_ctf.shape[-1], radius_fraction * clean_ctf.shape[-1])
    signal = clean_ctf[..., mask].double().var(dim=-1, unbiased=False).sum()
    noise = (particles - clean_ctf)[..., mask].double().var(dim=-1, unbiased=False).sum()
    return float(signal / noise)


def fit_power_law_exponent(noise: torch.Tensor) -> float:
    """Exercise 3. The exponent ``a`` of a power spectrum ``P(f) ∝ f^−a`` of noise images
    ``(N, L, L)``: a straight-line fit of ``log P`` against ``log f`` over the rings
    ``f = 2 … L/2 − 1`` cycles per box (ring 0 is the mean, ring 1 and the corner rings are
    few pixels)."""
    spectrum = radial_power_spectrum(noise).double().numpy()
    rings = np.arange(2, len(spectrum) - 1)
    slope, _ = np.polyfit(np.log(rings), np.log(spectrum[rings]), 1)
    return float(-slope)


def central_slice_error(volume: torch.Tensor, projection: torch.Tensor) -> float:
    """Exercise 4. How far ``projection (L, L)`` is from the central-slice theorem's promise
    for ``volume (L, L, L)``: the largest difference between the projection's 2D transform
    and the ``z = 0`` plane (index ``L // 2``) of the volume's 3D transform, relative to the
    plane's largest value. Zero (to rounding) for the projection along z."""
    projection_ft = fft2_centered(projection)
    plane = fft3_centered(volume)[volume.shape[0] // 2]
    return float((projection_ft - plane).abs().max() / plane.abs().max())
