"""Image-quality metrics against a known clean image: PSNR and SSIM.

Both are pure functions over images ``(..., H, W)`` returning one value per image
``(...)``, following the input's device and dtype. In cryo-EM the images are not on a fixed
scale (they are normalised by dataset statistics), so the default ``data_range`` is the
target's own dynamic range, ``max − min`` per image; pass a number (or a tensor broadcasting
against the leading dims) to use a common range instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _data_range(target: torch.Tensor, data_range: float | torch.Tensor | None) -> torch.Tensor:
    if data_range is None:
        flat = target.flatten(-2)
        return flat.amax(dim=-1) - flat.amin(dim=-1)
    return torch.as_tensor(data_range, dtype=target.dtype, device=target.device)


def psnr(estimate: torch.Tensor, target: torch.Tensor,
         data_range: float | torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10·log10(R² / MSE)`` per image.

    ``estimate`` and ``target`` are ``(..., H, W)``; ``R`` is ``data_range`` (default: the
    target's ``max − min`` per image). Returns ``(...)``; identical images give ``inf``.
    """
    mse = (estimate - target).pow(2).mean(dim=(-2, -1))
    return 10 * torch.log10(_data_range(target, data_range) ** 2 / mse)


def gaussian_window(window: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1D Gaussian of ``window`` taps and standard deviation ``sigma`` pixels."""
    x = torch.arange(window, dtype=dtype, device=device) - (window - 1) / 2
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim(estimate: torch.Tensor, target: torch.Tensor,
         data_range: float | torch.Tensor | None = None, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, per image.

    Local means, variances and covariance are Gaussian-weighted averages (population
    statistics) over ``window × window`` pixels; the SSIM map
    ``(2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))`` with
    ``C1 = (k1·R)²``, ``C2 = (k2·R)²`` is averaged over the positions where the window fits
    inside the image — the same as ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``. ``estimate`` and
    ``target`` are ``(..., H, W)`` with H, W ≥ ``window``; returns ``(...)``.
    """
    lead = target.shape[:-2]
    h, w = target.shape[-2:]
    if min(h, w) < window:
        raise ValueError(f"SSIM window {window} is larger than the {h}×{w} images")
    data_range = _data_range(target, data_range)
    x = estimate.reshape(-1, 1, h, w)
    y = target.reshape(-1, 1, h, w)
    g = gaussian_window(window, sigma, target.dtype, target.device)

    def blur(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(image, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))

    # (co)variances from images centred on the target's mean: E[x²] − E[x]² cancels badly
    # in float32 when the images sit on a large offset
    offset = y.mean(dim=(-2, -1), keepdim=True)
    x, y = x - offset, y - offset
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    mu_x, mu_y = mu_x + offset, mu_y + offset
    # one range per image (or one for all): broadcast against the (N, 1, h, w) SSIM map
    data_range = data_range.expand(lead).reshape(-1, 1, 1, 1)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
                / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)))
    return ssim_map.mean(dim=(-3, -2, -1)).reshape(lead)
