"""PSNR and SSIM against closed forms and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryodiff.metrics import gaussian_window, psnr, ssim

skimage_metrics = pytest.importorskip("skimage.metrics")


def smooth_images(shape, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=dtype).cumsum(-1).cumsum(-2) / 10


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_psnr_analytic(dtype):
    target = torch.zeros(2, 3, 8, 8, dtype=dtype)
    target[..., 0, 0] = 2.0  # range 2 per image
    estimate = target + torch.tensor([0.1, 0.2, 0.4], dtype=dtype).reshape(1, 3, 1, 1)
    value = psnr(estimate, target)
    assert value.shape == (2, 3) and value.dtype == dtype
    expected = torch.tensor([10 * math.log10(4 / e ** 2) for e in (0.1, 0.2, 0.4)], dtype=dtype)
    torch.testing.assert_close(value, expected.expand(2, 3))
    # an explicit data range replaces the per-image one
    torch.testing.assert_close(psnr(estimate, target, data_range=1.0), expected.expand(2, 3) - 20 * math.log10(2))
    assert torch.isinf(psnr(target, target)).all()


@pytest.mark.parametrize("size", [(31, 31), (32, 32), (33, 40)])
def test_psnr_matches_skimage(size):
    target = smooth_images((3, *size), 0)
    estimate = target + 0.3 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1), dtype=target.dtype)
    value = psnr(estimate, target)
    for i in range(3):
        t, e = target[i].numpy(), estimate[i].numpy()
        expected = skimage_metrics.peak_signal_noise_ratio(t, e, data_range=t.max() - t.min())
        assert value[i].item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("size", [(11, 11), (31, 31), (32, 32), (33, 40)])
@pytest.mark.parametrize("noise", [0.05, 1.0])
def test_ssim_matches_skimage(size, noise):
    target = smooth_images((2, 2, *size), 2)
    estimate = target + noise * torch.randn(target.shape, generator=torch.Generator().manual_seed(3), dtype=target.dtype)
    value = ssim(estimate, target)
    assert value.shape == (2, 2)
    for index in np.ndindex(2, 2):
        t, e = target[index].numpy(), estimate[index].numpy()
        expected = skimage_metrics.structural_similarity(
            e, t, data_range=t.max() - t.min(), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False)
        assert value[index].item() == pytest.approx(expected, abs=1e-10)
    as_float = ssim(estimate.float(), target.float())
    assert as_float.dtype == torch.float32
    torch.testing.assert_close(as_float.double(), value, rtol=0, atol=1e-5)


def test_ssim_analytic_cases():
    target = smooth_images((2, 20, 20), 4)
    assert torch.allclose(ssim(target, target), torch.ones(2, dtype=target.dtype))
    assert (ssim(target + 0.5, target) < 1).all()
    flat = torch.zeros(1, 16, 16, dtype=torch.float64)
    # σ = 0 images: SSIM = C2/C2 · (2μxμy + C1)/(μx² + μy² + C1) with μx = μy + 1
    value = ssim(flat + 1, flat, data_range=1.0)
    c1 = 0.01 ** 2
    assert value.item() == pytest.approx(c1 / (1 + c1), rel=1e-10)


def test_ssim_per_image_range_and_offset_robustness():
    target = smooth_images((3, 24, 24), 5)
    estimate = target + 0.2 * torch.randn(target.shape, generator=torch.Generator().manual_seed(6),
                                          dtype=target.dtype)
    ranges = torch.tensor([1.0, 2.0, 4.0], dtype=target.dtype)
    per_image = ssim(estimate, target, data_range=ranges)
    for i in range(3):
        assert per_image[i].item() == pytest.approx(
            ssim(estimate[i], target[i], data_range=ranges[i].item()).item(), abs=1e-12)
    # float32 images on a large offset (a common constant keeps μ-terms comparable via R)
    big = ssim((estimate + 1000).float(), (target + 1000).float(), data_range=ranges.float())
    reference = ssim(estimate + 1000, target + 1000, data_range=ranges)
    torch.testing.assert_close(big.double(), reference, rtol=0, atol=1e-4)


def test_gaussian_window_is_normalised():
    w = gaussian_window(11, 1.5, torch.float64)
    assert w.sum().item() == pytest.approx(1.0)
    assert torch.equal(w, w.flip(0)) and w.argmax().item() == 5


def test_ssim_rejects_small_images():
    with pytest.raises(ValueError, match="window"):
        ssim(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), data_range=1.0)
