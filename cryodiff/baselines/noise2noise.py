"""Noise2Noise U-Net (Lehtinen et al. 2018), trained as Topaz-Denoise is: on pairs of
independent noisy images of the same projection, each predicting the other.

With zero-mean noise independent between the two copies, the L2-optimal prediction of one
noisy copy from the other is the clean (CTF-modulated) image, so the network estimates
``clean_ctf`` without ever seeing it.
"""

from __future__ import annotations

import torch

from cryodiff.baselines.base import DenoisingData
from cryodiff.baselines.regression import UNetRegressor
from cryodiff.baselines.wiener import expand_shells, radial_average
from cryodiff.errors import CryodiffError
from cryodiff.fourier import fft2_centered, ifft2_centered


def independent_noisy_copy(noisy: torch.Tensor, clean_ctf: torch.Tensor,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """A second noisy image of each projection: ``clean_ctf`` plus fresh Gaussian noise.

    The new noise has the radially averaged power spectrum of ``noisy - clean_ctf`` (over
    the whole ``(N, L, L)`` batch), so it matches the original noise to second order,
    colour included, but is independent of it. Use the simulator's own re-noising when the
    exact noise model (e.g. per-particle structural noise) matters.
    """
    size = noisy.shape[-1]
    residual = (noisy - clean_ctf).double()
    power = expand_shells(radial_average(fft2_centered(residual).abs().square()), size)
    white = torch.randn(noisy.shape, generator=generator, dtype=torch.float64,
                        device="cpu").to(noisy.device)
    # |FFT(white)|² has mean L² per voxel; rescale each voxel to the measured power.
    coloured = ifft2_centered(fft2_centered(white) * (power / size**2).sqrt())
    return (clean_ctf.double() + coloured).to(noisy.dtype)


class Noise2NoiseDenoiser(UNetRegressor):
    """U-Net trained on ``(noisy, noisy_pair)`` and ``(noisy_pair, noisy)``; estimates
    ``clean_ctf``. See :class:`cryodiff.baselines.regression.UNetRegressor` for options."""

    name = "noise2noise"

    def __init__(self, **options):
        super().__init__(**{"target": "clean_ctf", **options})
        if self.target != "clean_ctf":
            raise CryodiffError("Noise2Noise can only estimate the clean_ctf target")

    def training_pairs(self, data: DenoisingData) -> tuple[torch.Tensor, torch.Tensor]:
        if data.noisy_pair is None:
            raise CryodiffError("Noise2Noise needs noisy_pair: a second independent noisy "
                                "image of each projection (see independent_noisy_copy)")
        if data.noisy_pair.shape != data.noisy.shape:
            raise CryodiffError(f"noisy_pair shape {tuple(data.noisy_pair.shape)} does not "
                                f"match noisy {tuple(data.noisy.shape)}")
        return (torch.cat([data.noisy, data.noisy_pair]),
                torch.cat([data.noisy_pair, data.noisy]))
