"""Scoring denoised particles: 2D metrics against the clean target, 3D reconstruction + FSC.

2D: PSNR and SSIM (:mod:`cryodiff.metrics`, per image, averaged over the test images) and
the resolution where the mean FRC curve between denoised and clean images drops below
0.143. 3D: the denoised images (which still carry the CTF, the target being ``clean_ctf``)
are reconstructed with their known poses, shifts and CTFs, and the FSC against the true map
(both under a soft spherical mask of radius ``0.45·L``) gives the 0.5 resolution (the
criterion for a map against the truth) and the 0.143 one beside it. The same particles are
also split at random into two halves reconstructed on their own, and the gold-standard
half-map FSC (RELION's: soft spherical mask of radius ``0.45·L``, corrected for the mask by
phase randomisation) is read at 0.143 — the figure a cryo-EM user would report. A denoiser's
bias is common to both halves, so the half maps can agree on detail the true map does not
have; the difference between the two readings measures that. A method whose statistics come
from the particles it denoises (CWF) is run on each half alone for the half maps.
With a pose search, the same images are also reconstructed with the orientations that
projection matching against the true map finds for them (:mod:`cryodiff.alignment`), which is
where a real reconstruction can gain from denoising.
"""

from __future__ import annotations

import math

import torch

from cryodiff.alignment import (angular_distance_deg, estimate_orientations,
                                shell_transfer_and_noise)
from cryodiff.benchmark.conditions import Split
from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.fsc import FscResult, MaskedFsc, frc_result, fsc, mask_corrected_fsc
from cryodiff.masks import soft_round_mask
from cryodiff.metrics import psnr, ssim
from cryodiff.reconstruct import Reconstruction, ctf_subset, half_map_split, reconstruct

MASK_FRACTION = 0.45
MASK_EDGE_PX = 3.0


def metrics_2d(images: torch.Tensor, target: torch.Tensor, pixel_size_A: float) -> dict:
    """``psnr`` (dB), ``ssim`` (means over images ``(n, L, L)``) and ``frc_0143`` (Å)."""
    images, target = images.double(), target.double()
    return {"psnr": float(psnr(images, target).mean()),
            "ssim": float(ssim(images, target).mean()),
            "frc_0143": frc_result(images, target, pixel_size_A).resolution_0143_A}


def paired_psnr_difference(images: torch.Tensor, other: torch.Tensor, target: torch.Tensor,
                           ) -> tuple[float, float | None]:
    """Mean and standard error (dB) of ``PSNR(images) − PSNR(other)`` per image, same targets.

    Pairing image by image removes the spread between particles (some are easier than
    others) that dominates an unpaired comparison of two mean PSNRs. The standard error is
    ``None`` for fewer than two images.
    """
    target = target.double()
    return paired_difference(psnr(images.double(), target), psnr(other.double(), target))


def paired_difference(per_image: torch.Tensor, other: torch.Tensor) -> tuple[float, float | None]:
    """Mean and standard error (dB) of ``per_image − other``, two ``(n,)`` per-image PSNRs of
    the same images; the standard error is None for fewer than two images."""
    difference = per_image.double() - other.double()
    n = difference.numel()
    sem = float(difference.std() / math.sqrt(n)) if n > 1 else None
    return float(difference.mean()), sem


def reconstruct_split(images: torch.Tensor, split: Split, pixel_size_A: float,
                      use_ctf: bool = True, rotations: torch.Tensor | None = None) -> torch.Tensor:
    """Map ``(L, L, L)`` from the first ``len(images)`` particles of ``split``, at their known
    poses or at ``rotations`` ``(n, 3, 3)`` (known shifts and CTFs either way)."""
    n = images.shape[0]
    ctf = None
    if use_ctf and split.ctf is not None:
        ctf = ctf_subset(split.ctf, torch.arange(n))
    return reconstruct(images.float(), split.rotations[:n] if rotations is None else rotations,
                       pixel_size_A, split.shifts_px[:n], ctf).volume


