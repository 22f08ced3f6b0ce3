"""Topaz-Denoise (Bepler et al. 2020) with the pretrained 2D models shipped in ``topaz-em``.

The models were trained with Noise2Noise on micrograph halves (movie frames), so they are
applied here as Topaz applies them to a micrograph: each image is standardised by its own
mean and std, reflect-padded (the networks use zero-padded convolutions and need context at
the box edge), denoised on the CPU, cropped and mapped back to the input scale. No network
is trained; ``fit`` only chooses which shipped model to use, by its PSNR on the fitting
split (:func:`choose_topaz_model`). Nothing is downloaded: the weights are files inside the
installed package.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
import torch.nn.functional as F

from cryodiff.baselines.base import DenoisingData, check_images, check_target
from cryodiff.errors import CryodiffError
from cryodiff.metrics import psnr

INSTALL_HINT = ('pip install "torchvision==0.28.*" "setuptools<81" topaz-em '
                "(or cryodiff[peers])")


@contextlib.contextmanager
def _quiet_topaz():
    # topaz imports pkg_resources (deprecated) and prints the model it loads to stderr.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        except ImportError as error:
            raise CryodiffError(f"Topaz baseline skipped: topaz-em not installed "
                                f"({INSTALL_HINT})") from error


def pretrained_2d_models() -> tuple[str, ...]:
    """Names of every pretrained 2D denoiser the installed ``topaz-em`` ships, one name per
    weight file (topaz's own aliases, e.g. ``"unet"``, ``"unet-small"``, ``"fcnn"``,
    ``"affine"``, ``"unet-v0.2.1"`` in topaz-em 0.3); the 3D (tomogram) models are left out.

    Raises CryodiffError naming the install command when ``topaz-em`` is missing.
    """
    with _quiet_topaz():
        from topaz.denoising.models import model_name_dict
    names, files = [], set()
    for name, file in model_name_dict.items():
        if "3d" not in file and file not in files:
            names.append(name)
            files.add(file)
    return tuple(names)


def load_topaz_model(name: str = "unet") -> torch.nn.Module:
    """The pretrained Topaz 2D denoiser ``name`` (one of :func:`pretrained_2d_models`), in
    eval mode.

    Raises CryodiffError naming the install command when ``topaz-em`` is missing.
    """
    known = pretrained_2d_models()
    if name not in known:
        raise CryodiffError(f"unknown Topaz model {name!r}; expected one of {known}")
    with _quiet_topaz():
        from topaz.denoising.models import load_model
        model = load_model(name)
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


def choose_topaz_model(noisy: torch.Tensor, target: torch.Tensor,
                       names: tuple[str, ...] | None = None, padding_px: int | None = None
                       ) -> tuple[str, dict[str, float]]:
    """The pretrained model (of ``names``, default every shipped 2D model) whose output has
    the highest mean PSNR (:func:`cryodiff.metrics.psnr`, the benchmark's) against
    ``target`` on ``noisy`` ``(N, L, L)``. Returns ``(name, {name: mean PSNR in dB})``."""
    names = pretrained_2d_models() if names is None else names
    scores = {name: float(psnr(topaz_denoise(load_topaz_model(name), noisy, padding_px)
                               .double(), target.double()).mean())
              for name in names}
    return max(scores, key=scores.__getitem__), scores


class TopazDenoiser:
    """Topaz-Denoise baseline with a shipped pretrained model. Estimates ``clean_ctf`` (it
    does not know the CTF).

    ``model="auto"`` (default): ``fit`` scores every shipped 2D model on its split and keeps
    the best PSNR (``model_name``; ``validation_psnr`` holds every score). A model name
    (e.g. ``"unet"``, the L2 U-Net of topaz v0.2.2) is used as given.
    """

    name = "topaz"

    def __init__(self, model: str = "auto", padding_px: int | None = None,
                 target: str = "clean_ctf"):
        self.model_name = model
        self.padding_px = padding_px
        self.target = check_target(target)
        self.validation_psnr: dict[str, float] = {}
        self._model: torch.nn.Module | None = None

    def fit(self, data: DenoisingData) -> TopazDenoiser:
        """Choose the model on ``data`` (``"auto"``) and load it, so a missing install
        fails early."""
        check_images(data.noisy)
        if self.model_name == "auto":
            self.model_name, self.validation_psnr = choose_topaz_model(
                data.noisy, data.target(self.target), padding_px=self.padding_px)
        self._network()
        return self

    def describe(self) -> str:
        """One line for the results table: the model and how it was chosen."""
        if not self.validation_psnr:
            return f"pretrained '{self.model_name}' model (given), no training on these data"
        others = ", ".join(f"{name} {value:.2f}" for name, value in
                           sorted(self.validation_psnr.items(), key=lambda kv: -kv[1]))
        return (f"pretrained '{self.model_name}' model chosen by validation PSNR among the "
                f"{len(self.validation_psnr)} shipped 2D models ({others} dB), "
                "no training on these data")

    def _network(self) -> torch.nn.Module:
        if self.model_name == "auto":
            raise RuntimeError("TopazDenoiser(model='auto').denoise called before fit() "
                               "chose the model")
        if self._model is None:
            self._model = load_topaz_model(self.model_name)
        return self._model

    def denoise(self, images: torch.Tensor, ctf: torch.Tensor | None = None) -> torch.Tensor:
        """Denoise ``(N, L, L)`` images (``ctf`` is ignored)."""
        check_images(images, ctf)
        return topaz_denoise(self._network(), images, self.padding_px)
