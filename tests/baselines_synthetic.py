"""A small synthetic denoising problem for the baseline tests: smooth blobs, a radial
RELION-convention CTF and white noise, all seeded (independent of the simulator)."""

from __future__ import annotations

import math

import torch

from cryodiff.baselines.base import DenoisingData
from cryodiff.fourier import fft2_centered, ifft2_centered, radius_grid


def blobs(n: int, size: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """``(n, size, size)`` sums of three Gaussian blobs (widths 1.5–4 px) near the centre."""
    axis = torch.arange(size, dtype=dtype) - size // 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    centres = (torch.rand(n, 3, 2, generator=generator, dtype=dtype) - 0.5) * size / 2
    widths = 1.5 + 2.5 * torch.rand(n, 3, generator=generator, dtype=dtype)
    heights = 0.5 + torch.rand(n, 3, generator=generator, dtype=dtype)
    r2 = ((x - centres[..., 0, None, None]) ** 2 + (y - centres[..., 1, None, None]) ** 2)
    return (heights[..., None, None] * torch.exp(-r2 / (2 * widths[..., None, None] ** 2))).sum(1)


def radial_ctf(defocus_A: torch.Tensor, size: int, pixel_size_A: float,
               amplitude_contrast: float = 0.1, wavelength_A: float = 0.0197) -> torch.Tensor:
    """``(n, size, size)`` centred CTF ``-[sqrt(1-A²) sin(π λ Δf k²) + A cos(π λ Δf k²)]``
    (RELION sign, no Cs): a stand-in with the shape and sign of :func:`cryodiff.ctf.ctf_2d`."""
    k2 = (radius_grid(size, 2, dtype=defocus_A.dtype) / (size * pixel_size_A)) ** 2
    chi = math.pi * wavelength_A * defocus_A[:, None, None] * k2
    return -(math.sqrt(1 - amplitude_contrast**2) * torch.sin(chi)
             + amplitude_contrast * torch.cos(chi))


def make_problem(n: int = 32, size: int = 32, noise_std: float = 0.3, with_ctf: bool = False,
                 seed: int = 0, pixel_size_A: float = 4.0, dtype=torch.float32) -> DenoisingData:
    """Seeded blobs (+ CTF) + white noise, with a second independent noisy copy."""
    generator = torch.Generator().manual_seed(seed)
    clean = blobs(n, size, generator)
    ctf = None
    clean_ctf = clean
    if with_ctf:
        defocus = 8000 + 8000 * torch.rand(n, generator=generator, dtype=torch.float64)
        ctf = radial_ctf(defocus, size, pixel_size_A)
        clean_ctf = ifft2_centered(fft2_centered(clean) * ctf)
    noise = torch.randn(2, *clean.shape, generator=generator, dtype=torch.float64) * noise_std
    cast = (lambda t: None if t is None else t.to(dtype))
    return DenoisingData(noisy=cast(clean_ctf + noise[0]), clean_ctf=cast(clean_ctf),
                         clean=cast(clean), ctf=cast(ctf), noisy_pair=cast(clean_ctf + noise[1]),
                         pixel_size_A=pixel_size_A)
