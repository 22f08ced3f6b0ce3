"""Solutions to the exercises of notebook 05 (real particles)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cryodiff.course.simulate import first_ctf_zero_A_inv
from cryodiff.fourier import fft2_centered
from cryodiff.masks import disk_mask
from cryodiff.noise import radial_power_spectrum
from cryodiff.noise_estimate import estimate_noise, ring_average


def first_zero_of_particle(particles, index: int = 0, box: int | None = None,
                           pixel_size_A: float | None = None) -> dict[str, float]:
    """Exercise 1. Where the first Thon ring of particle ``index`` of a
    :class:`~cryodiff.io.star.ParticleStack` should be.

    The defocus is the mean of ``rlnDefocusU`` and ``rlnDefocusV`` (Å; the astigmatism is
    small next to it), with the particle's voltage, Cs and amplitude contrast. Returns the
    defocus (Å), the first zero's frequency (1/Å), its period (Å) and its ring radius in
    pixels of a ``box``-pixel image of ``pixel_size_A`` Å pixels (the stack's by default):
    ``k · box · pixel_size_A`` cycles per box.
    """
    ctf = particles.ctf

    def value(name: str) -> float:
        return float(torch.as_tensor(getattr(ctf, name)).reshape(-1)[index])

    defocus_A = (value("defocus_u_A") + value("defocus_v_A")) / 2
    k = first_ctf_zero_A_inv(defocus_A, voltage_kV=value("voltage_kV"), cs_mm=value("cs_mm"),
                             amplitude_contrast=value("amplitude_contrast"))
    box = int(particles.box) if box is None else box
    pixel_size_A = float(particles.pixel_size_A[index]) if pixel_size_A is None else pixel_size_A
    return {"defocus_A": defocus_A, "first_zero_A_inv": k, "first_zero_period_A": 1 / k,
            "first_zero_radius_px": k * box * pixel_size_A}


def thon_ring_minimum_px(images: torch.Tensor, expected_px: float,
                         window_px: float = 6.0) -> int:
    """Exercise 1, measured. The ring radius (pixels, cycles per box) of least power in the
    radial power spectrum of ``images (N, L, L)`` within ``window_px`` of ``expected_px``:
    where the first Thon ring is seen, to compare with :func:`first_zero_of_particle`."""
    spectrum = radial_power_spectrum(images.double())
    radii = torch.arange(len(spectrum), dtype=torch.float64)
    near = ((radii - expected_px).abs() <= window_px) & (radii > 0)
    candidates = torch.nonzero(near).flatten()
    return int(candidates[spectrum[candidates].argmin()])


def snr_by_diameter(particles, diameters_A: Sequence[float]) -> dict[float, float]:
    """Exercise 2. The background method's SNR estimate for each particle diameter (Å).

    A diameter smaller than the particle lets particle signal into the "background": the
    noise is overestimated and the SNR underestimated. Once the disk covers the particle the
    estimate should settle; a still larger disk leaves only the box's corners (few pixels,
    and whatever lies there: neighbouring particles, the box edge) until
    :func:`~cryodiff.noise_estimate.estimate_noise` refuses.
    """
    return {float(d): estimate_noise(particles, particle_diameter_A=float(d),
                                     method="background").snr for d in diameters_A}


def background_noise_spectrum(images: torch.Tensor, radius_px: float) -> torch.Tensor:
    """Exercise 3. The radial noise power spectrum ``(L//2 + 1,)`` of ``images (N, L, L)``
    from the pixels outside the centred disk of ``radius_px`` pixels.

    Each image's background mean is removed and the disk set to zero; the periodogram
    ``|FFT|²`` is divided by the number ``M`` of background pixels (for white noise of
    variance ``σ²`` its expectation is then ``σ²`` at every frequency), averaged over images
    and over rings of integer radius. The mean removal empties ring 0, which takes ring 1's
    value. The hard disk edge blurs the spectrum a little (the package tapers its window).
    """
    images = images.double()
    outside = (~disk_mask(images.shape[-1], radius_px, images.device)).double()
    means = (images * outside).sum((-2, -1), keepdim=True) / outside.sum()
    power = fft2_centered((images - means) * outside).abs().square().mean(0) / outside.sum()
    radial = ring_average(power)
    radial[0] = radial[1]
    return radial


def background_std(images: torch.Tensor, radius_px: float) -> float:
    """Exercise 4. The std of the pixels outside the centred disk of ``radius_px`` pixels,
    pooled over ``images (N, L, L)`` after removing each image's own background mean. The
    ratio of a denoised stack's value to the noisy stack's is
    :func:`cryodiff.benchmark.real_compare.background_ratio`."""
    outside = ~disk_mask(images.shape[-1], radius_px, images.device)
    values = images[..., outside].double()
    return float((values - values.mean(dim=-1, keepdim=True)).std())
