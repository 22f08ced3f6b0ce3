"""Simulation matched to real particles (:mod:`cryodiff.simulate_like`, ``--like``) and the
map resampling it relies on (:mod:`cryodiff.map_resample`)."""

from __future__ import annotations

import json
import pytest
import torch

from aspire_particles import aspire_particles
from cryodiff.cli import main as cli
from cryodiff.fourier import coordinate_grid, fourier_resize
from cryodiff.io.mrc import read_stack, write_map
from cryodiff.io.star import read_particles
from cryodiff.map_resample import pad_or_crop, resample_map
from cryodiff.noise_estimate import estimate_noise
from cryodiff.simulate import SimulationConfig, draw_poses
from cryodiff.simulate_like import NOISE_ESTIMATE_FILE, simulate_like


def _gaussian(box: int, pixel_size_A: float, sigma_A: float = 9.0,
              centre_A=(4.0, -6.0, 3.0)) -> torch.Tensor:
    """A 3D Gaussian (z, y, x array) sampled at ``pixel_size_A``, unit peak."""
    r = coordinate_grid(box, 3, dtype=torch.float64) * pixel_size_A - torch.tensor(centre_A)
    return torch.exp(-r.square().sum(-1) / (2 * sigma_A**2))


@pytest.mark.parametrize(("box", "pixel", "target_box", "target_pixel"),
                         [(40, 3.0, 48, 2.0), (41, 2.0, 32, 3.1), (33, 2.5, 33, 2.5)])
def test_resample_map_matches_the_analytic_gaussian(box, pixel, target_box, target_pixel):
    resampled, effective = resample_map(_gaussian(box, pixel), pixel, target_box, target_pixel)
    assert resampled.shape == (target_box,) * 3
    assert effective == pytest.approx(target_pixel, rel=0.5 / target_box)
    expected = _gaussian(target_box, effective)
    assert (resampled - expected).abs().max().item() < 0.01


