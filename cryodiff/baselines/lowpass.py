"""Gaussian low-pass filter whose width is chosen on a validation set with clean targets
(on a grid extended while its best width sits at the edge: no upper cap)."""

from __future__ import annotations

import math

import torch

from cryodiff.baselines.base import DenoisingData, check_images, check_target
from cryodiff.baselines.grid_search import geometric_search


def gaussian_lowpass(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Convolve images ``(..., L, L)`` with a periodic Gaussian of std ``sigma_px`` pixels.

    Applied in Fourier space as ``exp(-2 π² σ² |f|²)`` with ``f`` in cycles/pixel, so
    ``sigma_px = 0`` returns the input unchanged.
    """
    if sigma_px <= 0:
        return images.clone()
    rows, cols = images.shape[-2:]
    fy = torch.fft.fftfreq(rows, device=images.device, dtype=images.dtype)
    fx = torch.fft.rfftfreq(cols, device=images.device, dtype=images.dtype)
    transfer = torch.exp(-2 * math.pi**2 * sigma_px**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    return torch.fft.irfft2(torch.fft.rfft2(images) * transfer, s=(rows, cols))


def gaussian_transfer(size: int, sigma_px: float, dtype=torch.float64, device=None
                      ) -> torch.Tensor:
    """The ``(size, size)`` transfer function ``exp(-2 π² σ² |f|²)`` on the (uncentred)
    FFT grid, ``f`` in cycles/pixel."""
    f = torch.fft.fftfreq(size, dtype=dtype, device=device)
    return torch.exp(-2 * math.pi**2 * sigma_px**2 * (f[:, None] ** 2 + f[None, :] ** 2))


def _validation_mse(noisy_ft: torch.Tensor, target_ft: torch.Tensor, sigma_px: float) -> float:
    # Parseval: the mean squared pixel error equals the mean of |H X - T|² / L² in Fourier
    # space, so each trial width costs one multiply instead of an inverse FFT.
    size = noisy_ft.shape[-1]
    transfer = gaussian_transfer(size, sigma_px, noisy_ft.real.dtype, noisy_ft.device)
    return float((noisy_ft * transfer - target_ft).abs().square().mean()) / size**2


def choose_sigma(noisy: torch.Tensor, target: torch.Tensor, max_sigma_px: float | None = None,
                 n_grid: int = 25, n_refine: int = 20, max_extensions: int = 40
                 ) -> tuple[float, dict[str, list[float]]]:
    """The σ (pixels) minimising the mean squared error to ``target`` on ``(N, L, L)`` images.

    Minimising the MSE is maximising the PSNR for a fixed peak value. A log-spaced grid of
    ``n_grid`` widths in ``[0.1, max_sigma_px]`` (default L/4), plus σ = 0, brackets the
    optimum; the grid is extended past its edge while the best width sits there (at most
    ``max_extensions`` steps of the grid ratio, :func:`geometric_search`: no cap at L/4);
    ``n_refine`` golden-section steps then refine it inside the bracket. Returns
    ``(sigma_px, {"sigma_px": grid, "mse": mse on the grid})``, the grid ascending from 0.
    """
    max_sigma_px = noisy.shape[-1] / 4 if max_sigma_px is None else max_sigma_px
    noisy_ft, target_ft = torch.fft.fft2(noisy.double()), torch.fft.fft2(target.double())
    search = geometric_search(lambda s: _validation_mse(noisy_ft, target_ft, s), 0.1,
                              max_sigma_px, n_grid, max_extensions)
    grid = [0.0, *search.values]
    mse = [_validation_mse(noisy_ft, target_ft, 0.0), *search.losses]
    best = min(range(len(grid)), key=mse.__getitem__)
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    # Golden-section search on the bracket around the best grid point (MSE is unimodal in σ
    # for a smooth target spectrum, and the grid bracket guards against local wiggles).
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low + (1 - ratio) * (high - low), low + ratio * (high - low)
    fa, fb = _validation_mse(noisy_ft, target_ft, a), _validation_mse(noisy_ft, target_ft, b)
    for _ in range(n_refine):
        if fa < fb:
            high, b, fb = b, a, fa
            a = low + (1 - ratio) * (high - low)
            fa = _validation_mse(noisy_ft, target_ft, a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = _validation_mse(noisy_ft, target_ft, b)
    candidates = [(mse[best], grid[best]), (fa, a), (fb, b)]
    return min(candidates)[1], {"sigma_px": grid, "mse": mse}


class GaussianLowpass:
    """Gaussian low-pass baseline: ``fit`` chooses σ on a split with clean targets.

    Output estimates ``target`` (default ``"clean_ctf"``: a low-pass filter cannot undo the
    CTF, so it is only meaningful for the CTF-modulated target).
    """

    name = "lowpass"

    def __init__(self, sigma_px: float | None = None, target: str = "clean_ctf"):
        self.sigma_px = sigma_px
        self.target = check_target(target)
        self.search: dict[str, list[float]] | None = None

    def fit(self, data: DenoisingData) -> GaussianLowpass:
        """Choose ``sigma_px`` on ``data`` (noisy images and their ``target``)."""
        check_images(data.noisy)
        self.sigma_px, self.search = choose_sigma(data.noisy, data.target(self.target))
        return self

    def describe(self) -> str:
        """One line for the results table: σ and the grid it was chosen from."""
        if self.search is None:
            return f"σ = {self.sigma_px:.2f} px, given"
        grid, mse = self.search["sigma_px"], self.search["mse"]
        edge = "; still at the grid's edge" if min(mse) == mse[-1] else ""
        return (f"σ = {self.sigma_px:.2f} px chosen on validation (grid 0–{grid[-1]:.3g} px, "
                f"extended whenever the best is at its edge{edge})")

    def denoise(self, images: torch.Tensor, ctf: torch.Tensor | None = None) -> torch.Tensor:
        """Low-pass ``(N, L, L)`` images with the chosen σ (``ctf`` is ignored)."""
        check_images(images, ctf)
        if self.sigma_px is None:
            raise RuntimeError("GaussianLowpass.denoise called before fit() chose sigma_px")
        return gaussian_lowpass(images, self.sigma_px)
