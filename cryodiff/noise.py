"""Noise models for simulated particle images: structural noise and shot noise.

Image formation (see :mod:`cryodiff.simulate`)::

    particles = CTF ⊛ (projection + structural noise) + shot noise

* **Coloured noise** — stationary 2D Gaussian noise with a power-law (``P ∝ f^-α``, ice- or
  carbon-like) or exponential (``P ∝ exp(-f/f0)``) power spectrum, before the CTF.
* **Disordered density** — per-particle random blobs in an annulus around the particle (a
  detergent belt or flexible lipids): 3D Gaussian blobs placed in the particle's frame,
  rotated with the particle and projected, so every particle gets a different belt.
* **Shot noise** — white Gaussian noise added after the CTF (the detector's counting noise).

All functions are pure: randomness comes from an explicit ``torch.Generator`` (CPU generators
draw on the CPU and the result moves to ``device``), shapes and dtypes follow the arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cryodiff.fourier import apply_centrosymmetric_filter, fft2_centered, radius_grid


@dataclass(frozen=True)
class BeltGeometry:
    """An annulus around the particle's z axis (the membrane normal), in Å.

    Blobs fill ``inner_radius_A ≤ sqrt(x² + y²) ≤ outer_radius_A`` and
    ``|z| ≤ half_thickness_A`` in the map's frame.
    """

    inner_radius_A: float
    outer_radius_A: float
    half_thickness_A: float


def default_belt_geometry(box: int, pixel_size_A: float) -> BeltGeometry:
    """A belt scaled to the field of view: radii 0.22–0.42 and thickness 0.16 of the box."""
    field_of_view = box * pixel_size_A
    return BeltGeometry(0.22 * field_of_view, 0.42 * field_of_view, 0.08 * field_of_view)


def power_law_spectrum(box: int, exponent: float = 1.0, device=None,
                       dtype=torch.float32) -> torch.Tensor:
    """Power spectrum ``P(f) ∝ f^-exponent`` on the centred ``(box, box)`` Fourier grid.

    ``f`` is the radius in cycles per box, floored at 1 so that the zero frequency is finite.
    Normalised to mean 1, so noise shaped with it has unit variance per pixel.
    """
    radius = radius_grid(box, 2, device, dtype).clamp_min(1.0)
    power = radius.pow(-exponent)
    return power / power.mean()


def exponential_spectrum(box: int, decay_cycles_per_px: float = 0.1, device=None,
                         dtype=torch.float32) -> torch.Tensor:
    """Power spectrum ``P(f) ∝ exp(-f / decay)`` (f in cycles/pixel), normalised to mean 1."""
    radius = radius_grid(box, 2, device, dtype) / box
    power = torch.exp(-radius / decay_cycles_per_px)
    return power / power.mean()


def radial_spectrum_grid(radial: torch.Tensor | Sequence[float], box: int,
                         normalise: bool = False) -> torch.Tensor:
    """A radial power spectrum (rings ``0 … n−1`` cycles/box) on the centred ``(box, box)`` grid.

    Linear interpolation in the radius; beyond the last ring the last value is kept (the
    corners of the grid). ``normalise`` scales the result to mean 1 (unit-variance noise with
    :func:`coloured_noise`).
    """
    radial = torch.as_tensor(radial, dtype=torch.float64)
    radius = radius_grid(box, 2, dtype=torch.float64).clamp_max(len(radial) - 1)
    low = radius.floor().long().clamp_max(len(radial) - 2) if len(radial) > 1 else radius.long()
    if len(radial) == 1:
        power = radial[0].expand(box, box).clone()
    else:
        frac = radius - low
        power = radial[low] * (1 - frac) + radial[low + 1] * frac
    return power / power.mean() if normalise else power


def coloured_noise(white: torch.Tensor, power: torch.Tensor,
                   transfer: torch.Tensor | None = None) -> torch.Tensor:
    """Shape white noise ``(..., L, L)`` (unit variance) to the power spectrum ``(L, L)``.

    With ``power`` normalised to mean 1 the output has unit variance per pixel (in
    expectation) and the expected centred periodogram ``|FFT|² / L²`` equals ``power``.
    An optional ``transfer`` (e.g. a CTF, ``(..., L, L)``) is applied in the same pass.
    """
    amplitude = power.sqrt() if transfer is None else power.sqrt() * transfer
    return apply_centrosymmetric_filter(white, amplitude)


def ring_average(power: torch.Tensor) -> torch.Tensor:
    """Average of a centred ``(L, L)`` grid over rings of integer radius ``0 … L//2`` (float64)."""
    box = power.shape[-1]
    shell = radius_grid(box, 2, power.device).round().long().flatten()
    keep = shell <= box // 2
    values = power.flatten()[keep].double()
    sums = torch.zeros(box // 2 + 1, dtype=torch.float64, device=power.device)
    counts = torch.zeros_like(sums)
    sums.index_add_(0, shell[keep], values)
    counts.index_add_(0, shell[keep], torch.ones_like(values))
    return sums / counts


def radial_power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """Periodogram ``|FFT|² / L²`` averaged over images and rings of integer radius.

    ``images`` is ``(..., L, L)``; returns ``(L // 2 + 1,)`` for radii 0 … L//2 cycles/box.
    """
    box = images.shape[-1]
    power = fft2_centered(images).abs().square().reshape(-1, box, box).mean(0) / box**2
    return ring_average(power).to(power.dtype)


def draw_belt_blobs(n: int, geometry: BeltGeometry, n_blobs: int,
                    generator: torch.Generator | None = None,
                    dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Random blob centres ``(n, n_blobs, 3)`` in Å (x, y, z; map frame) and weights ``(n, n_blobs)``.

    Centres are uniform in the annulus of ``geometry``; weights are exponential with mean 1
    (blobs of disordered material of random size).
    """
    u = torch.rand(n, n_blobs, 4, generator=generator, dtype=torch.float64)
    r2_in, r2_out = geometry.inner_radius_A**2, geometry.outer_radius_A**2
    radius = (r2_in + u[..., 0] * (r2_out - r2_in)).sqrt()  # uniform in area
    angle = 2 * math.pi * u[..., 1]
    z = (2 * u[..., 2] - 1) * geometry.half_thickness_A
    centres = torch.stack([radius * angle.cos(), radius * angle.sin(), z], dim=-1)
    weights = -torch.log1p(-u[..., 3])  # exponential(1) by inversion
    return centres.to(dtype), weights.to(dtype)


def project_blobs(centres_A: torch.Tensor, weights: torch.Tensor, rotations: torch.Tensor,
                  box: int, pixel_size_A: float, blob_sigma_A: float = 3.0,
                  shifts_px: torch.Tensor | None = None,
                  transfer: torch.Tensor | None = None) -> torch.Tensor:
    """Project 3D Gaussian blobs of each particle into images ``(n, box, box)``.

    ``centres_A`` ``(n, B, 3)`` are in the map's frame; particle ``i`` sees a map point ``p`` at
    image position ``(R_i p)_{x,y}`` (the projector's convention, :mod:`cryodiff.projection`),
    moved by ``shifts_px`` ``(n, 2)``. A 3D Gaussian projects to a 2D Gaussian, rendered by a
    bilinear splat and a Gaussian blur of ``hypot(blob_sigma_A / pixel_size_A, 0.5)`` pixels.
    The image integrates the blob mass (sum over pixels = sum of weights). An optional
    ``transfer`` (e.g. a CTF, ``(n, L, L)`` centred) is applied in the same Fourier pass.
    """
    n = centres_A.shape[0]
    dtype, device = centres_A.dtype, centres_A.device
    positions = torch.einsum("nij,nbj->nbi", rotations.to(dtype), centres_A)[..., :2] / pixel_size_A
    if shifts_px is not None:
        positions = positions + shifts_px.to(dtype)[:, None, :]
    coords = positions + box // 2  # (x, y) in pixel indices
    base = coords.floor()
    frac = coords - base
    base = base.long()
    particle = torch.arange(n, device=device)[:, None].expand_as(base[..., 0])
    grid = torch.zeros(n * box * box, dtype=dtype, device=device)
    for dx in (0, 1):
        for dy in (0, 1):
            x, y = base[..., 0] + dx, base[..., 1] + dy
            w = weights * (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
            valid = (x >= 0) & (x < box) & (y >= 0) & (y < box)
            index = (particle * box + y) * box + x
            grid.index_add_(0, index[valid], w[valid])
    grid = grid.reshape(n, box, box)
    sigma_px = math.hypot(blob_sigma_A / pixel_size_A, 0.5)
    radius = radius_grid(box, 2, device, dtype) / box
    blur = torch.exp(-2 * math.pi**2 * sigma_px**2 * radius**2)
    return apply_centrosymmetric_filter(grid, blur if transfer is None else blur * transfer)


def shot_noise(shape: tuple[int, ...], std: float, generator: torch.Generator | None = None,
               dtype=torch.float32, device=None) -> torch.Tensor:
    """White Gaussian detector noise of standard deviation ``std``."""
    return (std * torch.randn(shape, generator=generator, dtype=dtype)).to(device)
