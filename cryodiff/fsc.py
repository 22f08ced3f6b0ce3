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
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch

from cryodiff.fourier import fftn_centered, radius_grid
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
        mask_radius_px: float | None = None, mask_edge_px: float = 3.0) -> FscResult:
    """FSC between two maps ``(L, L, L)`` and the 0.143 / 0.5 resolutions.

    Args:
        map1, map2: real maps of the same cubic shape.
        pixel_size_A: voxel size in Å.
        mask_radius_px: if given, both maps are multiplied by a soft spherical mask of this
            radius (pixels, raised-cosine edge of ``mask_edge_px``) centred on the box origin.
    """
    if map1.ndim != 3 or map1.shape != map2.shape:
        raise ValueError(f"need two maps of one cubic shape, got {tuple(map1.shape)} and "
                         f"{tuple(map2.shape)}")
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
