import pytest
import torch

from baselines_synthetic import make_problem
from cryodiff.baselines import make_baseline
from cryodiff.baselines.base import DenoisingData
from cryodiff.baselines.wiener import (expand_shells, noise_power_outside_disk, radial_average,
                                       shell_index, wiener_filter)
from cryodiff.fourier import fft2_centered, ifft2_centered
from cryodiff.metrics import psnr


@pytest.mark.parametrize("size", [15, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_wiener_filter_is_the_analytic_filter(size, dtype):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, size, size, generator=generator, dtype=dtype)
    ctf = torch.randn(3, size, size, generator=generator, dtype=dtype)
    signal, noise = 2.0, 0.5
    signal_power = torch.full((size, size), signal, dtype=dtype)
    noise_power = torch.full((size, size), noise, dtype=dtype)
    # No CTF and flat spectra: a constant gain S / (S + N).
    out = wiener_filter(images, signal_power, noise_power)
    torch.testing.assert_close(out, images * signal / (signal + noise))
    # With a CTF: C²S/(C²S+N) for clean_ctf, CS/(C²S+N) for clean, voxel by voxel.
    for target, gain in (("clean_ctf", ctf**2 * signal), ("clean", ctf * signal)):
        expected = ifft2_centered(fft2_centered(images) * gain / (ctf**2 * signal + noise))
        out = wiener_filter(images, signal_power, noise_power, ctf, target)
        assert out.dtype == dtype
        torch.testing.assert_close(out, expected)


def test_radial_average_round_trip_and_noise_estimate():
    size = 32
    n_shells = int(shell_index(size).max()) + 1  # the corner shell, round(16·√2) = 23
    assert n_shells == 24
    profile = torch.linspace(3, 1, n_shells, dtype=torch.float64)
    torch.testing.assert_close(radial_average(expand_shells(profile, size)), profile)
    # White noise of std 0.7 has power L² σ² per voxel, also measured from the corners only.
    generator = torch.Generator().manual_seed(1)
    noise = 0.7 * torch.randn(400, size, size, generator=generator, dtype=torch.float64)
    measured = noise_power_outside_disk(noise)
    assert measured[2:].mean() == pytest.approx(size**2 * 0.49, rel=0.05)


@pytest.mark.parametrize("noise_from", ["validation", "outside_disk"])
def test_wiener_baseline_improves_psnr_with_ctf(noise_from):
    train = make_problem(64, 32, noise_std=0.5, with_ctf=True, seed=1)
    test = make_problem(16, 32, noise_std=0.5, with_ctf=True, seed=2)
    wiener = make_baseline("wiener", noise_from=noise_from)
    fit_data = train if noise_from == "validation" else DenoisingData(noisy=train.noisy,
                                                                       ctf=train.ctf)
    out = wiener.fit(fit_data).denoise(test.noisy, test.ctf)
    gain = (psnr(out, test.clean_ctf) - psnr(test.noisy, test.clean_ctf)).mean()
    assert gain > 6
    assert out.dtype == test.noisy.dtype and out.shape == test.noisy.shape
    # The CTF-corrected output is closer to the clean projection than the CTF-modulated one.
    corrected = make_baseline("wiener", noise_from=noise_from, target="clean").fit(fit_data)
    clean_out = corrected.denoise(test.noisy, test.ctf)
    assert (clean_out - test.clean).square().mean() < (out - test.clean).square().mean()
