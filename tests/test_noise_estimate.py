"""SNR and noise spectrum estimation (:mod:`cryodiff.noise_estimate`): analytic identities, and
particles made by ASPIRE (another simulator) at a known SNR, white and coloured noise, with
and without poses: the estimate must land within 20 % of the true SNR."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from aspire_particles import aspire_particles
from cryodiff.errors import CryodiffError
from cryodiff.noise import coloured_noise, power_law_spectrum, radial_spectrum_grid
from cryodiff.noise_estimate import (background_window, edge_window, estimate_noise,
                                     noise_disk_variance, ring_average, windowed_periodogram)
from cryodiff.snr import disk_variance

BOX, N_PARTICLES = 41, 160


@pytest.mark.parametrize("box", [32, 33])
def test_noise_disk_variance_matches_coloured_noise(box):
    """The formula for E var_D(n) against 2000 noise images drawn with that spectrum."""
    power = power_law_spectrum(box, 3.0, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    noise = coloured_noise(torch.randn(2000, box, box, generator=generator, dtype=torch.float64),
                           power)
    measured = disk_variance(noise).mean().item()
    assert noise_disk_variance(power) == pytest.approx(measured, rel=0.02)
    # A steep spectrum puts much of the variance into the disk mean: the correction matters.
    assert noise_disk_variance(power) < 0.9 * power.mean().item()


@pytest.mark.parametrize("box", [32, 33])
def test_windowed_periodogram_of_white_noise_is_its_variance(box):
    generator = torch.Generator().manual_seed(1)
    noise = 2.0 * torch.randn(400, box, box, generator=generator, dtype=torch.float64)
    for window in (edge_window(box), background_window(box, box / 4)):
        radial = ring_average(windowed_periodogram(noise, window) / len(noise))
        assert radial[1:].numpy() == pytest.approx(4.0, rel=0.15)
        assert radial[1:].mean().item() == pytest.approx(4.0, rel=0.03)


def test_radial_spectrum_grid_interpolates_the_rings():
    radial = torch.tensor([5.0, 4.0, 2.0, 1.0, 0.5])
    grid = radial_spectrum_grid(radial, 8)
    centre = 4
    assert grid[centre, centre + 2].item() == 2.0 and grid[centre - 3, centre].item() == 1.0
    assert grid[centre + 1, centre + 1].item() == pytest.approx(4.0 - 2.0 * (2**0.5 - 1))
    assert grid[0, 0].item() == 0.5  # beyond the last ring: its value
    assert radial_spectrum_grid(radial, 8, normalise=True).mean().item() == pytest.approx(1.0)


@pytest.fixture(scope="module", params=["white", "coloured"])
def aspire_data(request, tmp_path_factory):
    coloured = request.param == "coloured"
    return aspire_particles(tmp_path_factory.mktemp(request.param), BOX, N_PARTICLES,
                            snr=0.05, coloured=coloured)


@pytest.mark.slow  # ASPIRE's import and simulation: ≈ 10–30 s per noise kind
def test_estimate_with_poses_within_20_percent_of_aspire(aspire_data):
    estimate = estimate_noise(aspire_data.star, aspire_data.volume,
                              map_pixel_size_A=aspire_data.pixel_size_A)
    assert estimate.method == "poses" and estimate.n_particles == N_PARTICLES
    assert estimate.snr == pytest.approx(aspire_data.true_snr, rel=0.2)
    truth = aspire_data.true_spectrum(BOX)
    # The spectrum's shape: within 25 % ring by ring past the lowest rings, so a coloured
    # spectrum (falling by ≈ 4× here) cannot pass as white or the reverse.
    ratio = estimate.noise_spectrum[2:] / truth[2:]
    assert ratio == pytest.approx(1.0, abs=0.25)
    assert estimate.frequency_per_A[-1] == pytest.approx((BOX // 2) / (BOX * 3.0))


@pytest.mark.slow
def test_estimate_from_background_within_20_percent_of_aspire(aspire_data):
    diameter_A = 0.55 * BOX * aspire_data.pixel_size_A
    estimate = estimate_noise(aspire_data.particles, particle_diameter_A=diameter_A)
    assert estimate.method == "background" and estimate.particle_diameter_A == diameter_A
    assert estimate.snr == pytest.approx(aspire_data.true_snr, rel=0.2)
    truth = aspire_data.true_spectrum(BOX)
    # The background window blurs the spectrum over a few rings: compare in bands.
    bands = [slice(2, 7), slice(7, 13), slice(13, BOX // 2 + 1)]
    for band in bands:
        assert estimate.noise_spectrum[band].mean() == pytest.approx(truth[band].mean(), rel=0.25)


@pytest.mark.slow
def test_poses_need_a_map_and_background_needs_a_diameter(aspire_data):
    with pytest.raises(CryodiffError, match="--particle-diameter"):
        estimate_noise(aspire_data.particles)
    with pytest.raises(CryodiffError, match="needs a map"):
        estimate_noise(aspire_data.particles, method="poses")
    without_poses = dataclasses.replace(aspire_data.particles, eulers_deg=None)
    with pytest.raises(CryodiffError, match="no poses"):
        estimate_noise(without_poses, aspire_data.volume, map_pixel_size_A=3.0, method="poses")
    # auto without poses falls back to the background even with a map
    estimate = estimate_noise(without_poses, aspire_data.volume, particle_diameter_A=60.0,
                              map_pixel_size_A=3.0, max_particles=20)
    assert estimate.method == "background" and estimate.n_particles == 20
    with pytest.raises(CryodiffError, match="too little background"):
        estimate_noise(without_poses, particle_diameter_A=BOX * 3.0 * 1.5)


def test_real_particles_from_the_background(reference_data):
    """The bundled EMPIAR-10076 particles (no poses): a low SNR, unit-variance noise (RELION
    normalises the background to std 1), and a spectrum that is flat at high frequency."""
    estimate = estimate_noise(reference_data / "real_particles/empiar_10076_7.star",
                              particle_diameter_A=250.0)
    assert estimate.method == "background" and estimate.n_particles == 7
    assert 0.001 < estimate.snr < 0.2
    assert estimate.pixel_variance == pytest.approx(1.0, rel=0.1)
    high = estimate.noise_spectrum[len(estimate.noise_spectrum) // 2:]
    assert high.std() / high.mean() < 0.1
    assert np.all(np.diff(estimate.frequency_per_A) > 0)