def reconstruct_halves(images: torch.Tensor, split: Split, pixel_size_A: float, seed: int,
                       use_ctf: bool = True) -> Reconstruction:
    """Full map and two half maps (random halves :func:`cryodiff.reconstruct.half_map_split`
    of ``seed``) from the first ``len(images)`` particles of ``split`` at their known poses."""
    n = images.shape[0]
    ctf = None
    if use_ctf and split.ctf is not None:
        ctf = ctf_subset(split.ctf, torch.arange(n))
    return reconstruct(images.float(), split.rotations[:n], pixel_size_A, split.shifts_px[:n],
                       ctf, half_maps=True, seed=seed)


def halfmap_fsc(result: Reconstruction, seed: int = 0) -> MaskedFsc:
    """Gold-standard FSC of the half maps under the benchmark's soft spherical mask
    (radius ``0.45·L``), corrected for the mask (:func:`cryodiff.fsc.mask_corrected_fsc`)."""
    size = result.half1.shape[-1]
    mask = soft_round_mask(size, 3, MASK_FRACTION * size, MASK_EDGE_PX,
                           dtype=result.half1.dtype)
    return mask_corrected_fsc(result.half1, result.half2, mask, result.pixel_size_A, seed=seed)


def halves_denoised_apart(denoise, noisy: torch.Tensor, ctf: torch.Tensor | None,
                          seed: int) -> torch.Tensor:
    """``noisy`` ``(n, L, L)`` denoised one half at a time: ``denoise(images, ctf)`` sees only
    the particles of one half (:func:`cryodiff.reconstruct.half_map_split` of ``seed``), so a
    method that learns from the images it denoises keeps the two halves independent."""
    halves = half_map_split(noisy.shape[0], seed)
    out = torch.empty_like(noisy)
    for half in (0, 1):
        index = torch.nonzero(halves == half).flatten()
        out[index] = denoise(noisy[index], None if ctf is None else ctf[index]).to(out.dtype)
    return out


def pose_band_A(config: BenchmarkConfig, pixel_size_A: float) -> float:
    """Finest detail (Å) the pose search compares: the config's, or half the Nyquist frequency."""
    return config.pose_band_A if config.pose_band_A is not None else 4.0 * pixel_size_A


def reconstruct_with_pose_search(images: torch.Tensor, split: Split, truth: torch.Tensor,
                                 pixel_size_A: float, config: BenchmarkConfig,
                                 ) -> tuple[torch.Tensor, float]:
    """Map from ``images`` at the orientations found by projection matching against ``truth``,
    and the median angular error (degrees) of those orientations.

    Each method is searched with its own per-shell transfer and error power, measured against
    the clean targets (the search is given the true map as reference too): the result says
    how much orientation information the images hold, not how well a weighting guesses it.
    """
    n = images.shape[0]
    transfer, noise = shell_transfer_and_noise(images, split.clean_ctf[:n])
    ctf = ctf_subset(split.ctf, torch.arange(n)) if split.ctf is not None else None
    found = estimate_orientations(images, truth, pixel_size_A, pose_band_A(config, pixel_size_A),
                                  ctf, split.shifts_px[:n], grid_step_deg=config.pose_grid_deg,
                                  refine_rounds=config.pose_refine_rounds,
                                  shell_transfer=transfer, shell_noise=noise)
    error = angular_distance_deg(found.rotations, split.rotations[:n]).median()
    return reconstruct_split(images, split, pixel_size_A, rotations=found.rotations), float(error)


def fsc_to_truth(volume: torch.Tensor, truth: torch.Tensor, pixel_size_A: float) -> FscResult:
    """FSC of a reconstruction against the true map, under the benchmark's soft mask."""
    return fsc(volume, truth.to(volume), pixel_size_A,
               mask_radius_px=MASK_FRACTION * truth.shape[-1])


def finite_or_none(value: float | None) -> float | None:
    """JSON has no inf/NaN: report them as null."""
    return None if value is None or not math.isfinite(value) else float(value)