@pytest.mark.parametrize(("old", "new"), [(9, 6), (8, 11), (7, 7)])
def test_pad_or_crop_keeps_the_origin(old, new):
    volume = torch.zeros(old, old, old)
    volume[old // 2, old // 2, old // 2] = 1.0
    out = pad_or_crop(volume, new)
    assert out.shape == (new,) * 3 and out[new // 2, new // 2, new // 2] == 1.0


def test_ctf_pool_draws_the_star_rows_per_optics_group(reference_data):
    """sample.star has two optics groups (300 and 200 kV): drawn CTFs are whole STAR rows."""
    pool = read_particles(reference_data / "real_particles/sample.star").ctf
    config = SimulationConfig(box=32, pixel_size_A=1.4)
    poses = draw_poses(config, 200, torch.Generator().manual_seed(0), ctf_pool=pool)
    rows = {(float(u), float(v), float(kv)) for u, v, kv in
            zip(pool.defocus_u_A, pool.defocus_v_A, pool.voltage_kV)}
    drawn = {(float(u), float(v), float(kv)) for u, v, kv in
             zip(poses.ctf.defocus_u_A.float(), poses.ctf.defocus_v_A.float(),
                 poses.ctf.voltage_kV.float())}
    assert drawn <= rows and len(drawn) > len(rows) // 2
    assert set(poses.ctf.voltage_kV.tolist()) == {200.0, 300.0}


@pytest.fixture(scope="module")
def aspire_like(tmp_path_factory):
    """ASPIRE particles with coloured noise (the 'real' data), and their map written at 4 Å
    in a 24-voxel box, so that --like has to resample it to the particles' 32 px at 3 Å."""
    folder = tmp_path_factory.mktemp("like")
    data = aspire_particles(folder, 32, 100, snr=0.05, coloured=True)
    map_path = folder / "map.mrc"
    write_map(map_path, fourier_resize(data.volume, 24, 3), 4.0)
    return data, map_path


@pytest.mark.slow  # ASPIRE's import and simulation
def test_simulate_like_reproduces_the_estimated_snr_and_spectrum(aspire_like, tmp_path):
    data, map_path = aspire_like
    source = estimate_noise(data.star, map_path)
    assert source.method == "poses"
    out = simulate_like(data.star, map_path, tmp_path / "like", 150, seed=3, progress=False)
    summary = json.loads((out / "simulation.json").read_text())
    assert summary["measured_snr"] == pytest.approx(source.snr, rel=0.1)
    assert read_stack(out / "particles.mrcs").shape == (150, 32, 32)
    simulated = read_particles(out / "particles.star")
    assert simulated.box == 32 and set(simulated.pixel_size_A.tolist()) == {3.0}
    source_defocus = set(data.particles.ctf.defocus_u_A.tolist())
    assert set(simulated.ctf.defocus_u_A.tolist()) <= source_defocus
    stored = json.loads((out / NOISE_ESTIMATE_FILE).read_text())
    assert stored["snr"] == source.snr and stored["method"] == "poses"
    # Closed loop: the simulated particles carry the estimated noise.
    again = estimate_noise(out / "particles.star", map_path)
    assert again.snr == pytest.approx(source.snr, rel=0.2)
    shape_source = source.noise_spectrum / source.noise_spectrum.mean()
    shape_again = again.noise_spectrum / again.noise_spectrum.mean()
    for band in (slice(1, 5), slice(5, 10), slice(10, 17)):
        assert shape_again[band].mean() == pytest.approx(shape_source[band].mean(), rel=0.15)
    assert shape_source[1] > 2 * shape_source[-1]  # the noise is coloured, not white


@pytest.mark.slow
def test_cli_simulate_and_train_like(aspire_like, tmp_path, capsys):
    data, map_path = aspire_like
    assert cli(["simulate", "--like", str(data.star), "--map", str(map_path), "--n", "40",
                "--out", str(tmp_path / "sim")]) == 0
    out = capsys.readouterr().out
    assert "noise from the poses" in out
    assert read_stack(tmp_path / "sim" / "particles.mrcs").shape == (40, 32, 32)
    run = tmp_path / "run"
    assert cli(["train", "--like", str(data.star), "--map", str(map_path), "--n", "40",
                "--out", str(run), "--steps", "2", "--batch-size", "4", "--device", "cpu",
                "--no-progress"]) == 0
    assert json.loads((run / "data" / "simulation.json").read_text())["n_particles"] == 40
    assert (run / "config.json").is_file()


def test_cli_like_errors_are_one_line(reference_data, tmp_path, capsys):
    star = reference_data / "real_particles/empiar_10076_7.star"
    ribosome = reference_data / "ribosome70S/ribosome70S_65.mrc"  # no pixel size in its header
    common = ["simulate", "--like", str(star), "--n", "4", "--out", str(tmp_path / "o")]
    cases = [
        (common + ["--map", str(ribosome), "--particle-diameter", "250"], "--map-pixel-size"),
        (common + ["--map", str(ribosome), "--map-pixel-size", "7.4"], "--particle-diameter"),
        (common + ["--map", "phantom"], "MRC map"),
        (common + ["--map", str(ribosome), "--box", "64"], "leave them out"),
        (["simulate", "--map", "phantom", "--n", "4", "--out", str(tmp_path / "o")], "--box"),
        (["train", "--like", str(star), "--out", str(tmp_path / "r"), "--data", str(tmp_path)],
         "--like needs --map"),
    ]
    for argv, message in cases:
        assert cli(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (argv, err)
    assert not (tmp_path / "o").exists()


def test_a_noise_spectrum_of_the_wrong_length_is_refused():
    from cryodiff.errors import CryodiffError

    SimulationConfig(box=32, noise_spectrum=(1.0,) * 17).validate()
    with pytest.raises(CryodiffError, match="noise_spectrum needs 17"):
        SimulationConfig(box=32, noise_spectrum=(1.0,) * 16).validate()
    with pytest.raises(CryodiffError, match="positive"):
        SimulationConfig(box=32, noise_spectrum=(1.0,) * 16 + (0.0,)).validate()
