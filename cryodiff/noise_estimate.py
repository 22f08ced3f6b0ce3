"""The SNR and noise power spectrum of real particle images.

**SNR definition** — the one :mod:`cryodiff.simulate` and :mod:`cryodiff.snr` use for
simulated data::

    snr = mean_i var_D(s_i) / mean_i var_D(n_i)

``s_i`` is the CTF-modulated signal of particle ``i`` and ``n_i = x_i − s_i`` everything else in
the image ``x_i``; ``var_D`` is the variance about the mean over the centred disk ``D`` of radius
``radius_fraction · L`` pixels (0.4 by default); both variances are averaged over the
particles before the ratio is taken. ``cryodiff simulate --like`` hits this SNR.

Two estimators (:func:`estimate_noise`):

* ``"poses"`` — the STAR has poses and a map is given: ``c_i = CTF_i ⊛ P_i`` is the map's
  projection at the particle's pose and origin, modulated by its CTF; a per-particle scale
  ``a_i`` and offset are fitted by least squares over the whole image, the residual
  ``r_i = x_i − a_i c_i`` (offset removed) is the noise and ``a_i c_i`` the signal; both disk
  variances are measured directly, less (signal) and plus (noise) the share of the noise
  that the fitted scale absorbs, ``var(a_i) · var_D(c_i)`` with
  ``var(a_i) = Σ_k |Ĉ_i(k)|² P(k) / (L² ‖c_i‖⁴)`` (it matters for coloured noise at low SNR).
* ``"background"`` — no poses (or no map): the pixels outside the particle disk
  (``particle_diameter_A`` plus a margin) hold noise only. Their windowed periodogram,
  corrected for the window's area, estimates the noise power spectrum ``P``; the noise disk
  variance follows from ``P`` (:func:`noise_disk_variance`, exact for stationary noise) and
  the signal's is the images' disk variance minus it (signal and noise are uncorrelated).
  Signal that the CTF spreads beyond the particle, and neighbouring particles, count as
  noise here.

**Noise spectrum** — the periodogram ``|FFT(w·r)|² / Σ w²`` of the (windowed) noise, averaged
over particles and over rings of integer radius ``0 … L//2`` cycles/box (frequency
``ring / (L · pixel_size_A)`` in 1/Å). Its mean over the 2D Fourier grid is the noise
variance per pixel, the normalisation of :func:`cryodiff.noise.radial_power_spectrum`. The
window ``w`` tapers to zero at the box edge (so the box's periodic wrap adds no power) and, for
``"background"``, is zero over the particle. The per-image mean is removed, so ring 0 cannot
be measured: it is set to ring 1's value.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from cryodiff.errors import CryodiffError
from cryodiff.fourier import fft2_centered, radius_grid
from cryodiff.masks import disk_mask
from cryodiff.noise import radial_spectrum_grid, ring_average
from cryodiff.simulate import SimulationConfig
from cryodiff.snr import disk_variance

__all__ = ["NoiseEstimate", "estimate_noise", "noise_disk_variance", "edge_window",
           "background_window", "windowed_periodogram", "ring_average", "DEFAULT_MAX_PARTICLES"]

# The simulator's SNR disk, so that estimates and simulations share one definition.
SNR_RADIUS_FRACTION = SimulationConfig.snr_radius_fraction
DEFAULT_MAX_PARTICLES = 1000
METHODS = ("auto", "poses", "background")


@dataclass(frozen=True, eq=False)
class NoiseEstimate:
    """An SNR and noise power spectrum estimated from particle images.

    ``snr`` on the definition of the module docstring; ``frequency_per_A`` ``(L//2 + 1,)``
    (1/Å) and ``noise_spectrum`` (same shape; per-pixel variance density, mean over the 2D grid
    = noise variance per pixel); ``method`` ``"poses"`` or ``"background"``; ``n_particles``
    used; ``signal_variance`` and ``noise_variance`` the mean disk variances whose ratio is
    ``snr``; ``pixel_variance`` the noise variance per pixel (the 2D spectrum's mean, so
    not reduced by the disk's mean); ``box`` (pixels), ``pixel_size_A``, the disk's
    ``radius_fraction`` and the ``particle_diameter_A`` of the background method (None for poses).
    """

    snr: float
    frequency_per_A: np.ndarray
    noise_spectrum: np.ndarray
    method: str
    n_particles: int
    signal_variance: float
    noise_variance: float
    pixel_variance: float
    box: int
    pixel_size_A: float
    radius_fraction: float = SNR_RADIUS_FRACTION
    particle_diameter_A: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (arrays as lists)."""
        return {"snr": self.snr, "method": self.method, "n_particles": self.n_particles,
                "signal_variance": self.signal_variance, "noise_variance": self.noise_variance,
                "pixel_variance": self.pixel_variance,
                "box": self.box, "pixel_size_A": self.pixel_size_A,
                "radius_fraction": self.radius_fraction,
                "particle_diameter_A": self.particle_diameter_A,
                "snr_definition": SNR_DEFINITION,
                "frequency": [float(f) for f in self.frequency_per_A],
                "noise_spectrum": [float(p) for p in self.noise_spectrum]}


SNR_DEFINITION = ("mean over particles of var(signal) / mean of var(image - signal), "
                  "variances about the mean inside the centred disk of radius "
                  "radius_fraction * box; signal = CTF-modulated projection")


def edge_window(box: int, width_px: float | None = None, device=None,
                dtype=torch.float32) -> torch.Tensor:
    """Separable raised-cosine taper ``(L, L)``: 0 at the box edge, 1 from ``width_px`` inward.

    Default width ``max(3, 0.05 · L)`` pixels.
    """
    width = max(3.0, 0.05 * box) if width_px is None else float(width_px)
    distance = torch.arange(box, device=device, dtype=torch.float64)
    distance = torch.minimum(distance + 0.5, box - 0.5 - distance)  # to the nearest edge
    ramp = 0.5 * (1 - torch.cos(math.pi * (distance / width).clamp(0, 1)))
    return (ramp[:, None] * ramp[None, :]).to(dtype)


def background_window(box: int, radius_px: float, taper_px: float = 4.0, device=None,
                      dtype=torch.float32) -> torch.Tensor:
    """``(L, L)`` window: 0 inside ``radius_px`` of the origin, a raised cosine up to 1 over
    ``taper_px`` pixels outside it, times :func:`edge_window`."""
    radius = radius_grid(box, 2, device, torch.float64)
    ramp = ((radius - radius_px) / taper_px).clamp(0, 1)
    outside = 0.5 * (1 - torch.cos(math.pi * ramp))
    return (outside * edge_window(box, device=device, dtype=torch.float64)).to(dtype)


def windowed_periodogram(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Summed periodograms ``Σ_i |FFT(w · (x_i − m_i))|² / Σ w²`` ``(L, L)`` (centred grid).

    ``m_i`` is the ``w``-weighted mean of image ``i``. For stationary noise of power spectrum
    ``P`` each term's expectation is ``P`` blurred by the window's transform; for white noise
    of variance ``σ²`` it is exactly ``σ²``.
    """
    images = images.double()
    w = window.to(images)
    means = (images * w).sum((-2, -1), keepdim=True) / w.sum()
    spectra = fft2_centered((images - means) * w).abs().square()
    return spectra.sum(0) / w.square().sum()


def noise_disk_variance(power: torch.Tensor, radius_fraction: float = SNR_RADIUS_FRACTION
                        ) -> float:
    """Expected disk variance of stationary noise with centred power spectrum ``power`` (L, L).

    With ``P`` normalised like a periodogram (``E|FFT(n)|² = L² P``) and ``D`` the disk's
    indicator (``M`` pixels, transform ``D̂``)::

        E var_D(n) = E[(1/M) Σ_D n²] − E[mean_D(n)²] = mean_k P(k) − Σ_k |D̂(k)|² P(k) / (M² L²)

    (exact for noise that is stationary on the periodic box).
    """
    box = power.shape[-1]
    disk = disk_mask(box, radius_fraction * box, power.device).double()
    disk_ft = fft2_centered(disk).abs().square()
    m = disk.sum()
    power = power.double()
    return float(power.mean() - (disk_ft * power).sum() / (m * m * box * box))


def _fill_ring_zero(radial: torch.Tensor) -> torch.Tensor:
    radial = radial.clone()
    radial[0] = radial[1]
    return radial


def _single_pixel_size(particles, path) -> float:
    sizes = np.unique(np.asarray(particles.pixel_size_A, dtype=np.float64))
    if len(sizes) != 1:
        raise CryodiffError(f"particles have several pixel sizes {sizes.tolist()}; "
                            "estimate each optics group separately", path=path)
    return float(sizes[0])


def _chosen(n: int, max_particles: int | None, seed: int) -> np.ndarray:
    if max_particles is None or n <= max_particles:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_particles, replace=False))


def _map_at(map_source, box: int, pixel_size_A: float, map_pixel_size_A: float | None
            ) -> torch.Tensor:
    """The map resampled to ``box`` at ``pixel_size_A`` from a path or an ``(L, L, L)`` tensor."""
    from cryodiff.map_resample import load_map_for, resample_map

    if isinstance(map_source, torch.Tensor):
        if map_pixel_size_A is None:
            raise CryodiffError("a map given as a tensor needs map_pixel_size_A")
        return resample_map(map_source.float(), float(map_pixel_size_A), box, pixel_size_A)[0]
    return load_map_for(map_source, box, pixel_size_A, map_pixel_size_A)[0]


def _estimate_with_poses(particles, indices, volume, box, pixel_size_A, radius_fraction,
                         batch_size) -> tuple[float, float, torch.Tensor]:
    from cryodiff.ctf import CtfParams, apply_ctf, ctf_2d
    from cryodiff.geometry import euler_to_matrix
    from cryodiff.io.images import iter_image_batches
    from cryodiff.projection import prepare_volume, project, relion_shifts_px

    prepared = prepare_volume(volume)
    window = edge_window(box, dtype=torch.float64)
    signal = noise = 0.0
    power = torch.zeros(box, box, dtype=torch.float64)
    bias_weights = torch.zeros(box, box, dtype=torch.float64)
    fields = CtfParams.__dataclass_fields__
    for batch, images in iter_image_batches(particles, batch_size, indices):
        eulers = torch.as_tensor(np.asarray(particles.eulers_deg)[batch], dtype=torch.float64)
        shifts = relion_shifts_px(torch.as_tensor(np.asarray(particles.shifts_A)[batch],
                                                  dtype=torch.float64), pixel_size_A, box)
        model = project(prepared, euler_to_matrix(eulers).float(), shifts).double()
        if particles.ctf is not None:
            index = torch.as_tensor(batch)
            ctf = CtfParams(**{name: torch.as_tensor(getattr(particles.ctf, name))[index]
                               for name in fields})
            model = apply_ctf(model, ctf_2d(ctf, box, pixel_size_A, dtype=torch.float64))
        x = images.double()
        xc = x - x.mean((-2, -1), keepdim=True)
        mc = model - model.mean((-2, -1), keepdim=True)
        scale = (xc * mc).sum((-2, -1)) / (mc * mc).sum((-2, -1)).clamp_min(1e-300)
        fitted = scale[:, None, None] * mc
        residual = xc - fitted
        signal += disk_variance(fitted, radius_fraction).sum().item()
        noise += disk_variance(residual, radius_fraction).sum().item()
        power += windowed_periodogram(residual, window)
        # The noise in the fitted scale: var(a_i) = Σ_k |Ĉ_i|² P(k) / (L² ‖c_i‖⁴) adds
        # var(a_i)·var_D(c_i) to the signal and takes it from the residual; its weights on P
        # are summed here and P applied once known.
        energy = (mc * mc).sum((-2, -1))
        weight = disk_variance(mc, radius_fraction) / (box * box * energy * energy)
        bias_weights += (fft2_centered(mc).abs().square() * weight[:, None, None]).sum(0)
    n = len(indices)
    power /= n
    bias = float((bias_weights * power).sum())
    return (signal - bias) / n, (noise + bias) / n, power


def _estimate_from_background(particles, indices, box, pixel_size_A, radius_fraction,
                              particle_diameter_A, batch_size, path
                              ) -> tuple[float, float, torch.Tensor]:
    from cryodiff.io.images import iter_image_batches

    radius_px = particle_diameter_A / 2 / pixel_size_A
    margin_px = max(2.0, 0.1 * radius_px)
    window = background_window(box, radius_px + margin_px, dtype=torch.float64)
    if window.sum() < 0.05 * box * box:
        raise CryodiffError(f"a particle diameter of {particle_diameter_A:g} Å leaves too little "
                            f"background in a {box}-pixel box of {pixel_size_A:g} Å pixels",
                            path=path)
    total = 0.0
    power = torch.zeros(box, box, dtype=torch.float64)
    for _, images in iter_image_batches(particles, batch_size, indices):
        total += disk_variance(images, radius_fraction).sum().item()
        power += windowed_periodogram(images, window)
    n = len(indices)
    power /= n
    grid = radial_spectrum_grid(_fill_ring_zero(ring_average(power)), box)
    noise = noise_disk_variance(grid, radius_fraction)
    return total / n - noise, noise, power


def estimate_noise(particles, map_source: str | os.PathLike | torch.Tensor | None = None,
                   particle_diameter_A: float | None = None,
                   map_pixel_size_A: float | None = None, method: str = "auto",
                   max_particles: int | None = DEFAULT_MAX_PARTICLES, seed: int = 0,
                   radius_fraction: float = SNR_RADIUS_FRACTION,
                   batch_size: int = 64) -> NoiseEstimate:
    """Estimate the SNR and noise power spectrum of ``particles`` (see the module docstring).

    ``particles`` is a STAR path or a :class:`~cryodiff.io.star.ParticleStack`;
    ``map_source`` an MRC path or an ``(L, L, L)`` tensor (then ``map_pixel_size_A`` is
    required), resampled to the particles' box and pixel size
    (:mod:`cryodiff.map_resample`). ``method="auto"`` uses the poses when the STAR has them
    and a map is given, else the background outside ``particle_diameter_A`` (Å). At most
    ``max_particles`` particles (a seeded random subset) are read.
    """
    from cryodiff.io.star import ParticleStack, read_particles

    path = None
    if not isinstance(particles, ParticleStack):
        path = particles
        particles = read_particles(particles)
    else:
        path = particles.star_path
    if method not in METHODS:
        raise CryodiffError(f"method must be one of {METHODS}, not {method!r}")
    if len(particles) == 0:
        raise CryodiffError("the STAR file has no particles", path=path)
    has_poses = particles.eulers_deg is not None
    if method == "auto":
        method = "poses" if has_poses and map_source is not None else "background"
    if method == "poses" and not has_poses:
        raise CryodiffError("the STAR file has no poses (rlnAngleRot/Tilt/Psi): estimate the "
                            "noise from the background with --particle-diameter", path=path)
    if method == "poses" and map_source is None:
        raise CryodiffError("estimating the noise from poses needs a map (--map)", path=path)
    if method == "background" and particle_diameter_A is None:
        raise CryodiffError("without poses and a map the noise comes from the background: "
                            "give --particle-diameter in Å", path=path)
    if particle_diameter_A is not None and not (particle_diameter_A > 0
                                                and math.isfinite(particle_diameter_A)):
        raise CryodiffError(f"--particle-diameter must be a positive number of Å, got "
                            f"{particle_diameter_A}", path=path)
    pixel_size_A = _single_pixel_size(particles, path)
    if particles.box is None:
        raise CryodiffError("the box size is unknown (no rlnImageSize and no readable stack)",
                            path=path)
    box = int(particles.box)
    indices = _chosen(len(particles), max_particles, seed)
    if method == "poses":
        volume = _map_at(map_source, box, pixel_size_A, map_pixel_size_A)
        signal, noise, power = _estimate_with_poses(particles, indices, volume, box,
                                                    pixel_size_A, radius_fraction, batch_size)
    else:
        signal, noise, power = _estimate_from_background(
            particles, indices, box, pixel_size_A, radius_fraction, float(particle_diameter_A),
            batch_size, path)
    if not signal > 0:
        raise CryodiffError("no signal above the noise inside the particle disk (is the "
                            "particle diameter right?)", path=path)
    radial = _fill_ring_zero(ring_average(power))
    frequency = np.arange(box // 2 + 1) / (box * pixel_size_A)
    return NoiseEstimate(
        snr=signal / noise, frequency_per_A=frequency, noise_spectrum=radial.numpy(),
        method=method, n_particles=len(indices), signal_variance=signal,
        noise_variance=noise, pixel_variance=float(power.mean()), box=box,
        pixel_size_A=pixel_size_A, radius_fraction=radius_fraction,
        particle_diameter_A=None if method == "poses" else float(particle_diameter_A))
