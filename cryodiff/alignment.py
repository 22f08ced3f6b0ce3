"""Orientation search by projection matching: the poses a real reconstruction must find.

With known poses a reconstruction averages noise away, so denoising can only add bias; in a
real data set the poses are unknown and are found by comparing each particle with projections
of a reference. This module does that search, so that raw and denoised particles can be
compared on how well they align (translations are taken as known).

Each particle ``Y`` (centred Fourier transform, its known shift undone) is compared with
reference projections ``P_j`` inside a band ``0 < |k| ≤ k_max`` under the per-shell model
``Y = a·T_k·C·P_j + E`` (``C`` the particle's CTF, ``T_k`` the transfer of whatever processed
the image, ``E`` Gaussian with power ``N_k`` per shell ``k``, ``a > 0`` unknown). Its
maximum-likelihood pose maximises

    score(j) = Σ_k (T_k / N_k) Re(conj(P_j) C Y) / sqrt(Σ_k (T_k² / N_k) C² |P_j|²).

For raw particles ``T = 1`` and ``N`` is their noise spectrum, close to their mean power per
shell at low SNR (the default: "whitening"). A denoiser changes both: a linear filter ``G``
gives ``T = G`` and ``N = G²·N_raw``, so its score equals the raw particles' (no information is
gained or lost), while a learnt denoiser has its own. :func:`shell_transfer_and_noise` measures
``T`` and ``N`` against clean targets where they are known (a benchmark), so that every kind of
image is searched with the weights that suit it. A global search over a uniform orientation
grid (:func:`orientation_grid`) is followed by local rounds that try the 27 rotations
``R·exp(ε)``, ``ε ∈ {-h, 0, h}³`` about the current best ``R``, halving ``h`` each round.

The band limit keeps the search from fitting noise to the reference's fine detail ("Einstein
from noise"): the resolution a reconstruction reaches beyond ``k_max`` comes from the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cryodiff.ctf import CtfParams, ctf_2d
from cryodiff.fourier import fft2_centered, phase_shift, radius_grid
from cryodiff.fsc import shell_index
from cryodiff.geometry import euler_to_matrix
from cryodiff.projection import PreparedVolume, prepare_volume, project


@dataclass(frozen=True)
class PoseEstimate:
    """Estimated poses: ``rotations`` ``(N, 3, 3)`` RELION matrices, ``scores`` ``(N,)``."""

    rotations: torch.Tensor
    scores: torch.Tensor


def orientation_grid(step_deg: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rotations ``(M, 3, 3)`` covering SO(3) about every ``step_deg`` degrees.

    Viewing directions lie on a Fibonacci sphere (about ``4π / step²`` of them, evenly spread)
    and each is combined with in-plane angles ``psi = 0, step, 2·step, …``.
    """
    if not 0 < step_deg <= 90:
        raise ValueError(f"step_deg must be in (0, 90], got {step_deg}")
    step = math.radians(step_deg)
    n_directions = max(2, round(4 * math.pi / step ** 2))
    index = torch.arange(n_directions, dtype=torch.float64) + 0.5
    tilt = torch.rad2deg(torch.acos(1 - 2 * index / n_directions))
    rot = torch.rad2deg(index * math.pi * (3 - math.sqrt(5))) % 360
    psi = torch.arange(0.0, 360.0, step_deg, dtype=torch.float64)
    eulers = torch.stack([rot[:, None].expand(-1, len(psi)), tilt[:, None].expand(-1, len(psi)),
                          psi[None].expand(n_directions, -1)], dim=-1).reshape(-1, 3)
    return euler_to_matrix(eulers).to(dtype)


