"""BM3D (block matching and 3D collaborative filtering, Dabov et al. 2007) per image.

Uses the ``bm3d`` package (optional peer). BM3D assumes white Gaussian noise of known std;
the std is estimated per image from the pixels outside the particle disk and multiplied by
``sigma_scale``, which ``fit`` can choose on a split with clean targets (cryo-EM noise is
neither white nor independent of the CTF-modulated signal, so the raw estimate is not
necessarily the best setting). BM3D runs on the CPU, one image at a time.
"""

from __future__ import annotations

import torch

from cryodiff.baselines.base import DenoisingData, check_images, check_target
from cryodiff.errors import CryodiffError
from cryodiff.masks import disk_mask

INSTALL_HINT = "pip install bm3d (or cryodiff[peers])"


def _bm3d_module():
    try:
        import bm3d
    except ImportError as error:
        raise CryodiffError(f"BM3D baseline skipped: bm3d is not installed ({INSTALL_HINT})"
                            ) from error
    return bm3d


def noise_sigma_outside_disk(images: torch.Tensor, radius_px: float | None = None
                             ) -> torch.Tensor:
    """Per-image noise std ``(N,)`` of the pixels outside the particle disk (default radius
    L/2 - 1: the corners), where a centred particle contributes little signal."""
    outside = ~disk_mask(images.shape[-1], radius_px, images.device)
    return images[:, outside].std(dim=1)


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


class BM3DDenoiser:
    """BM3D baseline estimating ``target`` (default ``"clean_ctf"``; BM3D does not undo the
    CTF). ``fit`` chooses ``sigma_scale`` from ``scales`` on up to ``n_fit_images`` images
    with clean targets, by mean squared error; without ``fit`` the scale stays as given."""

    name = "bm3d"

    def __init__(self, sigma_scale: float = 1.0, scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5),
                 n_fit_images: int = 8, disk_radius_px: float | None = None,
                 profile: str = "np", target: str = "clean_ctf"):
        self.sigma_scale = sigma_scale
        self.scales = scales
        self.n_fit_images = n_fit_images
        self.disk_radius_px = disk_radius_px
        self.profile = profile
        self.target = check_target(target)
        self.fit_mse: dict[float, float] = {}

    def fit(self, data: DenoisingData) -> BM3DDenoiser:
        """Choose ``sigma_scale`` on the first ``n_fit_images`` images of ``data``."""
        check_images(data.noisy)
        noisy = data.noisy[: self.n_fit_images]
        target = data.target(self.target)[: self.n_fit_images]
        sigma = noise_sigma_outside_disk(noisy, self.disk_radius_px)
        self.fit_mse = {
            scale: float((bm3d_denoise(noisy, sigma * scale, self.profile) - target)
                         .square().mean())
            for scale in self.scales}
        self.sigma_scale = min(self.fit_mse, key=self.fit_mse.__getitem__)
        return self

    def denoise(self, images: torch.Tensor, ctf: torch.Tensor | None = None) -> torch.Tensor:
        """BM3D-denoise ``(N, L, L)`` images (``ctf`` is ignored)."""
        check_images(images, ctf)
        sigma = noise_sigma_outside_disk(images, self.disk_radius_px) * self.sigma_scale
        return bm3d_denoise(images, sigma, self.profile)
