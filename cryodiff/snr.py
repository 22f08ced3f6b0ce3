"""Measured SNR of simulated particles: variances inside a centred disk, averaged over images.

The definitions (total SNR, structural SNR) are those of :mod:`cryodiff.simulate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from cryodiff.masks import disk_mask

if TYPE_CHECKING:
    from cryodiff.simulate import SimulatedBatch


def disk_variance(images: torch.Tensor, radius_fraction: float = 0.4) -> torch.Tensor:
    """Per-image variance ``(n,)`` inside the disk of radius ``radius_fraction · L`` pixels."""
    mask = disk_mask(images.shape[-1], radius_fraction * images.shape[-1], images.device)
    return images[..., mask].double().var(dim=-1, unbiased=False)


def measure_snr(batch: SimulatedBatch, radius_fraction: float = 0.4) -> dict[str, float]:
    """Measured ``snr`` and ``structural_snr`` of a batch (see the module docstring)."""
    sums = snr_sums(batch, radius_fraction)
    return snr_from_sums(sums)


def snr_sums(batch: SimulatedBatch, radius_fraction: float = 0.4) -> np.ndarray:
    """Summed disk variances (signal, total noise, structural noise) of a batch, to accumulate."""
    return np.array([disk_variance(x, radius_fraction).sum().item() for x in
                     (batch.clean_ctf, batch.particles - batch.clean_ctf, batch.structural)])


def snr_from_sums(sums: np.ndarray) -> dict[str, float | None]:
    """SNRs from :func:`snr_sums` totals (``structural_snr`` None without structural noise)."""
    signal, noise, structural = (float(s) for s in sums)
    return {"snr": signal / noise,
            "structural_snr": signal / structural if structural > 0 else None}
