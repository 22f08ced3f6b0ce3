"""BM3D (block matching and 3D collaborative filtering, Dabov et al. 2007) per image.

Uses the ``bm3d`` package (optional peer). Two noise models:

* ``"psd"``: the noise power spectrum measured on the fitting split
  (``noisy − clean_ctf``, ring-averaged, :func:`noise_power_spectrum`) is handed to BM3D as
  its noise PSD (the ``bm3d`` package's coloured-noise mode, Mäkinen, Azzari & Foi 2020).
  Cryo-EM noise is not white: structural noise goes through the CTF, the detector adds
  white noise on top.
* ``"white"``: white noise whose std is estimated per image from the pixels outside the
  particle disk (:func:`noise_sigma_outside_disk`).

Either is multiplied by ``sigma_scale`` (on the std, i.e. ``sigma_scale²`` on the PSD), which
``fit`` chooses by the mean squared error on a split with clean targets, on a geometric grid
extended while the best scale sits at its edge (:func:`geometric_search`); by default
(``"auto"``) the noise model is chosen the same way: where shot noise dominates the noise
is close to white and the per-image white estimate can do better than one average
spectrum. BM3D runs on the CPU, one image at a time.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from cryodiff.baselines.base import DenoisingData, check_images, check_target
from cryodiff.baselines.grid_search import GridSearch, geometric_search
from cryodiff.errors import CryodiffError
from cryodiff.masks import disk_mask
from cryodiff.noise import radial_power_spectrum, radial_spectrum_grid

INSTALL_HINT = "pip install bm3d (or cryodiff[peers])"
NOISE_MODELS = ("psd", "white")


def _bm3d_module():
    try:
        import bm3d
    except ImportError as error:
        raise CryodiffError(f"BM3D baseline skipped: bm3d is not installed ({INSTALL_HINT})"
                            ) from error
    return bm3d


@contextlib.contextmanager
def _numpy_trapz():
    # bm4d 4.2.5 (bm3d's engine) calls np.trapz on its coloured-noise path; NumPy 2.4
    # removed that name for np.trapezoid (same function). Lend it for the call only.
    missing = not hasattr(np, "trapz")
    if missing:
        np.trapz = np.trapezoid
    try:
        yield
    finally:
        if missing:
            del np.trapz


def noise_sigma_outside_disk(images: torch.Tensor, radius_px: float | None = None
                             ) -> torch.Tensor:
    """Per-image noise std ``(N,)`` of the pixels outside the particle disk (default radius
    L/2 - 1: the corners), where a centred particle contributes little signal."""
    outside = ~disk_mask(images.shape[-1], radius_px, images.device)
    return images[:, outside].std(dim=1)


def noise_power_spectrum(noise: torch.Tensor) -> torch.Tensor:
    """Ring-averaged noise power spectrum of noise images ``(N, L, L)`` on the centred
    ``(L, L)`` grid, in image units² per pixel: the periodogram ``|FFT|² / L²`` averaged over
    images and rings (:func:`cryodiff.noise.radial_power_spectrum`), so its mean over the grid
    is the noise variance per pixel. Float64."""
    radial = radial_power_spectrum(noise.double())
    return radial_spectrum_grid(radial, noise.shape[-1])


def bm3d_denoise(images: torch.Tensor, sigma: torch.Tensor, profile: str = "np"
                 ) -> torch.Tensor:
    """BM3D of each ``(L, L)`` image of ``(N, L, L)`` with its white-noise std ``sigma (N,)``.

    Each image is standardised (its own mean and ``sigma``) before BM3D so the filter sees
    unit noise, then mapped back; ``profile`` is bm3d's ("np" normal, "refilter", …).
    """
    bm3d = _bm3d_module()
    out = torch.empty_like(images)
    arrays = images.detach().cpu().double().numpy()
    for i, (image, std) in enumerate(zip(arrays, sigma.tolist())):
        mean = image.mean()
        scale = std if std > 0 else 1.0
        denoised = bm3d.bm3d((image - mean) / scale, sigma_psd=1.0, profile=profile)
        out[i] = torch.from_numpy(denoised * scale + mean).to(out)
    return out


def bm3d_denoise_psd(images: torch.Tensor, power: torch.Tensor, profile: str = "np"
                     ) -> torch.Tensor:
    """BM3D of each ``(L, L)`` image of ``(N, L, L)`` with the noise power spectrum ``power``.

    ``power`` is ``(L, L)`` on the centred grid in image units² per pixel (the expected
    ``|FFT|² / L²`` of the noise, as :func:`noise_power_spectrum` returns). BM3D takes the
    expected ``|FFT|²`` on the uncentred grid (white noise of std σ: ``σ² L²``), so the
    spectrum is shifted and multiplied by ``L²``; images are divided by the noise std
    (``sqrt(mean(power))``) first so the filter works at unit noise, then mapped back.
    """
    bm3d = _bm3d_module()
    size = images.shape[-1]
    std = float(power.double().mean().sqrt())
    std = std if std > 0 else 1.0
    psd = (torch.fft.ifftshift(power.double().cpu(), dim=(-2, -1)) / std**2 * size**2).numpy()
    out = torch.empty_like(images)
    arrays = images.detach().cpu().double().numpy()
    with _numpy_trapz():
        for i, image in enumerate(arrays):
            mean = image.mean()
            denoised = bm3d.bm3d((image - mean) / std, sigma_psd=psd, profile=profile)
            out[i] = torch.from_numpy(denoised * std + mean).to(out)
    return out


class BM3DDenoiser:
    """BM3D baseline estimating ``target`` (default ``"clean_ctf"``; BM3D does not undo the
    CTF).

    Noise model: ``"psd"`` (``fit`` measures the noise spectrum on all of its split,
    ``noisy − clean_ctf``), ``"white"`` (per-image std from the corners) or ``"auto"``
    (default: both are fitted and the one with the lower validation error is kept;
    ``noise_model`` says which). For each, ``fit`` chooses ``sigma_scale`` on up to
    ``n_fit_images`` images with clean targets, by mean squared error, on ``n_scales``
    log-spaced values in ``scale_range`` (default 0.25–4), extended at most
    ``max_extensions`` ratio steps while the best is at an edge (``searches`` records each
    grid, ``at_edge`` whether the chosen scale is still at one). Without ``fit`` the scale
    stays as given and only ``"white"`` can denoise (``"psd"`` has no spectrum yet).
    """

    name = "bm3d"

    def __init__(self, noise: str = "auto", sigma_scale: float = 1.0,
                 scale_range: tuple[float, float] = (0.25, 4.0), n_scales: int = 9,
                 max_extensions: int = 4, n_fit_images: int = 8,
                 disk_radius_px: float | None = None, profile: str = "np",
                 target: str = "clean_ctf"):
        if noise not in ("auto", *NOISE_MODELS):
            raise CryodiffError(f"unknown BM3D noise model {noise!r}; expected one of "
                                f"{('auto', *NOISE_MODELS)}")
        self.noise = noise
        self.noise_model: str | None = None if noise == "auto" else noise
        self.sigma_scale = sigma_scale
        self.scale_range = scale_range
        self.n_scales = n_scales
        self.max_extensions = max_extensions
        self.n_fit_images = n_fit_images
        self.disk_radius_px = disk_radius_px
        self.profile = profile
        self.target = check_target(target)
        self.power: torch.Tensor | None = None
        self.searches: dict[str, GridSearch] = {}

    @property
    def search(self) -> GridSearch | None:
        """The scale search of the noise model in use (None before ``fit``)."""
        return self.searches.get(self.noise_model)

    @property
    def fit_mse(self) -> dict[float, float]:
        """Validation MSE of every scale tried for the model in use (empty before ``fit``)."""
        return {} if self.search is None else dict(zip(self.search.values, self.search.losses))

    @property
    def at_edge(self) -> bool:
        """Whether the chosen scale is still at an edge of the (extended) grid."""
        return self.search is not None and self.search.at_edge

    def describe(self) -> str:
        """One line for the results table: the noise model and the scale chosen."""
        model = ("noise power spectrum measured on validation (noisy − clean_ctf)"
                 if self.noise_model == "psd" else "white noise, per-image std from the corners")
        if self.search is None:
            return f"{model}, std × {self.sigma_scale:.3g} (given)"
        values = self.search.values
        edge = (f"; still at the grid's edge after {self.search.n_extensions} extensions"
                if self.at_edge else "")
        text = (f"{model}, std × {self.sigma_scale:.3g} chosen on validation "
                f"(grid {values[0]:.3g}–{values[-1]:.3g}{edge})")
        if len(self.searches) > 1:
            errors = ", ".join(f"{name} {min(search.losses):.4g}"
                               for name, search in self.searches.items())
            text += f"; noise model chosen on validation (MSE {errors})"
        return text

    def fit(self, data: DenoisingData) -> BM3DDenoiser:
        """Measure the noise spectrum (``"psd"``, ``"auto"``) on ``data``, choose
        ``sigma_scale`` (and, for ``"auto"``, the noise model) on its first
        ``n_fit_images`` images."""
        check_images(data.noisy)
        models = NOISE_MODELS if self.noise == "auto" else (self.noise,)
        if "psd" in models:
            self.power = noise_power_spectrum(data.noisy - data.target("clean_ctf"))
        noisy = data.noisy[: self.n_fit_images]
        target = data.target(self.target)[: self.n_fit_images]
        for model in models:
            def mse(scale: float, model: str = model) -> float:
                return float((self._denoise(noisy, scale, model) - target)
                             .double().square().mean())

            self.searches[model] = geometric_search(mse, *self.scale_range, self.n_scales,
                                                    self.max_extensions)
        self.noise_model = min(models, key=lambda m: min(self.searches[m].losses))
        self.sigma_scale = self.search.best
        return self

    def _denoise(self, images: torch.Tensor, scale: float, model: str | None) -> torch.Tensor:
        if model == "psd":
            return bm3d_denoise_psd(images, self.power * scale**2, self.profile)
        sigma = noise_sigma_outside_disk(images, self.disk_radius_px) * scale
        return bm3d_denoise(images, sigma, self.profile)

    def denoise(self, images: torch.Tensor, ctf: torch.Tensor | None = None) -> torch.Tensor:
        """BM3D-denoise ``(N, L, L)`` images (``ctf`` is ignored)."""
        check_images(images, ctf)
        if self.noise_model is None or (self.noise_model == "psd" and self.power is None):
            raise RuntimeError(f"BM3DDenoiser(noise={self.noise!r}) needs fit() to measure "
                               "the noise first")
        return self._denoise(images, self.sigma_scale, self.noise_model)
