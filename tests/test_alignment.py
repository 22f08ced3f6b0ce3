"""Projection matching: the grid covers SO(3), clean particles find their poses, noise does not."""

from __future__ import annotations

import math

import pytest
import torch

from cryodiff.alignment import (angular_distance_deg, estimate_orientations, orientation_grid,
                                shell_transfer_and_noise, small_rotations)
from cryodiff.baselines.lowpass import gaussian_lowpass
from cryodiff.ctf import apply_ctf, ctf_2d, ctf_params
from cryodiff.fourier import fft2_centered
from cryodiff.fsc import shell_index
from cryodiff.geometry import euler_to_matrix, random_rotations
from cryodiff.phantom import make_phantom, phantom_pixel_size_A
from cryodiff.projection import prepare_volume, project

BOX = 32


@pytest.fixture(scope="module")
def particles():
    """Phantom projections at random poses, shifted and CTF-modulated (no noise)."""
    volume = make_phantom(BOX)
    pixel = phantom_pixel_size_A(BOX)
    n = 120
    rotations = random_rotations(n, torch.Generator().manual_seed(3))
    shifts = torch.randn(n, 2, generator=torch.Generator().manual_seed(4)) * 1.5
    ctf = ctf_params(torch.linspace(10_000.0, 25_000.0, n))
    images = apply_ctf(project(volume, rotations, shifts), ctf_2d(ctf, BOX, pixel))
    return volume, pixel, rotations, shifts, ctf, images


def test_angular_distance_of_known_rotations():
    identity = torch.eye(3)
    turned = euler_to_matrix(torch.tensor([30.0, 0.0, 0.0]))
    assert float(angular_distance_deg(identity, identity)) == pytest.approx(0.0, abs=1e-5)
    assert float(angular_distance_deg(identity, turned)) == pytest.approx(30.0, abs=1e-4)
    tilted = euler_to_matrix(torch.tensor([0.0, 90.0, 0.0]))
    assert float(angular_distance_deg(turned, tilted)) > 30.0


def test_orientation_grid_covers_rotation_space():
    grid = orientation_grid(15.0)
    assert torch.allclose(grid @ grid.transpose(1, 2), torch.eye(3).expand_as(grid), atol=1e-5)
    probes = random_rotations(300, torch.Generator().manual_seed(0))
    nearest = angular_distance_deg(probes[:, None], grid[None]).min(dim=1).values
    assert float(nearest.max()) < 15.0  # every rotation lies within one grid step
    finer = angular_distance_deg(probes[:, None], orientation_grid(10.0)[None]).min(dim=1).values
    assert float(finer.median()) < float(nearest.median())


def test_small_rotations_are_the_27_neighbours_of_the_identity():
    moves = small_rotations(2.0)
    angles = angular_distance_deg(torch.eye(3).expand_as(moves), moves)
    assert moves.shape == (27, 3, 3)
    assert int((angles < 1e-3).sum()) == 1
    assert float(angles.max()) == pytest.approx(2.0 * 3 ** 0.5, rel=1e-3)


def test_clean_particles_find_their_poses(particles):
    volume, pixel, rotations, shifts, ctf, images = particles
    found = estimate_orientations(images, prepare_volume(volume), pixel, 4 * pixel, ctf, shifts)
    error = angular_distance_deg(found.rotations, rotations)
    assert float(error.median()) < 1.5  # the last local step is 15° / 16
    assert float(error.quantile(0.9)) < 3.0
    # without refinement the answer is the nearest grid point at best
    coarse = estimate_orientations(images, volume, pixel, 4 * pixel, ctf, shifts,
                                   refine_rounds=0)
    assert float(angular_distance_deg(coarse.rotations, rotations).median()) > 2.0


def test_ignoring_the_known_shifts_costs_accuracy(particles):
    volume, pixel, rotations, shifts, ctf, images = particles
    kwargs = dict(refine_rounds=2)
    right = estimate_orientations(images, volume, pixel, 4 * pixel, ctf, shifts, **kwargs)
    no_shift = estimate_orientations(images, volume, pixel, 4 * pixel, ctf, None, **kwargs)
    median = lambda found: float(angular_distance_deg(found.rotations, rotations).median())
    assert median(no_shift) > median(right) + 1.0


