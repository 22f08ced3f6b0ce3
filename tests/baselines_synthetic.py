"""A small synthetic denoising problem for the baseline tests: smooth blobs, cryodiff's CTF
and white noise, all seeded. The blobs are simpler than simulated projections on purpose:
the tests check each baseline's mechanics, not the benchmark's numbers."""

from __future__ import annotations

import torch

from cryodiff.baselines.base import DenoisingData
from cryodiff.ctf import apply_ctf, ctf_2d, ctf_params


def blobs(n: int, size: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """``(n, size, size)`` sums of three Gaussian blobs (widths 1.5–4 px) near the centre."""
    axis = torch.arange(size, dtype=dtype) - size // 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    centres = (torch.rand(n, 3, 2, generator=generator, dtype=dtype) - 0.5) * size / 2
    widths = 1.5 + 2.5 * torch.rand(n, 3, generator=generator, dtype=dtype)
    heights = 0.5 + torch.rand(n, 3, generator=generator, dtype=dtype)
    r2 = ((x - centres[..., 0, None, None]) ** 2 + (y - centres[..., 1, None, None]) ** 2)
    return (heights[..., None, None] * torch.exp(-r2 / (2 * widths[..., None, None] ** 2))).sum(1)


def make_problem(n: int = 32, size: int = 32, noise_std: float = 0.3, with_ctf: bool = False,
                 seed: int = 0, pixel_size_A: float = 4.0, dtype=torch.float32) -> DenoisingData:
    """Seeded blobs (+ CTF) + white noise, with a second independent noisy copy."""
    generator = torch.Generator().manual_seed(seed)
    clean = blobs(n, size, generator)
    ctf = None
    clean_ctf = clean
    if with_ctf:
        defocus = 8000 + 8000 * torch.rand(n, generator=generator, dtype=torch.float64)
        astigmatism = 500 * torch.rand(n, generator=generator, dtype=torch.float64)
        params = ctf_params(defocus + astigmatism, defocus - astigmatism,
                            defocus_angle_deg=30.0, bfactor_A2=20.0)
        ctf = ctf_2d(params, size, pixel_size_A, dtype=torch.float64)
        clean_ctf = apply_ctf(clean, ctf)
    noise = torch.randn(2, *clean.shape, generator=generator, dtype=torch.float64) * noise_std
    cast = (lambda t: None if t is None else t.to(dtype))
    return DenoisingData(noisy=cast(clean_ctf + noise[0]), clean_ctf=cast(clean_ctf),
                         clean=cast(clean), ctf=cast(ctf), noisy_pair=cast(clean_ctf + noise[1]),
                         pixel_size_A=pixel_size_A)
