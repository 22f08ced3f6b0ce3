"""Scoring denoised particles: 2D metrics against the clean target, 3D reconstruction + FSC.

2D: PSNR and SSIM (:mod:`cryodiff.metrics`, per image, averaged over the test images) and
the resolution where the mean FRC curve between denoised and clean images drops below
0.143. 3D: the denoised images (which still carry the CTF, the target being ``clean_ctf``)
are reconstructed with their known poses, shifts and CTFs, and the FSC against the true map
(both under a soft spherical mask of radius ``0.45·L``) gives the 0.143 and 0.5 resolutions.
"""

from __future__ import annotations

import math

import torch

from cryodiff.benchmark.conditions import Split
from cryodiff.fsc import FscResult, frc_result, fsc
from cryodiff.metrics import psnr, ssim
from cryodiff.reconstruct import ctf_subset, reconstruct

MASK_FRACTION = 0.45


def metrics_2d(images: torch.Tensor, target: torch.Tensor, pixel_size_A: float) -> dict:
    """``psnr`` (dB), ``ssim`` (means over images ``(n, L, L)``) and ``frc_0143`` (Å)."""
    images, target = images.double(), target.double()
    return {"psnr": float(psnr(images, target).mean()),
            "ssim": float(ssim(images, target).mean()),
            "frc_0143": frc_result(images, target, pixel_size_A).resolution_0143_A}


def reconstruct_split(images: torch.Tensor, split: Split, pixel_size_A: float,
                      use_ctf: bool = True) -> torch.Tensor:
    """Map ``(L, L, L)`` from the first ``len(images)`` particles of ``split`` (known poses)."""
    n = images.shape[0]
    ctf = None
    if use_ctf and split.ctf is not None:
        ctf = ctf_subset(split.ctf, torch.arange(n))
    return reconstruct(images.float(), split.rotations[:n], pixel_size_A,
                       split.shifts_px[:n], ctf).volume


def fsc_to_truth(volume: torch.Tensor, truth: torch.Tensor, pixel_size_A: float) -> FscResult:
    """FSC of a reconstruction against the true map, under the benchmark's soft mask."""
    return fsc(volume, truth.to(volume), pixel_size_A,
               mask_radius_px=MASK_FRACTION * truth.shape[-1])


def finite_or_none(value: float | None) -> float | None:
    """JSON has no inf/NaN: report them as null."""
    return None if value is None or not math.isfinite(value) else float(value)
