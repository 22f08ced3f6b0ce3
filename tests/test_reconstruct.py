"""Direct Fourier inversion: self-consistency with the projector, CTF weighting, half maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryodiff.backprojection import backproject, finalize, half_plane, new_accumulator
from cryodiff.ctf import ctf_at_frequencies
from cryodiff.fourier import fft2_centered, fourier_resize, ifft2_centered, radius_grid
from cryodiff.fsc import fsc
from cryodiff.geometry import random_rotations
from cryodiff.projection import prepare_volume, project
from cryodiff.reconstruct import ctf_subset, half_map_split, reconstruct


def make_blobs(box: int, seed: int, n_blobs: int = 40) -> torch.Tensor:
    """A smooth test map: Gaussian blobs (σ 1.2 px) scattered inside radius box/3."""
    gen = torch.Generator().manual_seed(seed)
    centres = (torch.rand(n_blobs, 3, generator=gen, dtype=torch.float64) - 0.5) * (box / 2)
    axis = torch.arange(box, dtype=torch.float64) - box // 2
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    grid = torch.stack([x, y, z], dim=-1)
    volume = torch.zeros(box, box, box, dtype=torch.float64)
    for centre in centres:
        volume += torch.exp(-((grid - centre) ** 2).sum(-1) / (2 * 1.2 ** 2))
    return volume.float()


def _projections(volume, n, seed, shift_sd=0.0):
    gen = torch.Generator().manual_seed(seed)
    rotations = random_rotations(n, gen, dtype=volume.dtype)
    shifts = shift_sd * torch.randn(n, 2, generator=gen, dtype=volume.dtype)
    return project(prepare_volume(volume), rotations, shifts), rotations, shifts


def _toy_ctf(box: int, n: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """A CTF-like oscillation ``-sin(π d k²)`` with random defocus ``d`` per image."""
    gen = torch.Generator().manual_seed(seed)
    defocus = 60 + 60 * torch.rand(n, generator=gen, dtype=torch.float64)
    k2 = (radius_grid(box, 2, dtype=torch.float64) / box) ** 2
    return (-torch.sin(math.pi * defocus[:, None, None] * k2 - 0.07)).to(dtype)


@pytest.mark.parametrize("box", [24, 25])
def test_half_plane_holds_one_point_of_every_hermitian_pair(box):
    freqs, rfft_index, centred_index = half_plane(box)
    points = {tuple(p) for p in freqs.tolist()}
    mirrored = {(-x, -y) for x, y in points}
    assert not (points & mirrored) - {(0, 0)}
    disk = {(x, y) for x in range(-box // 2, box // 2 + 1) for y in range(-box // 2, box // 2 + 1)
            if x * x + y * y < (box // 2) ** 2}
    assert disk <= points | mirrored
    image = torch.randn(box, box, dtype=torch.float64)
    rfft = torch.fft.rfft2(torch.fft.ifftshift(image)).reshape(-1)[rfft_index]
    centred = fft2_centered(image).reshape(-1)[centred_index]
    torch.testing.assert_close(rfft, centred)


@pytest.mark.parametrize("box", [24, 25])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ctf_at_frequencies_equals_ctf_2d_on_the_half_plane(box, dtype):
    from cryodiff.ctf import ctf_2d, ctf_params

    params = ctf_params([8000.0, 21000.0, 15000.0], [7000.0, 23000.0, 15000.0],
                        [30.0, -70.0, 0.0], voltage_kV=[300.0, 200.0, 300.0],
                        cs_mm=[2.7, 0.01, 2.0], amplitude_contrast=[0.1, 0.07, 0.0],
                        bfactor_A2=[0.0, 80.0, 20.0], phase_shift_deg=[0.0, 0.0, 90.0])
    freqs, _, centred_index = half_plane(box)
    pixel_size_A = 1.3
    points = ctf_at_frequencies(params, freqs.to(dtype) / (box * pixel_size_A))
    grid = ctf_2d(params, box, pixel_size_A, dtype=torch.float64).reshape(3, -1)
    assert points.dtype == dtype
    tolerance = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(points.double(), grid[:, centred_index], atol=tolerance, rtol=0)


@pytest.mark.parametrize("box", [24, 25])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reconstruction_from_projector_images_recovers_the_map(box, dtype):
    volume = make_blobs(box, seed=1).to(dtype)
    images, rotations, shifts = _projections(volume, 1500, seed=2, shift_sd=1.5)
    result = reconstruct(images, rotations, pixel_size_A=2.0, shifts_px=shifts)
    assert result.volume.dtype == dtype and result.volume.shape == (box,) * 3
    curve = fsc(result.volume, volume, 2.0).fsc
    assert curve[1: int(0.9 * (box // 2))].min() > 0.98
    # Same intensity scale as the unit-sum projector.
    scale = float((result.volume * volume).sum() / (volume * volume).sum())
    assert scale == pytest.approx(1.0, abs=0.02)


def test_ignoring_the_shifts_degrades_the_map():
    volume = make_blobs(24, seed=1)
    images, rotations, shifts = _projections(volume, 800, seed=3, shift_sd=2.0)
    good = fsc(reconstruct(images, rotations, 2.0, shifts).volume, volume, 2.0)
    wrong = fsc(reconstruct(images, rotations, 2.0, -shifts).volume, volume, 2.0)
    assert good.resolution_05_A < 0.7 * wrong.resolution_05_A


def test_ctf_weighted_inversion_undoes_the_ctf():
    box = 32
    volume = make_blobs(box, seed=4)
    images, rotations, _ = _projections(volume, 2000, seed=5)
    ctf = _toy_ctf(box, len(images), seed=6)
    with_ctf = ifft2_centered(fft2_centered(images) * ctf)
    acc = new_accumulator(box)
    backproject(acc, with_ctf, rotations, ctf=ctf)
    corrected = finalize(acc, regularization=1e-4)
    plain = new_accumulator(box)
    backproject(plain, with_ctf, rotations)
    uncorrected = finalize(plain)
    good = fsc(corrected, volume, 1.0).fsc
    assert good[1: int(0.85 * box / 2)].min() > 0.95
    assert fsc(uncorrected, volume, 1.0).fsc[1: int(0.85 * box / 2)].min() < 0.5


def test_half_maps_are_an_even_seeded_split_and_sum_to_the_full_map():
    halves = half_map_split(11, seed=3)
    assert int(halves.sum()) in (5, 6)
    assert torch.equal(halves, half_map_split(11, seed=3))
    assert not torch.equal(half_map_split(100, seed=3), half_map_split(100, seed=4))
    volume = make_blobs(20, seed=2)
    images, rotations, _ = _projections(volume, 600, seed=7)
    split = reconstruct(images, rotations, 1.5, half_maps=True, seed=1)
    full = reconstruct(images, rotations, 1.5)
    torch.testing.assert_close(split.volume, full.volume, atol=1e-4, rtol=1e-4)
    gold = split.half_map_fsc()
    assert gold.fsc[1:8].min() > 0.95


def test_batches_and_device_argument_do_not_change_the_result():
    volume = make_blobs(16, seed=3)
    images, rotations, shifts = _projections(volume, 300, seed=8, shift_sd=1.0)
    one = reconstruct(images, rotations, 1.0, shifts, batch_size=300).volume
    many = reconstruct(images, rotations, 1.0, shifts, batch_size=7, device="cpu").volume
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-4)
    threads = reconstruct(images, rotations, 1.0, shifts, batch_size=7, workers=3).volume
    serial = reconstruct(images, rotations, 1.0, shifts, batch_size=7, workers=1).volume
    torch.testing.assert_close(threads, serial, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_5000_clean_ribosome_projections_reach_nyquist(reference_data):
    from cryodiff.io.mrc import read_map

    path = reference_data / "relion_reference" / "ribosome70S_64_fourier_cropped.mrc"
    volume, _ = read_map(path)
    assert volume.shape == (64,) * 3
    images, rotations, shifts = _projections(volume, 5000, seed=9, shift_sd=2.0)
    result = reconstruct(images, rotations, pixel_size_A=2.0, shifts_px=shifts)
    check = fsc(result.volume, volume, 2.0)
    nyquist_A_inv = 1 / (2 * 2.0)
    assert 1 / check.resolution_0143_A > 0.9 * nyquist_A_inv
    assert check.fsc[1:29].min() > 0.95  # shells up to 0.9 × Nyquist


def test_fourier_cropped_ribosome_matches_the_reference_crop(reference_data):
    from cryodiff.io.mrc import read_map

    full, _ = read_map(reference_data / "ribosome70S" / "ribosome70S_65.mrc")
    cropped, _ = read_map(reference_data / "relion_reference" / "ribosome70S_64_fourier_cropped.mrc")
    ours = fourier_resize(full, 64, 3)
    assert fsc(ours, cropped, 1.0).fsc[1:30].min() > 0.99
    assert np.isfinite(ours.numpy()).all()


def _ctf_particles(volume, n, seed, pixel_size_A, noise_sd=0.0):
    from cryodiff.ctf import apply_ctf, ctf_2d, ctf_params

    gen = torch.Generator().manual_seed(seed)
    images, rotations, shifts = _projections(volume, n, seed, shift_sd=1.0)
    defocus = 8000 + 12000 * torch.rand(n, generator=gen, dtype=torch.float64)
    ctf = ctf_params(defocus, voltage_kV=300.0, cs_mm=2.7, amplitude_contrast=0.1)
    images = apply_ctf(images, ctf_2d(ctf, volume.shape[-1], pixel_size_A))
    images = images + noise_sd * torch.randn(images.shape, generator=gen)
    return images, rotations, shifts, ctf


@pytest.mark.slow
def test_reconstruct_with_relion_ctf_recovers_the_map():
    volume = make_blobs(32, seed=11)
    images, rotations, shifts, ctf = _ctf_particles(volume, 1500, 12, pixel_size_A=3.0)
    corrected = reconstruct(images, rotations, 3.0, shifts, ctf).volume
    assert fsc(corrected, volume, 3.0).fsc[1:14].min() > 0.95
    ignored = reconstruct(images, rotations, 3.0, shifts).volume
    assert fsc(ignored, volume, 3.0).fsc[1:14].min() < 0.5


@pytest.mark.slow
def test_gold_standard_resolution_improves_with_more_noisy_particles():
    volume = make_blobs(32, seed=13)
    signal_sd = float(project(volume, torch.eye(3)[None]).std())
    images, rotations, shifts, ctf = _ctf_particles(volume, 4000, 14, pixel_size_A=3.0,
                                                    noise_sd=signal_sd / math.sqrt(0.05))
    resolution = {}
    for n in (500, 4000):
        rows = torch.arange(n)
        result = reconstruct(images[rows], rotations[rows], 3.0, shifts[rows],
                             ctf_subset(ctf, rows), half_maps=True, seed=0)
        resolution[n] = result.half_map_fsc().resolution_0143_A
    assert resolution[4000] < 0.85 * resolution[500]
