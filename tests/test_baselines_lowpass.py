import math

import pytest
import torch

from baselines_synthetic import make_problem
from cryodiff.baselines import make_baseline
from cryodiff.baselines.lowpass import choose_sigma, gaussian_lowpass
from cryodiff.metrics import psnr


@pytest.mark.parametrize("size", [31, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_lowpass_matches_real_space_gaussian(size, dtype):
    # A delta at the origin becomes the sampled (periodically wrapped) Gaussian kernel.
    sigma = 1.7
    delta = torch.zeros(1, size, size, dtype=dtype)
    delta[0, 0, 0] = 1
    out = gaussian_lowpass(delta, sigma)
    d = torch.arange(size, dtype=torch.float64)
    d = torch.minimum(d, size - d)
    kernel_1d = torch.exp(-d**2 / (2 * sigma**2))
    kernel = torch.outer(kernel_1d, kernel_1d) / kernel_1d.sum() ** 2
    assert out.dtype == dtype and out.shape == delta.shape
    torch.testing.assert_close(out[0].double(), kernel, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(gaussian_lowpass(delta, 0.0), delta)


def test_choose_sigma_finds_the_known_blur():
    # Target = noisy blurred by a known σ and no noise: the search must recover that σ.
    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(8, 32, 32, generator=generator, dtype=torch.float64)
    target = gaussian_lowpass(noisy, 2.3)
    sigma, search = choose_sigma(noisy, target)
    assert sigma == pytest.approx(2.3, rel=1e-3)
    assert len(search["sigma_px"]) == len(search["mse"])


@pytest.mark.parametrize("size", [31, 32])
def test_choose_sigma_finds_a_blur_wider_than_a_quarter_box(size):
    # The first grid stops at L/4 (≈ 8 px); the best σ (12 px) lies beyond, and the grid
    # grows until it brackets it.
    generator = torch.Generator().manual_seed(1)
    noisy = torch.randn(8, size, size, generator=generator, dtype=torch.float64)
    target = gaussian_lowpass(noisy, 12.0)
    sigma, search = choose_sigma(noisy, target)
    assert sigma == pytest.approx(12.0, rel=1e-3)
    assert search["sigma_px"][-1] > 12.0 > size / 4
    assert search["mse"][-1] > min(search["mse"])  # the best is inside the grid


def test_lowpass_baseline_improves_psnr_and_picks_sensible_sigma():
    train = make_problem(32, 32, noise_std=0.5, seed=1)
    test = make_problem(16, 32, noise_std=0.5, seed=2)
    baseline = make_baseline("lowpass").fit(train)
    out = baseline.denoise(test.noisy)
    gain = (psnr(out, test.clean_ctf) - psnr(test.noisy, test.clean_ctf)).mean()
    assert gain > 6
    # Blobs are 1.5-4 px wide: the best filter is narrower than them but not a no-op.
    assert 0.5 < baseline.sigma_px < 4
    assert f"σ = {baseline.sigma_px:.2f} px chosen on validation" in baseline.describe()
    assert out.dtype == test.noisy.dtype and out.shape == test.noisy.shape
    # The chosen σ is (to grid precision) no worse on the fitting split than its neighbours.
    mse = lambda s: float((gaussian_lowpass(train.noisy, s) - train.clean_ctf).square().mean())
    best = mse(baseline.sigma_px)
    assert best <= mse(baseline.sigma_px * 1.1) and best <= mse(baseline.sigma_px / 1.1)
    assert math.isfinite(best)
