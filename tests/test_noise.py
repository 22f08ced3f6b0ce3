"""Noise models: spectra of coloured noise, belt blobs in the projector's frame, shot noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryodiff.geometry import random_rotations
from cryodiff.noise import (BeltGeometry, coloured_noise, draw_belt_blobs,
                            exponential_spectrum, power_law_spectrum, project_blobs,
                            radial_power_spectrum, shot_noise)
from cryodiff.projection import project


def _white(n: int, box: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(n, box, box, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("exponent", [1.0, 2.0])
def test_power_law_noise_has_the_requested_slope(exponent):
    box = 64
    noise = coloured_noise(_white(64, box), power_law_spectrum(box, exponent))
    spectrum = radial_power_spectrum(noise)
    radii = np.arange(4, box // 2)
    slope = np.polyfit(np.log(radii), np.log(spectrum[radii].numpy()), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.1)
    assert noise.var().item() == pytest.approx(1.0, rel=0.05)


def test_exponential_noise_has_the_requested_decay():
    box, decay = 64, 0.08
    noise = coloured_noise(_white(64, box), exponential_spectrum(box, decay))
    spectrum = radial_power_spectrum(noise)
    radii = np.arange(2, box // 2)
    slope = np.polyfit(radii / box, np.log(spectrum[radii].numpy()), 1)[0]
    assert slope == pytest.approx(-1 / decay, rel=0.1)


def test_shot_noise_is_white_with_the_given_std():
    noise = shot_noise((16, 64, 64), 2.5, torch.Generator().manual_seed(3))
    assert noise.std().item() == pytest.approx(2.5, rel=0.02)
    spectrum = radial_power_spectrum(noise)
    assert (spectrum[1:] / spectrum[1:].mean() - 1).abs().max() < 0.35


def test_belt_blobs_fill_the_annulus_and_differ_per_particle():
    geometry = BeltGeometry(20.0, 40.0, 6.0)
    centres, weights = draw_belt_blobs(4, geometry, 500, torch.Generator().manual_seed(0))
    ring = centres[..., :2].norm(dim=-1)
    assert ring.min() >= 20.0 and ring.max() <= 40.0 and centres[..., 2].abs().max() <= 6.0
    assert (weights > 0).all() and weights.mean().item() == pytest.approx(1.0, rel=0.1)
    assert not torch.allclose(centres[0], centres[1])


@pytest.mark.parametrize("box", [32, 33])
def test_projected_blobs_conserve_mass_and_match_the_projector(box):
    """A blob projects where the Fourier-slice projector puts the same blob drawn in 3D."""
    pixel_size, sigma = 2.0, 3.0
    generator = torch.Generator().manual_seed(1)
    centres = torch.tensor([[[8.0, -6.0, 10.0]]], dtype=torch.float64)
    weights = torch.ones(1, 1, dtype=torch.float64)
    rotation = random_rotations(1, generator, torch.float64)
    shifts = torch.tensor([[1.5, -0.5]], dtype=torch.float64)
    image = project_blobs(centres, weights, rotation, box, pixel_size, sigma, shifts_px=shifts)
    assert image.sum().item() == pytest.approx(1.0, rel=1e-6)

    axis = (torch.arange(box, dtype=torch.float64) - box // 2) * pixel_size
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    c = centres[0, 0]
    sigma_total = math.hypot(sigma, 0.5 * pixel_size)
    blob = torch.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * sigma_total**2))
    reference = project(blob, rotation, shifts)
    correlation = torch.corrcoef(torch.stack([image.flatten(), reference.flatten()]))[0, 1]
    assert correlation > 0.99

    expected = (rotation[0] @ c)[:2] / pixel_size + shifts[0]  # image (x, y) in pixels
    offsets = torch.arange(box, dtype=torch.float64) - box // 2
    centroid = torch.stack([(image[0].sum(0) * offsets).sum(), (image[0].sum(1) * offsets).sum()])
    torch.testing.assert_close(centroid, expected, atol=1e-3, rtol=0)
