"""The real-particle benchmark: closest-projection references and the scores against them.

The bundled real particles have no poses, so the "real" particles here are simulated with
poses from the bundled ribosome map: their true clean images are known, and the references
the benchmark builds from the STAR (poses, origins, CTFs) and the map must be those images,
up to the fitted grey-level scale.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.benchmark.real import fit_references, load_references, run_real_benchmark
from cryodiff.cli import main as cli
from cryodiff.io.mrc import read_stack
from cryodiff.simulate import SimulationConfig, load_map_or_phantom, simulate_dataset

BOX = 32
MAP_PIXEL_A = 7.4  # the 65³ ribosome's assumed pixel size (data/README.md)


@pytest.fixture(scope="module")
def simulated(reference_data, tmp_path_factory):
    """``(map, real folder, training folder)``: two independent simulations of the map."""
    folder = tmp_path_factory.mktemp("real")
    map_path = reference_data / "ribosome70S" / "ribosome70S_65.mrc"
    volume, pixel_size_A = load_map_or_phantom(str(map_path), BOX, MAP_PIXEL_A)
    for name, n, seed in (("real", 24, 1), ("training", 72, 2)):
        config = SimulationConfig(box=BOX, n_particles=n, snr=0.1, pilot_size=32, seed=seed)
        simulate_dataset(volume, pixel_size_A, config, folder / name, progress=False)
    return map_path, folder / "real", folder / "training"


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return fit_references(a, b)[2]


def test_fit_references_recovers_an_affine_map():
    model = torch.randn(3, 10, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    images = 2.5 * model - 7.0
    a, b, corr = fit_references(images, model)
    assert a == pytest.approx([2.5] * 3) and b == pytest.approx([-7.0] * 3)
    assert corr == pytest.approx([1.0] * 3)


def test_references_are_the_clean_images_of_posed_particles(simulated):
    map_path, real, _ = simulated
    references, split, volume, pixel_size_A = load_references(
        real / "particles.star", map_path, BOX, map_pixel_size_A=MAP_PIXEL_A)
    assert pixel_size_A == pytest.approx(MAP_PIXEL_A * 65 / BOX)
    clean_ctf, clean = read_stack(real / "clean_ctf.mrcs"), read_stack(real / "clean.mrcs")
    # Same projection and CTF as the simulator made (poses, origins and CTF from the STAR):
    assert _correlation(references.reference, clean_ctf).min() > 0.999
    assert _correlation(references.reference_no_ctf, clean).min() > 0.999
    # The fitted scale is 1 up to the noise it absorbs (≈ 1/sqrt(SNR·pixels) per image).
    assert abs(float(references.scale.mean()) - 1) < 0.1
    assert torch.equal(split.noisy, read_stack(real / "particles.mrcs"))
    assert float(references.correlation.mean()) == pytest.approx(
        float(_correlation(clean_ctf, split.noisy).mean()), abs=0.02)


def test_cli_scores_methods_against_the_references(simulated, tmp_path):
    map_path, real, training = simulated
    out = tmp_path / "bench"
    assert cli(["benchmark", "--particles", str(real / "particles.star"), "--map",
                str(map_path), "--map-pixel-size", str(MAP_PIXEL_A), "--training",
                str(training), "--only", "lowpass", "wiener", "--n-particles", "16",
                "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in result["rows"]}
    assert result["n_particles"] == 16 and result["median_reference_correlation"] > 0.1
    for method in ("noisy", "lowpass", "wiener"):
        assert rows[method]["status"] == "ok" and rows[method]["n_test_2d"] == 16
    assert rows["lowpass"]["psnr"] > rows["noisy"]["psnr"] + 3
    assert rows["wiener"]["psnr"] > rows["noisy"]["psnr"] + 3
    assert "Real particles" in (out / "results.md").read_text()


def test_cli_refuses_particles_without_poses(reference_data, tmp_path, capsys):
    star = reference_data / "real_particles" / "empiar_10076_7.star"
    map_path = reference_data / "ribosome70S" / "ribosome70S_65.mrc"
    assert cli(["benchmark", "--particles", str(star), "--map", str(map_path),
                "--map-pixel-size", "7.4", "--training", str(tmp_path), "--out",
                str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no poses" in err


def _score_a_trained_checkpoint(simulated, tmp_path, n_particles, prediction="eps",
                                **benchmark):
    """Train a tiny SR3 (predicting ``prediction``) on the simulated folder and score it on
    ``n_particles`` real particles under the benchmark settings ``benchmark``; the rows by
    method name."""
    from cryodiff.training.config import with_overrides
    from cryodiff.training.data import PairedStackData
    from cryodiff.training.loop import train
    from training_helpers import tiny_config

    map_path, real, training = simulated
    train_config = with_overrides(tiny_config(box=BOX, steps=2, val_every=100),
                                  prediction=prediction)
    train(train_config, tmp_path / "run", PairedStackData.from_folder(training, train_config),
          progress=False)
    config = dataclasses.replace(
        BenchmarkConfig(), box=BOX, n_val=8, sr3_steps=(2,), sr3_fast_steps=2,
        posterior_samples=1, pm_draws=2, train_steps=3, device="cpu", sr3_prediction=prediction,
        **benchmark)
    rows = run_real_benchmark(real / "particles.star", map_path, config, tmp_path / "out",
                              training_dir=training, n_particles=n_particles,
                              map_pixel_size_A=MAP_PIXEL_A, checkpoint=tmp_path / "run",
                              progress=False, log=lambda _: None)
    return {r["method"]: r for r in rows}, config


def test_sr3_checkpoint_of_the_simulation_scores_on_the_real_particles(simulated, tmp_path):
    """A model trained on the simulated folder (its pixel size recorded from the stack
    header) is accepted for the real particles at that pixel size and scores on all of them."""
    map_path, real, training = simulated
    by_name, config = _score_a_trained_checkpoint(
        simulated, tmp_path, 12, methods=("lowpass", "sr3", "sr3-mse", "sr3-pm"))
    for method in ("sr3_2", "sr3-pm2_2"):  # cryodiff's sr3-pm runs on real particles too
        row = by_name[method]
        assert row["status"] == "ok" and row["n_test_2d"] == 12 and row["psnr"] is not None
        assert "(--checkpoint)" in row["note"] and row["training_seeds"] == [0]
    assert "sr3v-pm+x0" not in by_name and "sr3-pm+x0" not in by_name  # an ε model: no x̂₀
    assert by_name["sr3+pp-mse"]["status"] == "skipped"
    assert "not run on real particles" in by_name["sr3+pp-mse"]["note"]
    alone = run_real_benchmark(real / "particles.star", map_path,
                               dataclasses.replace(config, methods=("lowpass", "sr3-pm")),
                               tmp_path / "out_pm", training_dir=training, n_particles=4,
                               map_pixel_size_A=MAP_PIXEL_A, progress=False, log=lambda _: None)
    skipped = next(r for r in alone if r["method"] == "sr3-pm")
    assert skipped["status"] == "skipped" and "needs sr3" in skipped["note"]
    from cryodiff.denoise import load_denoiser
    assert load_denoiser(tmp_path / "run").pixel_size_A == pytest.approx(MAP_PIXEL_A * 65 / BOX,
                                                                       rel=1e-5)


def test_a_v_checkpoint_gives_the_x0_and_blend_rows_on_real_particles(simulated, tmp_path):
    """A v-predicting SR3 on real particles: its one-pass x̂₀ and the sr3v-pm+x0 blend (the
    pixelwise mean of sr3v-pm and sr3v-x0_1) are scored beside sr3v-pm, as in the simulation."""
    by_name, _ = _score_a_trained_checkpoint(simulated, tmp_path, 6, prediction="v",
                                             methods=("sr3", "sr3-pm"))
    for method in ("sr3v_2", "sr3v-pm2_2", "sr3v-x0_1", "sr3v-pm+x0"):
        assert by_name[method]["status"] == "ok" and by_name[method]["n_test_2d"] == 6
    assert "mean of sr3v-pm2_2 and sr3v-x0_1" in by_name["sr3v-pm+x0"]["note"]


def test_learnt_methods_train_once_per_training_seed_on_real_particles(simulated, tmp_path):
    """--training-seeds 0 1 on real particles: the supervised U-Net and SR3 train twice and
    their rows give the mean over the seeds, the spread between them and a paired gap
    from each particle's PSNR averaged over the seeds; a loaded SR3 model counts once."""
    map_path, real, training = simulated
    config = dataclasses.replace(
        BenchmarkConfig(), box=BOX, n_val=8, sr3_steps=(2,), sr3_fast_steps=2,
        posterior_samples=1, train_steps=2, device="cpu", training_seeds=(0, 1),
        methods=("lowpass", "supervised", "sr3"))
    rows = {r["method"]: r for r in run_real_benchmark(
        real / "particles.star", map_path, config, tmp_path / "out", training_dir=training,
        n_particles=6, map_pixel_size_A=MAP_PIXEL_A, progress=False, log=lambda _: None)}
    for method in ("supervised", "sr3_2", "sr3+pp_2"):
        row = rows[method]
        assert row["status"] == "ok" and row["training_seeds"] == [0, 1], method
        assert row["n_seeds"] == 2 and len(row["seed_psnrs"]) == 2
        assert row["psnr"] == pytest.approx(sum(row["seed_psnrs"]) / 2)
        assert row["seed_psnrs"][0] != row["seed_psnrs"][1]  # two models, not one twice
        assert row["psnr_seed_sd"] is not None and row["psnr_vs_best_db"] is not None
    assert rows["lowpass"]["training_seeds"] is None and rows["lowpass"]["n_seeds"] is None
    for seed in (0, 1):
        assert (tmp_path / "out" / "work" / "baselines" / f"seed{seed}").is_dir()
    best = max((r for r in rows.values() if r["method"] != "noisy" and r["psnr"] is not None),
               key=lambda r: r["psnr"])
    assert best["psnr_vs_best_db"] == pytest.approx(0.0)


