"""Mask-corrected FSC (high-resolution noise substitution) against cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryodiff.fourier import fftn_centered, ifftn_centered
from cryodiff.fsc import (fsc, mask_corrected_fsc, phase_randomized, randomization_shell,
                          shell_index)
from cryodiff.masks import soft_round_mask

CUTOFF = 5


def _low_pass_pair(size: int, noise: float, seed: int = 0):
    """Half maps sharing a signal band-limited to shells <= CUTOFF, plus independent white
    noise: beyond the cutoff the two maps share nothing, so the true FSC there is 0."""
    gen = torch.Generator().manual_seed(seed)
    signal = torch.randn(size, size, size, generator=gen, dtype=torch.float64)
    band = shell_index(size, 3) <= CUTOFF
    signal = ifftn_centered(torch.where(band, fftn_centered(signal, 3), 0), 3).real
    signal = signal / signal.std()
    return (signal + noise * torch.randn(signal.shape, generator=gen, dtype=torch.float64),
            signal + noise * torch.randn(signal.shape, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("size", [31, 32])
def test_phase_randomisation_keeps_amplitudes_and_low_shells(size):
    gen = torch.Generator().manual_seed(1)
    volume = torch.randn(size, size, size, generator=gen, dtype=torch.float64)
    out = phase_randomized(volume, 6, torch.Generator().manual_seed(2))
    before, after = fftn_centered(volume, 3), fftn_centered(out, 3)
    shells = shell_index(size, 3)
    assert out.dtype == volume.dtype and out.shape == volume.shape
    torch.testing.assert_close(after.abs(), before.abs(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(after[shells < 6], before[shells < 6], rtol=1e-9, atol=1e-9)
    curve = fsc(volume, out, 1.0).fsc
    assert np.all(curve[:6] > 1 - 1e-9)
    assert np.abs(curve[8:]).max() < 0.15  # random phases: uncorrelated with the original


def test_randomization_shell_is_the_first_shell_below_the_threshold():
    assert randomization_shell(np.array([1.0, 0.95, 0.85, 0.7, 0.9, 0.2])) == 3
    assert randomization_shell(np.array([1.0, 0.95, 0.9])) == 3


def test_a_sharp_mask_inflates_the_fsc_of_unshared_noise_and_the_correction_removes_it():
    half1, half2 = _low_pass_pair(40, noise=0.5)
    unmasked = fsc(half1, half2, 1.0).fsc
    assert np.abs(unmasked[CUTOFF + 2:]).mean() < 0.03  # the known answer: nothing shared
    mask = soft_round_mask(40, 3, 9.0, 0.0, dtype=torch.float64)  # hard edge
    result = mask_corrected_fsc(half1, half2, mask, 1.0)
    beyond = slice(result.randomized_from_shell + 3, None)
    assert result.randomized_from_shell == CUTOFF + 1
    assert result.masked.fsc[beyond].mean() > 0.25  # the mask alone correlates the noise
    assert result.randomized.fsc[beyond].mean() > 0.25
    assert abs(result.corrected.fsc[beyond].mean()) < 0.05
    assert np.abs(result.corrected.fsc[beyond]).max() < 0.3
    # The masked curve claims far more resolution than the corrected one.
    assert result.masked.resolution_0143_A < 0.75 * result.corrected.resolution_0143_A
    np.testing.assert_array_equal(result.corrected.fsc[:result.randomized_from_shell + 3],
                                  result.masked.fsc[:result.randomized_from_shell + 3])
    # The hard mask decides the masked FSC where the corrected curve crosses 0.143: flagged.
    assert result.randomized_at_resolution() > 0.1


def test_a_loose_soft_mask_changes_little_where_signal_is_shared():
    gen = torch.Generator().manual_seed(3)
    signal = torch.randn(32, 32, 32, generator=gen, dtype=torch.float64)
    support = soft_round_mask(32, 3, 10.0, 4.0, dtype=torch.float64)
    signal = signal * support  # a particle inside the mask, solvent outside
    half1 = signal + 0.3 * torch.randn(signal.shape, generator=gen, dtype=torch.float64)
    half2 = signal + 0.3 * torch.randn(signal.shape, generator=gen, dtype=torch.float64)
    result = mask_corrected_fsc(half1, half2, support, 1.0)
    # Masking removes solvent noise: the corrected FSC is at least the unmasked one, and the
    # randomised curve (what the mask adds) stays small.
    assert np.all(result.corrected.fsc[1:] >= result.unmasked.fsc[1:] - 0.05)
    assert np.abs(result.randomized.fsc[result.randomized_from_shell + 3:]).max() < 0.2
    assert result.randomized_at_resolution() < 0.1  # a trustworthy correction
    # A curve that never falls below 0.8 is reported uncorrected: nothing to flag.
    same = mask_corrected_fsc(signal, signal, support, 1.0)
    assert same.randomized_from_shell == len(same.unmasked.fsc)
    assert np.isnan(same.randomized_at_resolution())


def test_a_map_without_high_frequency_power_is_flagged_mask_limited():
    # Half maps low-passed far below the noise floor of the arithmetic: what the soft mask
    # spreads from low frequencies is all the high shells hold, in both halves alike.
    half1, half2 = _low_pass_pair(32, noise=0.5, seed=4)
    shells = shell_index(32, 3)
    damp = torch.exp(-(shells.double() / 2.0) ** 2)
    half1, half2 = (ifftn_centered(fftn_centered(h, 3) * damp, 3).real for h in (half1, half2))
    result = mask_corrected_fsc(half1, half2, soft_round_mask(32, 3, 12.0, 3.0,
                                                              dtype=torch.float64), 1.0)
    assert result.randomized_at_resolution() > 0.1
