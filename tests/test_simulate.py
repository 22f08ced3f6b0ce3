"""Image formation: SNR calibration, reproducibility, the dataset on disk, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from cryodiff.errors import CryodiffError
from cryodiff.geometry import euler_to_matrix
from cryodiff.io.mrc import read_stack, write_map
from cryodiff.io.star import read_particles
from cryodiff.projection import prepare_volume, project, relion_shifts_px
from cryodiff.simulate import (SimulationConfig, calibrate_noise, load_map_or_phantom,
                               measure_snr, simulate_batch, simulate_dataset)

BOX = 32


@pytest.fixture(scope="module")
def phantom():
    return load_map_or_phantom("phantom", BOX)


@pytest.fixture(scope="module")
def prepared(phantom):
    return prepare_volume(phantom[0])


def _config(phantom, **changes) -> SimulationConfig:
    return SimulationConfig(box=BOX, pixel_size_A=phantom[1], **changes)


@pytest.mark.parametrize("snr", [0.1, 0.05, 0.01])
@pytest.mark.parametrize("use_ctf", [True, False])
def test_snr_hits_the_target_on_fresh_particles(phantom, prepared, snr, use_ctf):
    """Levels calibrated on a pilot batch give the target SNRs on other particles."""
    config = _config(phantom, snr=snr, use_ctf=use_ctf, structural_snr=0.5)
    levels = calibrate_noise(prepared, config, 128, torch.Generator().manual_seed(1))
    batch = simulate_batch(prepared, config, 128, torch.Generator().manual_seed(2), levels)
    measured = measure_snr(batch)
    assert measured["snr"] == pytest.approx(snr, rel=0.1)
    assert measured["structural_snr"] == pytest.approx(0.5, rel=0.1)


def test_snr_with_the_detergent_belt(phantom, prepared):
    config = _config(phantom, snr=0.05, belt=True)
    batch = simulate_batch(prepared, config, 128, torch.Generator().manual_seed(0))
    measured = measure_snr(batch)
    assert measured["snr"] == pytest.approx(0.05, rel=0.1)
    assert measured["structural_snr"] == pytest.approx(config.structural_snr, rel=0.1)


def test_without_ctf_or_structural_noise(phantom, prepared):
    config = _config(phantom, use_ctf=False, structural_snr=None)
    batch = simulate_batch(prepared, config, 8, torch.Generator().manual_seed(0))
    assert batch.ctf is None and torch.equal(batch.clean_ctf, batch.clean)
    assert batch.structural.abs().max() == 0
    shot = batch.particles - batch.clean
    assert abs(torch.corrcoef(torch.stack([shot[0, 1:].flatten(), shot[0, :-1].flatten()]))[0, 1]) < 0.1


def test_batch_is_seeded(phantom, prepared):
    config = _config(phantom, belt=True)
    a, b, c = (simulate_batch(prepared, config, 4, torch.Generator().manual_seed(s)) for s in (5, 5, 6))
    assert torch.equal(a.particles, b.particles) and torch.equal(a.eulers_deg, b.eulers_deg)
    assert not torch.allclose(a.particles, c.particles)


def test_simulate_at_poses_gives_independent_noise_on_the_same_projections(phantom, prepared):
    from cryodiff.simulate import draw_poses, simulate_at_poses

    config = _config(phantom, belt=True)
    generator = torch.Generator().manual_seed(3)
    levels = calibrate_noise(prepared, config, 16, generator)
    poses = draw_poses(config, 64, generator)
    a, b = (simulate_at_poses(prepared, config, poses, levels, generator) for _ in range(2))
    torch.testing.assert_close(a.clean_ctf, b.clean_ctf)
    noise_a, noise_b = (a.particles - a.clean_ctf).flatten(), (b.particles - b.clean_ctf).flatten()
    assert abs(float(torch.corrcoef(torch.stack([noise_a, noise_b]))[0, 1])) < 0.05
    assert a.levels == b.levels == levels


def test_poses_defocus_and_shifts_follow_the_config(phantom, prepared):
    config = _config(phantom, defocus_range_um=(1.2, 1.8), max_shift_px=1.5)
    batch = simulate_batch(prepared, config, 64, torch.Generator().manual_seed(0))
    mean_defocus = (batch.ctf.defocus_u_A + batch.ctf.defocus_v_A) / 2
    assert mean_defocus.min() >= 1.2e4 and mean_defocus.max() <= 1.8e4
    assert (batch.ctf.defocus_u_A >= batch.ctf.defocus_v_A).all()
    assert batch.shifts_A.abs().max() <= 1.5 * phantom[1]
    assert batch.shifts_A.abs().max() > 0.5 * phantom[1]


@pytest.mark.parametrize("bad", [dict(snr=0.0), dict(snr=float("nan")), dict(snr=0.5, structural_snr=0.4),
                                 dict(defocus_range_um=(2.0, 1.0)), dict(defocus_range_um=(0.0, 1.0)),
                                 dict(chunk_size=0), dict(n_particles=0)])
def test_bad_config(phantom, bad):
    with pytest.raises(CryodiffError):
        _config(phantom, **bad).validate()


def test_box_that_does_not_match(phantom, prepared, tmp_path):
    config = dataclasses.replace(_config(phantom), box=BOX + 1)
    with pytest.raises(CryodiffError, match="does not match"):
        simulate_batch(prepared, config, 2, torch.Generator())
    with pytest.raises(CryodiffError, match="does not match"):
        simulate_dataset(phantom[0], phantom[1], config, tmp_path)


def test_dataset_files_reproducible_and_chunk_independent(phantom, tmp_path):
    volume, pixel_size = phantom
    config = SimulationConfig(box=BOX, n_particles=40, snr=0.05, pilot_size=64, chunk_size=40)
    summary = simulate_dataset(volume, pixel_size, config, tmp_path / "a", progress=False)
    simulate_dataset(volume, pixel_size, config, tmp_path / "b", progress=False)
    simulate_dataset(volume, pixel_size, dataclasses.replace(config, chunk_size=7),
                     tmp_path / "c", progress=False)
    for name in ("particles", "clean", "clean_ctf"):
        a, b, c = (read_stack(tmp_path / d / f"{name}.mrcs") for d in "abc")
        assert a.shape == (40, BOX, BOX)
        assert torch.equal(a, b)
        # Other chunk sizes change only float rounding (batched FFT paths), not the draws.
        torch.testing.assert_close(a, c, atol=1e-5 * a.abs().max().item(), rtol=0)
    assert (tmp_path / "a" / "particles.star").read_bytes() == (tmp_path / "b" / "particles.star").read_bytes()
    stored = json.loads((tmp_path / "a" / "simulation.json").read_text())
    assert stored == summary
    assert stored["measured_snr"] == pytest.approx(0.05, rel=0.15)
    assert stored["config"]["pixel_size_A"] == pixel_size and stored["map_source"] == "phantom"


def test_star_file_reproduces_the_clean_images(phantom, tmp_path):
    """Poses, origins, pixel size and image names in the STAR are those the images were made with."""
    volume, pixel_size = phantom
    config = SimulationConfig(box=BOX, n_particles=12, pilot_size=16, use_ctf=True)
    simulate_dataset(volume, pixel_size, config, tmp_path, progress=False)
    particles = read_particles(tmp_path / "particles.star")
    assert len(particles) == 12 and particles.box == BOX
    assert np.allclose(particles.pixel_size_A, pixel_size)
    assert [p.name for p in particles.image_paths] == ["particles.mrcs"] * 12
    assert np.array_equal(particles.image_indices, np.arange(12))
    assert particles.ctf is not None
    rotations = euler_to_matrix(torch.as_tensor(particles.eulers_deg)).float()
    shifts = relion_shifts_px(torch.as_tensor(particles.shifts_A), pixel_size, BOX)
    expected = project(volume, rotations, shifts)
    clean = read_stack(tmp_path / "clean.mrcs")
    torch.testing.assert_close(clean, expected, atol=1e-3 * expected.abs().max().item(), rtol=0)


def test_user_map_is_resampled_with_its_pixel_size(tmp_path, phantom):
    path = tmp_path / "map.mrc"
    write_map(path, phantom[0], 2.0)
    volume, pixel_size = load_map_or_phantom(str(path), 24)
    assert volume.shape == (24, 24, 24) and pixel_size == pytest.approx(2.0 * BOX / 24)
    _, overridden = load_map_or_phantom(str(path), 24, pixel_size_A=3.0)
    assert overridden == pytest.approx(3.0 * BOX / 24)
    write_map(path, phantom[0], 0.0)
    with pytest.raises(CryodiffError, match="pixel size"):
        load_map_or_phantom(str(path), 24)
    with pytest.raises(CryodiffError):
        load_map_or_phantom(str(tmp_path / "missing.mrc"), 24)
    with pytest.raises(CryodiffError):
        load_map_or_phantom("phantom", 300)


def test_reference_ribosome_needs_a_pixel_size(reference_data):
    path = reference_data / "ribosome70S" / "ribosome70S_65.mrc"
    with pytest.raises(CryodiffError, match="--pixel-size"):
        load_map_or_phantom(str(path), 32)
    volume, pixel_size = load_map_or_phantom(str(path), 32, pixel_size_A=4.0)
    assert volume.shape == (32, 32, 32) and pixel_size == pytest.approx(4.0 * 65 / 32)
