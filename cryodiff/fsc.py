"""Fourier shell (3D) and ring (2D) correlation, and the resolution they imply.

One implementation, parameterised by the dimension ``ndim``. For shell ``i`` (all Fourier
voxels whose distance from the origin rounds to ``i``, i.e. ``i - 0.5 <= |k| < i + 0.5`` in
voxels of the centred transform)::

    FSC(i) = Re Σ_{k∈i} F1(k) F2*(k) / sqrt( Σ_{k∈i} |F1(k)|² · Σ_{k∈i} |F2(k)|² )

Shell ``i`` sits at spatial frequency ``i / (L · pixel_size_A)`` in 1/Å; shells run from 0
(the mean) to ``L // 2`` (Nyquist for even L). ASPIRE's ``FourierCorrelation`` entry ``j``
holds radii ``j + 0.5 … j + 1.5``, i.e. cryodiff's shell ``j + 1``.

The resolution at a threshold (0.143 for the gold-standard half-map FSC, 0.5 against a
reference) is ``1 / f`` at the first crossing below the threshold after shell 0, with ``f``
interpolated linearly between the two shells that bracket it. A curve that never drops below
the threshold reports the highest measured frequency (the resolution is Nyquist-limited).

Masks and their correction. Multiplying both maps by a mask convolves their transforms with
the mask's: correlated low-frequency signal leaks into higher shells and a sharp mask can
raise the FSC of shells that share nothing but that leak. :func:`mask_corrected_fsc` measures
the leak as RELION's post-processing does (Chen et al. 2013, high-resolution noise
substitution): beyond the shell where the unmasked FSC first falls below 0.8, the phases of
both half maps are replaced by random ones (amplitudes kept), the randomised maps are masked,
and their FSC ``FSC_rand`` is what the mask alone produces. Then, for shells more than two
beyond that one (the mask spreads the kept phases over a few shells),
``FSC_true = (FSC_masked − FSC_rand) / (1 − FSC_rand)``; below, ``FSC_true = FSC_masked``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch

from cryodiff.fourier import fftn_centered, ifftn_centered, radius_grid
from cryodiff.masks import soft_round_mask


def shell_index(size: int, ndim: int, device=None) -> torch.Tensor:
    """Shell number ``round(|k|)`` of every voxel of a centred ``size**ndim`` transform (int64)."""
    return torch.round(radius_grid(size, ndim, device, torch.float64)).long()


def fourier_correlation(x1: torch.Tensor, x2: torch.Tensor, ndim: int) -> torch.Tensor:
    """Shell-wise Fourier correlation of ``x1`` and ``x2`` over their last ``ndim`` dims.

    Args:
        x1, x2: real tensors ``(..., L, L[, L])`` with broadcastable leading (batch) dims.
        ndim: 2 for the FRC of images, 3 for the FSC of maps.

    Returns:
        ``(..., L // 2 + 1)`` correlations of shells 0 … L//2 (see the module docstring);
        float64 for float64 input, float32 otherwise. An empty-power shell gives 0.
    """
    size = x1.shape[-1]
    if x1.shape[-ndim:] != (size,) * ndim or x2.shape[-ndim:] != (size,) * ndim:
        raise ValueError(f"need cubic last {ndim} dims, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    work = torch.float64 if torch.float64 in (x1.dtype, x2.dtype) else torch.float32
    f1 = fftn_centered(x1.to(work), ndim)
    f2 = fftn_centered(x2.to(work), ndim)
    f1, f2 = torch.broadcast_tensors(f1, f2)
    batch = f1.shape[:-ndim]
    f1 = f1.reshape(-1, size ** ndim)
    f2 = f2.reshape(-1, size ** ndim)

    shells = shell_index(size, ndim, f1.device).flatten()
    n_shells = size // 2 + 1
    keep = shells < n_shells
    shells = shells[keep]
    f1, f2 = f1[:, keep], f2[:, keep]

    def shell_sum(values: torch.Tensor) -> torch.Tensor:
        out = values.new_zeros(values.shape[0], n_shells)
        return out.index_add_(1, shells, values)

    cross = shell_sum((f1 * f2.conj()).real)
    power1 = shell_sum(f1.abs().square())
    power2 = shell_sum(f2.abs().square())
    denom = torch.sqrt(power1 * power2)
    corr = torch.where(denom > 0, cross / denom.clamp_min(torch.finfo(work).tiny),
                       torch.zeros_like(cross))
    return corr.reshape(batch + (n_shells,))


def frc(images1: torch.Tensor, images2: torch.Tensor) -> torch.Tensor:
    """Fourier ring correlation of image pairs ``(..., L, L)`` → per-pair curves ``(..., L//2+1)``."""
    return fourier_correlation(images1, images2, ndim=2)


def shell_frequencies_A_inv(size: int, pixel_size_A: float) -> np.ndarray:
    """Spatial frequency (1/Å) of shells ``0 … size // 2``."""
    return np.arange(size // 2 + 1) / (size * pixel_size_A)


def resolution_at(frequency_A_inv: np.ndarray, curve: np.ndarray, threshold: float) -> float:
    """Resolution (Å) where ``curve`` first drops below ``threshold`` after shell 0.

    The crossing frequency is interpolated linearly between the bracketing shells; a curve
    that stays above the threshold returns ``1 / frequency_A_inv[-1]``.
    """
    frequency_A_inv = np.asarray(frequency_A_inv, dtype=np.float64)
    curve = np.asarray(curve, dtype=np.float64)
    below = np.nonzero(curve[1:] < threshold)[0]
    if below.size == 0:
        return float(1.0 / frequency_A_inv[-1])
    i = int(below[0]) + 1
    f0, f1 = frequency_A_inv[i - 1], frequency_A_inv[i]
    c0, c1 = curve[i - 1], curve[i]
    fraction = (c0 - threshold) / (c0 - c1) if c0 > threshold else 0.0
    crossing = f0 + fraction * (f1 - f0)
    return float(1.0 / crossing) if crossing > 0 else math.inf


@dataclass(frozen=True)
class FscResult:
    """An FSC (or FRC) curve and the resolutions it implies.

    ``frequency_A_inv`` and ``fsc`` are float64 arrays ``(L//2 + 1,)``; resolutions in Å.
    """

    frequency_A_inv: np.ndarray
    fsc: np.ndarray
    resolution_0143_A: float
    resolution_05_A: float

    @classmethod
    def from_curve(cls, frequency_A_inv: np.ndarray, curve: np.ndarray) -> FscResult:
        frequency_A_inv = np.asarray(frequency_A_inv, dtype=np.float64)
        curve = np.asarray(curve, dtype=np.float64)
        return cls(frequency_A_inv, curve, resolution_at(frequency_A_inv, curve, 0.143),
                   resolution_at(frequency_A_inv, curve, 0.5))

    def as_dict(self) -> dict:
        """JSON-ready dict with keys ``frequency`` (1/Å), ``fsc``, ``resolution_0143``,
        ``resolution_05`` (Å)."""
        return {"frequency": [float(f) for f in self.frequency_A_inv],
                "fsc": [float(c) for c in self.fsc],
                "resolution_0143": self.resolution_0143_A,
                "resolution_05": self.resolution_05_A}

    def to_json(self) -> str:
        """The :meth:`as_dict` content as a JSON string."""
        return json.dumps(self.as_dict(), indent=2)


def _masked(x: torch.Tensor, ndim: int, mask_radius_px: float | None,
            mask_edge_px: float) -> torch.Tensor:
    if mask_radius_px is None:
        return x
    mask = soft_round_mask(x.shape[-1], ndim, mask_radius_px, mask_edge_px,
                           device=x.device, dtype=x.dtype)
    return x * mask


def fsc(map1: torch.Tensor, map2: torch.Tensor, pixel_size_A: float,
        mask_radius_px: float | None = None, mask_edge_px: float = 3.0,
        mask: torch.Tensor | None = None) -> FscResult:
    """FSC between two maps ``(L, L, L)`` and the 0.143 / 0.5 resolutions.

    Args:
        map1, map2: real maps of the same cubic shape.
        pixel_size_A: voxel size in Å.
        mask_radius_px: if given, both maps are multiplied by a soft spherical mask of this
            radius (pixels, raised-cosine edge of ``mask_edge_px``) centred on the box origin.
        mask: a real ``(L, L, L)`` mask to multiply both maps by instead (e.g. a support
            map). The masked FSC is not corrected: see :func:`mask_corrected_fsc`.
    """
    if map1.ndim != 3 or map1.shape != map2.shape:
        raise ValueError(f"need two maps of one cubic shape, got {tuple(map1.shape)} and "
                         f"{tuple(map2.shape)}")
    if mask is not None:
        if mask.shape != map1.shape:
            raise ValueError(f"mask {tuple(mask.shape)} does not match the maps "
                             f"{tuple(map1.shape)}")
        map1, map2 = map1 * mask.to(map1), map2 * mask.to(map2)
    curve = fourier_correlation(_masked(map1, 3, mask_radius_px, mask_edge_px),
                                _masked(map2, 3, mask_radius_px, mask_edge_px), ndim=3)
    frequency = shell_frequencies_A_inv(map1.shape[-1], pixel_size_A)
    return FscResult.from_curve(frequency, curve.double().cpu().numpy())


def frc_result(image1: torch.Tensor, image2: torch.Tensor, pixel_size_A: float,
               mask_radius_px: float | None = None, mask_edge_px: float = 3.0) -> FscResult:
    """FRC between two images ``(L, L)`` (or the mean curve of two stacks) with resolutions."""
    curve = frc(_masked(image1, 2, mask_radius_px, mask_edge_px),
                _masked(image2, 2, mask_radius_px, mask_edge_px))
    curve = curve.reshape(-1, curve.shape[-1]).mean(dim=0)
    frequency = shell_frequencies_A_inv(image1.shape[-1], pixel_size_A)
    return FscResult.from_curve(frequency, curve.double().cpu().numpy())


def phase_randomized(volume: torch.Tensor, from_shell: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``volume`` ``(L, L, L)`` with random phases in every Fourier shell ``>= from_shell``.

    Amplitudes are kept everywhere and shells below ``from_shell`` are untouched. The random
    phases are those of a white Gaussian noise map, whose transform is Hermitian like the
    volume's, so the product stays the transform of a real map.
    """
    size = volume.shape[-1]
    work = torch.float64 if volume.dtype == torch.float64 else torch.float32
    spectrum = fftn_centered(volume.to(work), 3)
    noise = torch.randn(volume.shape, generator=generator, dtype=work).to(volume.device)
    noise_ft = fftn_centered(noise, 3)
    phase = noise_ft / noise_ft.abs().clamp_min(torch.finfo(work).tiny)
    outer = shell_index(size, 3, volume.device) >= from_shell
    spectrum = torch.where(outer, spectrum * phase, spectrum)
    return ifftn_centered(spectrum, 3).real.to(volume.dtype)


def randomization_shell(unmasked_fsc: np.ndarray, threshold: float = 0.8) -> int:
    """First shell after 0 where the unmasked FSC falls below ``threshold`` (RELION's
    ``--randomize_at_fsc``); the last shell + 1 if it never does."""
    below = np.nonzero(np.asarray(unmasked_fsc)[1:] < threshold)[0]
    return int(below[0]) + 1 if below.size else len(unmasked_fsc)


@dataclass(frozen=True)
class MaskedFsc:
    """Mask-corrected FSC: the ``corrected`` curve (to report) and the curves it comes from.

    ``unmasked``, ``masked``, ``randomized`` (masked FSC of the phase-randomised half maps)
    and ``corrected`` are :class:`FscResult` on the same shells; ``randomized_from_shell`` is
    where the phase randomisation starts (the unmasked FSC's first shell below 0.8).
    """

    unmasked: FscResult
    masked: FscResult
    randomized: FscResult
    corrected: FscResult
    randomized_from_shell: int

    def randomized_at_resolution(self, guard_shells: int = 2) -> float:
        """The randomised FSC at the corrected curve's 0.143 crossing (nearest shell); NaN
        when that shell is not beyond ``randomized_from_shell + guard_shells``, where the
        masked FSC is reported uncorrected (e.g. a curve that never drops below 0.8).

        Above 0.1 the mask, not the maps, decides the masked FSC there (RELION warns of a too
        sharp mask): the correction divides two nearly equal numbers and the resolution it
        gives is not to be trusted. This happens with a sharp mask, or when the maps have
        almost no power left at high frequency (a heavy low-pass), so that what the mask
        spreads from low frequencies dominates."""
        frequency = 1.0 / self.corrected.resolution_0143_A
        shell = int(np.argmin(np.abs(self.corrected.frequency_A_inv - frequency)))
        if shell <= self.randomized_from_shell + guard_shells:
            return math.nan
        return float(self.randomized.fsc[shell])

    def as_dict(self) -> dict:
        """JSON-ready: the corrected curve's :meth:`FscResult.as_dict` keys, plus
        ``fsc_unmasked``, ``fsc_masked``, ``fsc_randomized`` and ``randomized_from_shell``."""
        return self.corrected.as_dict() | {
            "fsc_unmasked": [float(c) for c in self.unmasked.fsc],
            "fsc_masked": [float(c) for c in self.masked.fsc],
            "fsc_randomized": [float(c) for c in self.randomized.fsc],
            "randomized_from_shell": self.randomized_from_shell}


def mask_corrected_fsc(half1: torch.Tensor, half2: torch.Tensor, mask: torch.Tensor,
                       pixel_size_A: float, randomize_below_fsc: float = 0.8,
                       guard_shells: int = 2, seed: int = 0) -> MaskedFsc:
    """Gold-standard FSC of two half maps under ``mask``, corrected for what the mask adds.

    High-resolution noise substitution (see the module docstring): the half maps' phases are
    randomised from shell ``s`` (the unmasked FSC's first shell below ``randomize_below_fsc``)
    on, and for shells ``> s + guard_shells``
    ``FSC_true = (FSC_masked − FSC_rand) / (1 − FSC_rand)``; below, the masked FSC.

    Args:
        half1, half2: independent half maps ``(L, L, L)`` (unmasked).
        mask: real ``(L, L, L)`` mask, 1 on the particle, soft edge, 0 in the solvent.
        pixel_size_A: voxel size in Å.
        seed: seed of the random phases (one draw per half map).
    """
    unmasked = fsc(half1, half2, pixel_size_A)
    masked = fsc(half1, half2, pixel_size_A, mask=mask)
    start = randomization_shell(unmasked.fsc, randomize_below_fsc)
    generator = torch.Generator().manual_seed(seed)
    random1 = phase_randomized(half1, start, generator)
    random2 = phase_randomized(half2, start, generator)
    randomized = fsc(random1, random2, pixel_size_A, mask=mask)
    corrected_curve = masked.fsc.copy()
    shells = np.arange(len(corrected_curve))
    outer = shells > start + guard_shells
    rand = randomized.fsc[outer]
    # 1 − FSC_rand is ≈ 1 in practice; a mask so tight that it leaves it near 0 is reported
    # as zero correlation rather than a division by ~0.
    corrected_curve[outer] = np.where(1 - rand > 1e-6, (masked.fsc[outer] - rand)
                                      / np.maximum(1 - rand, 1e-6), 0.0)
    corrected = FscResult.from_curve(masked.frequency_A_inv, corrected_curve)
    return MaskedFsc(unmasked, masked, randomized, corrected, start)