def test_pure_noise_finds_no_poses(particles):
    volume, pixel, rotations, shifts, ctf, images = particles
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(5))
    found = estimate_orientations(noise, volume, pixel, 4 * pixel, ctf, shifts, refine_rounds=1)
    # random orientations are on average ≈ 126° from the truth
    assert float(angular_distance_deg(found.rotations, rotations).median()) > 60.0


def test_shell_transfer_of_a_linear_filter_is_the_filter(particles):
    *_, images = particles
    sigma = 1.5
    transfer, _ = shell_transfer_and_noise(gaussian_lowpass(images, sigma), images)
    # the least-squares gain of a linear filter G is the power-weighted mean of G per shell
    k = torch.fft.fftshift(torch.fft.fftfreq(BOX, dtype=torch.float64))
    gain = torch.exp(-2 * math.pi ** 2 * sigma ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    power = fft2_centered(images.double()).abs().pow(2).mean(0)
    shells = shell_index(BOX, 2)
    expected = torch.stack([(gain * power)[shells == s].sum() / power[shells == s].sum()
                            for s in range(BOX // 2 + 1)])
    torch.testing.assert_close(transfer, expected, rtol=1e-4, atol=1e-6)  # float32 filtering
    assert float((transfer[1:8] - gain[BOX // 2, BOX // 2 + 1:BOX // 2 + 8]).abs().max()) < 0.05
    same, floor = shell_transfer_and_noise(images, images)  # no error: SNR capped at 10⁶
    torch.testing.assert_close(same, torch.ones_like(same))
    target_power = torch.stack([power[shells == s].mean() for s in range(BOX // 2 + 1)])
    torch.testing.assert_close(floor, 1e-6 * target_power, rtol=1e-3, atol=0)


def test_a_linear_filter_neither_helps_nor_hurts_the_search(particles):
    volume, pixel, rotations, shifts, ctf, images = particles
    noisy = images + 4 * images.std() * torch.randn(
        images.shape, generator=torch.Generator().manual_seed(6))
    filtered = gaussian_lowpass(noisy, 2.0)
    errors = {}
    for name, x in (("raw", noisy), ("filtered", filtered)):
        transfer, noise = shell_transfer_and_noise(x, images)
        found = estimate_orientations(x, volume, pixel, 4 * pixel, ctf, shifts,
                                      shell_transfer=transfer, shell_noise=noise)
        errors[name] = float(angular_distance_deg(found.rotations, rotations).median())
    assert 3.0 < errors["raw"] < 40.0  # noisy enough to matter, not hopeless
    assert abs(errors["filtered"] - errors["raw"]) < 0.25 * errors["raw"]
    # searched as if unfiltered, the same images lose their poses
    naive = estimate_orientations(filtered, volume, pixel, 4 * pixel, ctf, shifts)
    assert float(angular_distance_deg(naive.rotations, rotations).median()) > 2 * errors["raw"]


def test_default_weights_are_the_images_own_shell_power(particles):
    volume, pixel, _, shifts, ctf, images = particles
    noisy = images + 0.3 * images.std() * torch.randn(images.shape,
                                                      generator=torch.Generator().manual_seed(8))
    power = fft2_centered(noisy.double()).abs().pow(2).mean(0)
    shells = shell_index(BOX, 2)
    inside = shells <= BOX // 2
    shell_power = torch.zeros(BOX // 2 + 1, dtype=torch.float64).index_add_(
        0, shells[inside], power[inside]) / torch.bincount(shells[inside]).double()
    kwargs = dict(grid_step_deg=30.0, refine_rounds=1)
    default = estimate_orientations(noisy, volume, pixel, 4 * pixel, ctf, shifts, **kwargs)
    given = estimate_orientations(noisy, volume, pixel, 4 * pixel, ctf, shifts,
                                  shell_noise=shell_power, **kwargs)
    # Same poses (float32 rotations: arccos resolves ≈ 0.03°); scores within the few per
    # cent by which the band's edge shell, averaged over the band's pixels only, differs.
    same = angular_distance_deg(default.rotations, given.rotations) < 0.1
    assert float(same.double().mean()) >= 0.95
    assert torch.allclose(default.scores[same], given.scores[same], rtol=0.05)
    flat = estimate_orientations(noisy, volume, pixel, 4 * pixel, ctf, shifts,
                                 shell_noise=torch.ones(BOX // 2 + 1), **kwargs)
    assert not torch.allclose(default.scores, flat.scores, rtol=0.5)
