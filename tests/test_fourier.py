"""Centred FFT helpers of cryodiff.fourier."""

import pytest
import torch

from cryodiff.fourier import (apply_centrosymmetric_filter, fft2_centered, ifft2_centered,
                              radius_grid)


@pytest.mark.parametrize("box", [32, 33])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_centrosymmetric_filter_equals_the_centred_fourier_product(box, dtype):
    images = torch.randn(3, box, box, generator=torch.Generator().manual_seed(0), dtype=dtype)
    radius = radius_grid(box, 2, dtype=dtype)
    angle = torch.atan2(*torch.meshgrid(torch.arange(box) - box // 2, torch.arange(box) - box // 2,
                                        indexing="ij"))
    transfer = torch.cos(0.3 * radius) * (1 + 0.2 * torch.cos(2 * angle.to(dtype)))  # CTF-like
    expected = ifft2_centered(fft2_centered(images) * transfer)
    result = apply_centrosymmetric_filter(images, transfer)
    assert result.dtype == dtype
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=1e-4)
