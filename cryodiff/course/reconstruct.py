"""Solutions to the exercises of notebook 04 (reconstruction and FSC)."""

from __future__ import annotations

import numpy as np


def fsc_with_more_particles(fsc_half: np.ndarray, factor: float) -> np.ndarray:
    """Exercise 1. The half-map FSC after using ``factor`` times as many particles.

    Per shell ``FSC = SSNR / (1 + SSNR)`` with the half map's spectral SNR, which grows in
    proportion to the number of particles averaged: ``SSNR = FSC / (1 − FSC)``, times
    ``factor``, back to ``FSC``. (Negative FSC values — pure noise — are treated as 0.)
    """
    fsc_half = np.clip(np.asarray(fsc_half, dtype=np.float64), 0.0, 1 - 1e-12)
    ssnr = fsc_half / (1 - fsc_half) * factor
    return ssnr / (1 + ssnr)


def fsc_full_map_vs_truth(fsc_half: np.ndarray) -> np.ndarray:
    """Exercise 2. The FSC of the full map (both halves averaged) against the true map,
    predicted from the half-map FSC (Rosenthal & Henderson 2003): ``sqrt(2F / (1 + F))``.
    At ``F = 0.143`` it is 0.5 — why notebook 04 compares with the truth at 0.5."""
    fsc_half = np.clip(np.asarray(fsc_half, dtype=np.float64), 0.0, 1.0)
    return np.sqrt(2 * fsc_half / (1 + fsc_half))


def resolution_where_below(frequency_A_inv: np.ndarray, curve: np.ndarray,
                           threshold: float) -> float:
    """Exercise 3. The resolution (Å) where ``curve`` first drops below ``threshold`` after
    shell 0, the crossing frequency interpolated linearly between the two shells around it;
    ``1 / last frequency`` when it never drops."""
    frequency_A_inv = np.asarray(frequency_A_inv, dtype=np.float64)
    curve = np.asarray(curve, dtype=np.float64)
    for shell in range(1, len(curve)):
        if curve[shell] < threshold:
            above, below = curve[shell - 1], curve[shell]
            fraction = (above - threshold) / (above - below)
            crossing = frequency_A_inv[shell - 1] + fraction * (
                frequency_A_inv[shell] - frequency_A_inv[shell - 1])
            return float(1 / crossing)
    return float(1 / frequency_A_inv[-1])