def test_matched_simulation_follows_the_particles(simulated, tmp_path):
    """Without --training the methods learn from `simulate --like` of the particles: same box
    and pixel size, and an SNR near the one the particles were simulated at (0.1)."""
    from cryodiff.benchmark.real import matched_simulation, read_simulated_split

    map_path, real, _ = simulated
    folder = matched_simulation(real / "particles.star", map_path, tmp_path, BOX, 40,
                                map_pixel_size_A=MAP_PIXEL_A)
    split = read_simulated_split(folder, slice(0, None))
    assert split.noisy.shape == (40, BOX, BOX)
    summary = json.loads((folder / "simulation.json").read_text())
    assert summary["pixel_size_A"] == pytest.approx(MAP_PIXEL_A * 65 / BOX)
    assert 0.05 < summary["snr"] < 0.2


def test_background_ratio_of_a_scaled_image():
    from cryodiff.benchmark.real_compare import background_ratio

    noisy = torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(3))
    assert background_ratio(0.5 * noisy + 2.0, noisy, 5.0) == pytest.approx(0.5)


def test_denoise_real_works_in_the_particles_units(simulated, tmp_path):
    """Baselines fitted on the simulation give the same result, in the particles' units, for
    particles stored as ``c·x + d``: each particle is mapped to the simulation's scale first."""
    from cryodiff.benchmark.real_compare import denoise_real
    from cryodiff.io.mrc import write_stack
    from cryodiff.io.star import read_particles
    from cryodiff.io.star_write import write_derived_particles

    _, real, training = simulated
    star = real / "particles.star"
    write_stack(tmp_path / "scaled.mrcs", 40.0 * read_stack(real / "particles.mrcs") + 300.0,
                float(read_particles(star).pixel_size_A[0]))
    write_derived_particles(tmp_path / "scaled.star", read_particles(star),
                            tmp_path / "scaled.mrcs")
    one = denoise_real(star, training, ("lowpass", "wiener"), n_particles=8, n_validation=16)
    other = denoise_real(tmp_path / "scaled.star", training, ("lowpass", "wiener"),
                         n_particles=8, n_validation=16)
    for name in ("noisy", "lowpass", "wiener"):
        assert one[name].shape == (8, BOX, BOX)
        torch.testing.assert_close(other[name], 40.0 * one[name] + 300.0, rtol=1e-4, atol=2e-3)
    assert float(one["wiener"].std()) < float(one["noisy"].std())
