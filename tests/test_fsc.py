"""FSC / FRC: identities, noise statistics, analytic SNR curves, ASPIRE's shell convention."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cryodiff.fourier import radius_grid
from cryodiff.fsc import (FscResult, fourier_correlation, frc, frc_result, fsc, resolution_at,
                          shell_frequencies_A_inv, shell_index)
from cryodiff.masks import soft_round_mask


@pytest.mark.parametrize("size", [31, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fsc_of_map_with_itself_is_one_in_every_shell(size, dtype):
    volume = torch.randn(size, size, size, generator=torch.Generator().manual_seed(1), dtype=dtype)
    result = fsc(volume, volume, pixel_size_A=1.5)
    assert result.fsc.shape == (size // 2 + 1,)
    np.testing.assert_allclose(result.fsc, 1.0, atol=1e-5)
    assert result.resolution_0143_A == pytest.approx(1 / result.frequency_A_inv[-1])
    np.testing.assert_allclose(fsc(volume, -3.0 * volume, 1.5).fsc, -1.0, atol=1e-5)


@pytest.mark.parametrize("size", [33, 40])
def test_fsc_of_independent_noise_is_near_zero(size):
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(size, size, size, generator=gen, dtype=torch.float64)
    b = torch.randn(size, size, size, generator=gen, dtype=torch.float64)
    curve = fsc(a, b, 1.0).fsc
    counts = torch.bincount(shell_index(size, 3).flatten())[: size // 2 + 1].numpy()
    # Real maps: each shell holds n/2 independent complex values, so std(FSC) ≈ sqrt(2/n).
    sigma = np.sqrt(2.0 / counts[1:])
    assert np.all(np.abs(curve[1:]) < 5 * sigma)
    assert abs(np.mean(curve[1:] / sigma)) < 5 / np.sqrt(len(sigma))


def test_fsc_of_signal_plus_noise_matches_the_snr_formula():
    # White signal of variance 1 and white noise of variance 1/snr: FSC = snr / (1 + snr).
    gen = torch.Generator().manual_seed(3)
    size, snr = 48, 0.5
    signal = torch.randn(size, size, size, generator=gen, dtype=torch.float64)
    noise_sd = 1 / np.sqrt(snr)
    a = signal + noise_sd * torch.randn(size, size, size, generator=gen, dtype=torch.float64)
    b = signal + noise_sd * torch.randn(size, size, size, generator=gen, dtype=torch.float64)
    curve = fsc(a, b, 1.0).fsc
    counts = torch.bincount(shell_index(size, 3).flatten())[: size // 2 + 1].numpy()
    error = curve[1:] - snr / (1 + snr)
    assert np.all(np.abs(error) < 4 * np.sqrt(2.0 / counts[1:]))
    assert abs(error[5:].mean()) < 0.01


@pytest.mark.parametrize("size", [16, 17])
def test_batched_frc_gives_one_curve_per_image_pair(size):
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(5, size, size, generator=gen)
    b = a + 0.5 * torch.randn(5, size, size, generator=gen)
    curves = frc(a, b)
    assert curves.shape == (5, size // 2 + 1)
    for i in range(5):
        torch.testing.assert_close(curves[i], fourier_correlation(a[i], b[i], ndim=2))
    np.testing.assert_allclose(frc(a, a).numpy(), 1.0, atol=1e-5)
    result = frc_result(a, b, pixel_size_A=2.0)
    np.testing.assert_allclose(result.fsc, curves.mean(0).double().numpy(), atol=1e-6)


def test_mask_is_applied_to_both_maps():
    gen = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 24, 24, 24, generator=gen, dtype=torch.float64)
    mask = soft_round_mask(24, 3, 8.0, 3.0, dtype=torch.float64)
    masked = fsc(a, b, 1.0, mask_radius_px=8.0)
    np.testing.assert_allclose(masked.fsc, fsc(a * mask, b * mask, 1.0).fsc, atol=1e-12)


def test_resolution_interpolates_linearly_between_bracketing_shells():
    frequency = shell_frequencies_A_inv(20, 2.0)  # shells 0 … 10, 1/40 Å⁻¹ apart
    curve = np.array([1, 0.95, 0.9, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05, 0.3, 0.0])
    # 0.5 lies between shell 4 (0.6) and 5 (0.4): f = 4.5/40; 0.143 between 6 (0.2) and 7 (0.1).
    assert resolution_at(frequency, curve, 0.5) == pytest.approx(40 / 4.5)
    assert resolution_at(frequency, curve, 0.143) == pytest.approx(1 / (frequency[6] + 0.57 * (
        frequency[7] - frequency[6])))
    result = FscResult.from_curve(frequency, curve)
    assert result.resolution_05_A == pytest.approx(40 / 4.5)
    payload = json.loads(result.to_json())
    assert set(payload) == {"frequency", "fsc", "resolution_0143", "resolution_05"}
    assert payload["frequency"][1] == pytest.approx(1 / 40)


def test_shells_round_the_fourier_radius():
    radius = radius_grid(9, 2)
    shells = shell_index(9, 2)
    assert shells[4, 4] == 0 and shells[4, 6] == 2 and shells[5, 5] == 1  # |(1,1)| = 1.41 → 1
    assert torch.all((radius - shells).abs() <= 0.5)


def _aspire_fsc(a: torch.Tensor, b: torch.Tensor, tmp_path, monkeypatch) -> np.ndarray:
    monkeypatch.chdir(tmp_path)  # ASPIRE writes ./logs when imported
    estimation = pytest.importorskip("aspire.utils.resolution_estimation",
                                     reason="aspire is not installed")
    return estimation.FourierShellCorrelation(a.numpy(), b.numpy()).correlations


def test_fsc_matches_aspire_shell_for_shell_on_odd_boxes(tmp_path, monkeypatch):
    gen = torch.Generator().manual_seed(6)
    a = torch.randn(33, 33, 33, generator=gen, dtype=torch.float64)
    b = a + 2 * torch.randn(33, 33, 33, generator=gen, dtype=torch.float64)
    theirs = _aspire_fsc(a, b, tmp_path, monkeypatch)
    ours = fsc(a, b, 1.0).fsc
    # ASPIRE's entry i holds radii i + 0.5 … i + 1.5, cryodiff's shell i + 1.
    np.testing.assert_allclose(ours[1:1 + len(theirs)], theirs, atol=1e-10)


def test_fsc_is_close_to_aspire_on_even_boxes(tmp_path, monkeypatch):
    # For even L ASPIRE measures radii from the box centre (L-1)/2, half a voxel away from
    # the FFT origin L/2, so shells differ slightly; smooth curves still agree closely.
    gen = torch.Generator().manual_seed(7)
    a = torch.randn(32, 32, 32, generator=gen, dtype=torch.float64)
    b = a + 0.3 * torch.randn(32, 32, 32, generator=gen, dtype=torch.float64)
    theirs = _aspire_fsc(a, b, tmp_path, monkeypatch)
    ours = fsc(a, b, 1.0).fsc
    np.testing.assert_allclose(ours[2:1 + len(theirs)], theirs[1:], atol=0.03)
