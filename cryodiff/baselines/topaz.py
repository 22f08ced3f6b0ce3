"""Topaz-Denoise (Bepler et al. 2020) with the pretrained 2D models shipped in ``topaz-em``.

The models were trained with Noise2Noise on micrograph halves (movie frames), so they are
applied here as Topaz applies them to a micrograph: each image is standardised by its own
mean and std, reflect-padded (the networks use zero-padded convolutions and need context at
the box edge), denoised on the CPU, cropped and mapped back to the input scale. Nothing is
fitted, and nothing is downloaded: the weights are files inside the installed package.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
import torch.nn.functional as F

from cryodiff.baselines.base import DenoisingData, check_images, check_target
from cryodiff.errors import CryodiffError

INSTALL_HINT = ('pip install "torchvision==0.28.*" "setuptools<81" topaz-em '
                "(or cryodiff[peers])")
PRETRAINED_2D = ("unet", "unet-small", "fcnn", "affine", "unet-v0.2.1")


def load_topaz_model(name: str = "unet") -> torch.nn.Module:
    """The pretrained Topaz 2D denoiser ``name`` (one of ``PRETRAINED_2D``), in eval mode.

    Raises CryodiffError naming the install command when ``topaz-em`` is missing.
    """
    if name not in PRETRAINED_2D:
        raise CryodiffError(f"unknown Topaz model {name!r}; expected one of {PRETRAINED_2D}")
    try:
        # topaz imports pkg_resources (deprecated) and prints the model it loads to stderr.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            from topaz.denoising.models import load_model
            model = load_model(name)
    except ImportError as error:
        raise CryodiffError(f"Topaz baseline skipped: topaz-em not installed ({INSTALL_HINT})"
                            ) from error
    return model.eval()


@torch.no_grad()
def topaz_denoise(model: torch.nn.Module, images: torch.Tensor, padding_px: int | None = None,
                  batch_size: int = 32) -> torch.Tensor:
    """Run a Topaz model on ``(N, L, L)`` images, each standardised by its own mean/std.

    ``padding_px`` (default L // 4) of reflect padding is added on every side and cropped
    off again. Returns ``(N, L, L)`` in the input's dtype and scale.
    """
    size = images.shape[-1]
    pad = size // 4 if padding_px is None else padding_px
    pad = min(pad, size - 1)  # reflect padding must be smaller than the image
    x = images.detach().float().cpu()
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
    x = (x - mean) / std
    out = torch.empty_like(x)
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size, None]
        padded = F.pad(chunk, (pad, pad, pad, pad), mode="reflect") if pad > 0 else chunk
        pred = model(padded)[:, 0]
        out[start:start + batch_size] = pred[:, pad:pad + size, pad:pad + size]
    return (out * std + mean).to(device=images.device, dtype=images.dtype)


class TopazDenoiser:
    """Topaz-Denoise baseline with a shipped pretrained model (default ``"unet"``, the
    L2 U-Net of topaz v0.2.2). Estimates ``clean_ctf`` (it does not know the CTF)."""

    name = "topaz"

    def __init__(self, model: str = "unet", padding_px: int | None = None,
                 target: str = "clean_ctf"):
        self.model_name = model
        self.padding_px = padding_px
        self.target = check_target(target)
        self._model: torch.nn.Module | None = None

    def fit(self, data: DenoisingData) -> TopazDenoiser:
        """Nothing to fit (pretrained); loads the model so a missing install fails early."""
        self._network()
        return self

    def _network(self) -> torch.nn.Module:
        if self._model is None:
            self._model = load_topaz_model(self.model_name)
        return self._model

    def denoise(self, images: torch.Tensor, ctf: torch.Tensor | None = None) -> torch.Tensor:
        """Denoise ``(N, L, L)`` images (``ctf`` is ignored)."""
        check_images(images, ctf)
        return topaz_denoise(self._network(), images, self.padding_px)
