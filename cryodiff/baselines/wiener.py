"""CTF-aware Wiener filter with radially averaged signal and noise power spectra.

Image model, per particle and Fourier voxel ``k`` (centred grid, unnormalised FFT):
``X(k) = C(k) F(k) + N(k)`` with CTF ``C``, clean projection ``F`` of power ``S(|k|)`` and
noise of power ``P_n(|k|)``. The linear minimum-MSE estimates are

* CTF-modulated target (``clean_ctf = C F``): ``Ĉ F = C² S / (C² S + P_n) · X``
* CTF-corrected target (``clean = F``):        ``F̂  = C S / (C² S + P_n) · X``

``S`` comes from the data: the radial average of ``|X|²`` minus the noise power, divided by
the radial average of ``C²`` (or, with clean validation images, from those directly). The
noise power comes from the pixels outside the particle disk or from ``noisy - clean_ctf``
on a validation set.
"""

from __future__ import annotations

import torch

from cryodiff.baselines.base import DenoisingData, check_images, check_target
from cryodiff.fourier import fft2_centered, ifft2_centered, radius_grid
from cryodiff.masks import disk_mask


def shell_index(size: int, device=None) -> torch.Tensor:
    """Integer Fourier shell ``round(|k|)`` of each voxel of a centred ``(size, size)`` grid."""
    return radius_grid(size, 2, device, torch.float64).round().long()


def radial_average(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``(N, L, L)`` (or ``(L, L)``) centred-grid values over all images and each
    integer shell; returns ``(n_shells,)`` with ``n_shells = max shell + 1``."""
    size = values.shape[-1]
    shells = shell_index(size, values.device).flatten()
    flat = values.reshape(-1, size * size)
    n_shells = int(shells.max()) + 1
    sums = torch.zeros(n_shells, dtype=values.dtype, device=values.device)
    sums.index_add_(0, shells, flat.sum(0))
    counts = torch.bincount(shells, minlength=n_shells).to(values.dtype) * flat.shape[0]
    return sums / counts


def expand_shells(profile: torch.Tensor, size: int) -> torch.Tensor:
    """The ``(size, size)`` centred grid holding ``profile[round(|k|)]`` at each voxel."""
    return profile[shell_index(size, profile.device)]


def wiener_filter(images: torch.Tensor, signal_power: torch.Tensor, noise_power: torch.Tensor,
                  ctf: torch.Tensor | None = None, target: str = "clean_ctf") -> torch.Tensor:
    """Apply the Wiener filter to ``(N, L, L)`` images.

    ``signal_power`` (power of the CTF-free projection) and ``noise_power`` are per-voxel
    spectra broadcastable to ``(N, L, L)`` on the centred grid, in units of
    ``|fft2_centered(image)|²``. ``ctf`` is ``(N, L, L)`` or None (no CTF). ``target``
    selects ``C² S / (C² S + P_n)`` ("clean_ctf") or ``C S / (C² S + P_n)`` ("clean").
    """
    check_target(target)
    ctf = torch.ones_like(images) if ctf is None else ctf.to(images.dtype)
    signal_power = signal_power.to(images.dtype).clamp(min=0)
    noise_power = noise_power.to(images.dtype)
    denominator = ctf.square() * signal_power + noise_power
    gain = ctf * signal_power if target == "clean" else ctf.square() * signal_power
    transfer = gain / denominator.clamp(min=torch.finfo(images.dtype).tiny)
    return ifft2_centered(fft2_centered(images) * transfer)


def noise_power_outside_disk(images: torch.Tensor, radius_px: float | None = None
                             ) -> torch.Tensor:
    """Radial noise power ``(n_shells,)`` from the pixels outside the particle disk.

    The images are multiplied by the complement of the disk (default radius L/2 - 1, so only
    the corners are used) and the power is divided by the kept pixel fraction, which is
    unbiased for white noise and a smoothed estimate for coloured noise.
    """
    outside = ~disk_mask(images.shape[-1], radius_px, images.device)
    fraction = outside.to(images.dtype).mean()
    corners = (images - images[:, outside].mean(dim=1)[:, None, None]) * outside
    return radial_average(fft2_centered(corners).abs().square()) / fraction


def estimate_signal_power(noisy: torch.Tensor, noise_power: torch.Tensor,
                          ctf: torch.Tensor | None = None) -> torch.Tensor:
    """Radial power ``(n_shells,)`` of the CTF-free signal: ``(⟨|X|²⟩ - P_n) / ⟨C²⟩``."""
    total = radial_average(fft2_centered(noisy).abs().square())
    ctf_power = 1.0 if ctf is None else radial_average(ctf.to(noisy.dtype).square())
    return ((total - noise_power) / ctf_power).clamp(min=0)


class WienerFilter:
    """Per-particle CTF-aware Wiener filter with spectra fitted on a split.

    ``noise_from``: ``"validation"`` (needs ``clean_ctf`` in the fitting data; the signal
    power is then measured on the clean images too) or ``"outside_disk"`` (noisy images
    only). ``target``: ``"clean_ctf"`` (default, the pure-denoising target) or ``"clean"``
    (CTF-corrected, phase-flipped and amplitude-restored where the SNR allows).
    """

    name = "wiener"

    def __init__(self, noise_from: str = "validation", target: str = "clean_ctf",
                 disk_radius_px: float | None = None):
        if noise_from not in ("validation", "outside_disk"):
            raise ValueError(f"noise_from must be 'validation' or 'outside_disk', not {noise_from!r}")
        self.noise_from = noise_from
        self.target = check_target(target)
        self.disk_radius_px = disk_radius_px
        self.signal_power: torch.Tensor | None = None
        self.noise_power: torch.Tensor | None = None

    def fit(self, data: DenoisingData) -> WienerFilter:
        """Estimate radial signal and noise power ``(n_shells,)`` from ``data``."""
        check_images(data.noisy, data.ctf)
        noisy = data.noisy.double()
        ctf = None if data.ctf is None else data.ctf.double()
        if self.noise_from == "validation":
            clean_ctf = data.target("clean_ctf").double()
            self.noise_power = radial_average(fft2_centered(noisy - clean_ctf).abs().square())
            ctf_power = 1.0 if ctf is None else radial_average(ctf.square())
            self.signal_power = radial_average(fft2_centered(clean_ctf).abs().square()) / ctf_power
        else:
            self.noise_power = noise_power_outside_disk(noisy, self.disk_radius_px)
            self.signal_power = estimate_signal_power(noisy, self.noise_power, ctf)
        return self

    def denoise(self, images: torch.Tensor, ctf: torch.Tensor | None = None) -> torch.Tensor:
        """Wiener-filter ``(N, L, L)`` images with their ``(N, L, L)`` CTFs (None: no CTF)."""
        check_images(images, ctf)
        if self.signal_power is None or self.noise_power is None:
            raise RuntimeError("WienerFilter.denoise called before fit()")
        size = images.shape[-1]
        out = wiener_filter(images.double(), expand_shells(self.signal_power, size),
                            expand_shells(self.noise_power, size),
                            None if ctf is None else ctf.double(), self.target)
        return out.to(images.dtype)