def small_rotations(angle_deg: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 27 rotations ``exp(ε)``, ``ε ∈ {-a, 0, a}³`` (axis-angle, ``a = angle_deg``)."""
    a = math.radians(angle_deg)
    values = torch.tensor([-a, 0.0, a], dtype=torch.float64)
    eps = torch.cartesian_prod(values, values, values)
    skew = torch.zeros(len(eps), 3, 3, dtype=torch.float64)
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -eps[:, 2], eps[:, 1], -eps[:, 0]
    skew = skew - skew.transpose(1, 2)
    return torch.linalg.matrix_exp(skew).to(dtype)


def angular_distance_deg(rotations1: torch.Tensor, rotations2: torch.Tensor) -> torch.Tensor:
    """Geodesic angle in degrees ``(...)`` between rotation matrices ``(..., 3, 3)``."""
    relative = rotations1.double().transpose(-1, -2) @ rotations2.double()
    cosine = ((relative.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cosine))


def _band(box: int, pixel_size_A: float, max_resolution_A: float,
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of the centred-grid pixels with ``0 < |k| ≤ k_max`` and their shell."""
    radius = radius_grid(box, 2, dtype=torch.float64).reshape(-1)
    k_max = box * pixel_size_A / max_resolution_A  # pixels of the Fourier grid
    index = ((radius > 0) & (radius <= min(k_max, box // 2))).nonzero().squeeze(1)
    return index, shell_index(box, 2).reshape(-1)[index]


def _mean_per_shell(values: torch.Tensor, shells: torch.Tensor, box: int) -> torch.Tensor:
    """Mean ``(L//2 + 1,)`` of pixel values ``(P,)`` grouped by their shells ``(P,)`` (0 where
    a shell has no pixel)."""
    total = torch.zeros(box // 2 + 1, dtype=torch.float64).index_add_(0, shells, values.double())
    return total / torch.bincount(shells, minlength=box // 2 + 1).double().clamp(min=1)


def _shell_mean(values: torch.Tensor, box: int) -> torch.Tensor:
    """Mean ``(L//2 + 1,)`` of ``values`` ``(N, L, L)`` over images and shells ``round(|k|)``."""
    shells = shell_index(box, 2).reshape(-1)
    inside = shells <= box // 2
    return _mean_per_shell(values.double().mean(0).reshape(-1)[inside], shells[inside], box)


def _band_shell_power(spectra: torch.Tensor, shells: torch.Tensor, box: int) -> torch.Tensor:
    """Mean power ``(L//2 + 1,)`` per shell of band values ``(N, K)`` (0 outside the band)."""
    return _mean_per_shell(spectra.abs().pow(2).double().mean(0), shells, box)


def shell_transfer_and_noise(images: torch.Tensor, targets: torch.Tensor,
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-shell transfer ``T`` and error power ``N`` ``(L//2 + 1,)`` of ``images ≈ T·targets``.

    ``T_k`` is the least-squares gain of the images on their targets in shell ``k`` and ``N_k``
    the mean power of what remains, ``images − T_k·targets`` (both ``(n, L, L)``, aligned).
    ``N_k`` is kept at least ``10⁻⁶ T_k²`` times the targets' power, so that images equal to
    their targets (no error at all) get a finite signal-to-noise ratio of 10⁶ per shell.
    """
    box = images.shape[-1]
    y, x = fft2_centered(images.double()), fft2_centered(targets.double())
    target_power = _shell_mean(x.abs().pow(2), box)
    gain = _shell_mean((x.conj() * y).real, box)
    transfer = gain / target_power.clamp(min=1e-300)
    residual = y - transfer[shell_index(box, 2).clamp(max=box // 2)] * x
    noise = _shell_mean(residual.abs().pow(2), box)
    return transfer, torch.maximum(noise, 1e-6 * transfer ** 2 * target_power)


def _centred_spectra(images: torch.Tensor, shifts_px: torch.Tensor | None,
                     band: torch.Tensor) -> torch.Tensor:
    """Band values ``(N, K)`` of the images' centred transforms with their shifts undone."""
    spectra = fft2_centered(images.float())
    if shifts_px is not None:
        shifts = torch.as_tensor(shifts_px, dtype=torch.float32).reshape(images.shape[0], 2)
        spectra = phase_shift(spectra, -shifts)
    return spectra.reshape(images.shape[0], -1)[:, band]


def _references(prepared: PreparedVolume, rotations: torch.Tensor, band: torch.Tensor,
                chunk_size: int) -> torch.Tensor:
    """Band-limited centred transforms ``(M, K)`` of projections at ``rotations``."""
    out = []
    for start in range(0, rotations.shape[0], chunk_size):
        images = project(prepared, rotations[start:start + chunk_size])
        out.append(fft2_centered(images).reshape(images.shape[0], -1)[:, band])
    return torch.cat(out)


def _global_search(weighted_data: torch.Tensor, weighted_ctf2: torch.Tensor,
                   references: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best grid index and score per particle, the scores computed as two matrix products."""
    ref_ri = torch.cat([references.real, references.imag], dim=1)  # (M, 2K)
    ref_power = references.abs().pow(2)  # (M, K)
    best_index, best_score = [], []
    for start in range(0, weighted_data.shape[0], chunk_size):
        data = weighted_data[start:start + chunk_size]
        numerator = torch.cat([data.real, data.imag], dim=1) @ ref_ri.T
        denominator = (weighted_ctf2[start:start + chunk_size] @ ref_power.T).clamp(min=1e-30)
        score, index = (numerator / denominator.sqrt()).max(dim=1)
        best_index.append(index)
        best_score.append(score)
    return torch.cat(best_index), torch.cat(best_score)


def estimate_orientations(images: torch.Tensor, reference: torch.Tensor | PreparedVolume,
                          pixel_size_A: float, max_resolution_A: float,
                          ctf: CtfParams | None = None, shifts_px: torch.Tensor | None = None,
                          *, grid_step_deg: float = 15.0, refine_rounds: int = 4,
                          shell_transfer: torch.Tensor | None = None,
                          shell_noise: torch.Tensor | None = None,
                          chunk_size: int = 256) -> PoseEstimate:
    """Orientations of ``images`` ``(N, L, L)`` by projection matching against ``reference``.

    Args:
        images: particles (centred on ``L // 2``), carrying ``ctf`` when given.
        reference: the map ``(L, L, L)`` (or prepared) whose projections are matched.
        pixel_size_A: Å per pixel (for the CTF and the band limit).
        max_resolution_A: finest detail compared, in Å (the band limit ``k_max``).
        ctf: per-particle CTF applied to the reference projections before comparison.
        shifts_px: ``(N, 2)`` known (x, y) shifts the images carry (undone before matching).
        grid_step_deg: spacing of the global orientation grid, degrees.
        refine_rounds: local rounds after it (step halves each round: 15° → 0.94° in 4).
        shell_transfer, shell_noise: ``T`` and ``N`` per shell ``(L//2 + 1,)`` of the model in
            the module docstring (:func:`shell_transfer_and_noise`); defaults: ``T = 1`` and
            ``N`` the images' own mean power per shell.

    Runs on the CPU (a prepared ``reference`` must be on the CPU too).
    """
    images = images.detach().float().cpu()  # the search runs on the CPU
    if shifts_px is not None:
        shifts_px = torch.as_tensor(shifts_px).detach().cpu()
    n, box = images.shape[0], images.shape[-1]
    prepared = reference if isinstance(reference, PreparedVolume) \
        else prepare_volume(reference.detach().float().cpu())
    band, shells = _band(box, pixel_size_A, max_resolution_A)
    spectra = _centred_spectra(images, shifts_px, band)
    model = torch.ones(1, len(band)) if ctf is None else \
        ctf_2d(ctf, box, pixel_size_A, device=torch.device("cpu")).reshape(-1, box * box)[:, band]
    noise = _band_shell_power(spectra, shells, box) if shell_noise is None \
        else shell_noise.detach().double().cpu()
    transfer = torch.ones_like(noise) if shell_transfer is None \
        else shell_transfer.detach().double().cpu()
    noise = noise.clamp(min=float(noise.max()) * 1e-15)
    model = model * transfer[shells].float()
    weights = (1.0 / noise[shells]).float()
    weighted_data = spectra * model * weights
    weighted_ctf2 = (model ** 2 * weights).expand(n, -1)

    grid = orientation_grid(grid_step_deg)
    index, scores = _global_search(weighted_data, weighted_ctf2,
                                   _references(prepared, grid, band, chunk_size), chunk_size)
    rotations = grid[index]
    for round_number in range(refine_rounds):
        moves = small_rotations(grid_step_deg / 2 ** (round_number + 1))
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            candidates = (rotations[start:stop, None] @ moves[None]).reshape(-1, 3, 3)
            refs = _references(prepared, candidates, band, 4 * chunk_size)
            refs = refs.reshape(stop - start, len(moves), -1)
            numerator = (refs.conj() * weighted_data[start:stop, None]).real.sum(-1)
            denominator = (refs.abs().pow(2) * weighted_ctf2[start:stop, None]).sum(-1)
            score, best = (numerator / denominator.clamp(min=1e-30).sqrt()).max(dim=1)
            rows = torch.arange(stop - start)
            rotations[start:stop] = candidates.reshape(stop - start, len(moves), 3, 3)[rows, best]
            scores[start:stop] = score
    return PoseEstimate(rotations, scores)
