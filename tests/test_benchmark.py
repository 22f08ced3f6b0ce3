"""The benchmark core at a tiny size: schema, sanity of the scores, skipped peers, SR3 rows."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from cryodiff.benchmark import get_preset, run_benchmark
from cryodiff.benchmark import methods as bench_methods
from cryodiff.benchmark.conditions import make_condition
from cryodiff.errors import CryodiffError

REQUIRED = ("method", "map", "snr", "psnr", "ssim", "frc_0143", "seconds_per_image",
            "fsc_0143_A")

TINY = dataclasses.replace(
    get_preset("ci"), n_train=48, n_val=16, n_test_2d=16, n_test_slow=4, n_test_3d=200,
    # 40 steps: past the ci preset's 20 warm-up steps, so the EMA weights have learnt
    train_steps=40, methods=("lowpass", "wiener", "topaz", "supervised"),
    methods_3d=("lowpass", "supervised"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run with Topaz made to look uninstalled."""
    real = bench_methods.make_baseline

    def make(name, **options):
        if name == "topaz":
            raise CryodiffError("Topaz baseline skipped: topaz-em not installed (pip install …)")
        return real(name, **options)

    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench_methods, "make_baseline", make)
        rows = run_benchmark(TINY, out, command="pytest", progress=False, log=lambda _: None,
                             save_denoised=True)
    return out, rows


@pytest.mark.slow
def test_results_files_and_schema(tiny_run):
    out, rows = tiny_run
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(rows))
    for row in saved:
        assert set(REQUIRED) <= set(row)
        assert row["map"] == "phantom" and row["snr"] == 0.1
        for key in ("psnr", "ssim", "frc_0143", "fsc_0143_A"):
            assert row[key] is None or math.isfinite(row[key])
    text = (out / "results.md").read_text()
    assert "Command: `pytest`" in text and "| supervised |" in text
    assert "FSC-0.143, pose search (Å)" in text and "Pose search:" in text
    for figure in ("gallery.png", "reconstructions.png", "fsc.png", "fsc_pose_search.png"):
        assert (out / figure).stat().st_size > 1000


@pytest.mark.slow
def test_clean_beats_noisy_in_3d_and_noisy_has_lowest_psnr(tiny_run):
    _, rows = tiny_run
    by = {row["method"]: row for row in rows}
    assert by["clean"]["fsc_0143_A"] < by["noisy"]["fsc_0143_A"]
    assert by["noisy"]["n_test_3d"] == TINY.n_test_3d
    working = [r for r in rows if r["status"] == "ok" and r["method"] != "noisy"]
    assert {r["method"] for r in working} == {"lowpass", "wiener", "supervised"}
    assert all(r["psnr"] > by["noisy"]["psnr"] + 1 for r in working)
    assert all(r["ssim"] > by["noisy"]["ssim"] for r in working)
    # only the methods_3d rows were reconstructed
    assert by["lowpass"]["fsc_0143_A"] is not None and by["wiener"]["fsc_0143_A"] is None


@pytest.mark.slow
def test_paired_psnr_differences_from_the_best_denoiser(tiny_run):
    _, rows = tiny_run
    by = {row["method"]: row for row in rows}
    best = max((r for r in rows if r["status"] == "ok" and r["method"] != "noisy"
                and r["psnr"] is not None), key=lambda r: r["psnr"])
    assert best["psnr_vs_best_db"] == 0.0 and best["psnr_vs_best_sem"] == 0.0
    for method in ("noisy", "lowpass", "wiener", "supervised"):
        row = by[method]
        # paired over the same images, the mean difference is the difference of the means
        assert row["psnr_vs_best_db"] == pytest.approx(row["psnr"] - best["psnr"], abs=1e-9)
        if row is not best:
            assert row["psnr_vs_best_sem"] > 0
    assert by["noisy"]["psnr_vs_best_db"] < -5 * by["noisy"]["psnr_vs_best_sem"]
    assert by["clean"]["psnr_vs_best_db"] is None and by["topaz"]["psnr_vs_best_db"] is None
    # Each scored row keeps its per-image PSNR, so runs split by method pair up later.
    for method in ("noisy", "lowpass", "wiener", "supervised"):
        row = by[method]
        assert len(row["psnr_per_image"]) == row["n_test_2d"]
        assert sum(row["psnr_per_image"]) / row["n_test_2d"] == pytest.approx(row["psnr"],
                                                                            abs=1e-3)
    assert by["clean"]["psnr_per_image"] is None and by["topaz"]["psnr_per_image"] is None


def test_paired_difference_removes_the_spread_between_particles():
    from cryodiff.benchmark.evaluate import paired_psnr_difference

    gen = torch.Generator().manual_seed(0)
    target = torch.randn(64, 16, 16, generator=gen)
    # particles differ a lot in difficulty (noise level), the two methods differ little
    level = torch.logspace(-1.5, 0, 64)[:, None, None]
    noise = torch.randn(64, 16, 16, generator=gen)
    worse, better = target + 1.1 * level * noise, target + level * noise
    mean, sem = paired_psnr_difference(worse, better, target)
    assert mean == pytest.approx(-20 * math.log10(1.1), abs=1e-6)
    assert sem < 1e-6  # the same factor on every particle: no spread left after pairing
    assert paired_psnr_difference(worse[:1], better[:1], target[:1])[1] is None


@pytest.mark.slow
def test_pose_search_rows(tiny_run):
    _, rows = tiny_run
    by = {row["method"]: row for row in rows}
    searched = {m for m, r in by.items() if r["fsc_0143_A_pose_search"] is not None}
    assert searched == {"clean", "noisy", "lowpass", "supervised"}  # every 3D set, no other
    assert by["clean"]["median_pose_error_deg"] < 2.0  # clean images find their poses
    assert by["noisy"]["median_pose_error_deg"] > by["clean"]["median_pose_error_deg"]
    # found poses can only lose resolution against the true ones
    for method in searched:
        assert by[method]["fsc_0143_A_pose_search"] >= by[method]["fsc_0143_A"] - 0.5
    assert by["clean"]["fsc_0143_A_pose_search"] < by["noisy"]["fsc_0143_A_pose_search"]
    # a linear filter holds the raw particles' pose information, no more and no less
    noisy_error = by["noisy"]["median_pose_error_deg"]
    assert abs(by["lowpass"]["median_pose_error_deg"] - noisy_error) < 0.3 * noisy_error


@pytest.mark.slow
def test_skipped_peers_are_listed_with_a_note(tiny_run):
    out, rows = tiny_run
    by = {row["method"]: row for row in rows}
    assert by["topaz"]["status"] == "skipped" and "not installed" in by["topaz"]["note"]
    for name in ("bm3d", "noise2noise", "cwf", "sr3+pp"):
        assert by[name]["status"] == "skipped" and by[name]["note"]
        assert by[name]["psnr"] is None
    assert "topaz [skipped]: Topaz baseline skipped" in (out / "results.md").read_text()


def test_training_seeds_are_validated_and_set_by_the_presets():
    from cryodiff.benchmark.config import PRESETS

    assert get_preset("ci").training_seeds == (0,)  # CI stays cheap: one training
    for name in ("cpu-small", "gpu-medium", "gpu-paper"):
        assert PRESETS[name].training_seeds == (0, 1, 2)
    TINY.validate()
    for bad in ((), (0, 0), (-1,), (True,), (1.5,)):
        with pytest.raises(CryodiffError, match="training seeds must be distinct integers"):
            dataclasses.replace(TINY, training_seeds=bad).validate()
    with pytest.raises(CryodiffError, match="mse_post_samples must be positive"):
        dataclasses.replace(TINY, mse_post_samples=0).validate()
    with pytest.raises(CryodiffError, match="mse_post_max_steps must be positive"):
        dataclasses.replace(TINY, mse_post_max_steps=0).validate()
    # the cheap presets train sr3-mse post-processors for their fast step counts only
    assert get_preset("ci").mse_post_max_steps == 10
    assert PRESETS["cpu-small"].mse_post_max_steps == 50


def test_a_training_seed_changes_the_training_and_not_the_data():
    config = dataclasses.replace(TINY, n_train=16, n_val=8, n_test_2d=4, n_test_slow=2,
                                 n_test_3d=8, seed=3, training_seeds=(0, 5))
    seeded = config.for_training_seed(5)
    assert seeded.seed == 3 and seeded.training_seeds == (5,) and seeded.training_seed == 5
    a, b = make_condition("phantom", 0.1, config), make_condition("phantom", 0.1, seeded)
    for split in ("train", "val", "test"):
        torch.testing.assert_close(getattr(a, split).noisy, getattr(b, split).noisy)
    assert bench_methods.train_config_for(config, a).seed == 0  # the first training seed
    assert bench_methods.train_config_for(seeded, a).seed == 5


@pytest.mark.slow
def test_learnt_rows_are_means_over_training_seeds(tmp_path):
    """Two training seeds: trained baselines and SR3 (with its sr3-mse rows) run per seed in
    their own folders; non-learnt rows run once; 3D from the first seed; device recorded."""
    from cryodiff.benchmark import run as bench_run
    from cryodiff.benchmark.seeds import SeededOutput
    from cryodiff.metrics import psnr

    config = dataclasses.replace(
        TINY, n_train=32, n_val=8, n_test_2d=8, n_test_slow=4, n_test_3d=24, train_steps=3,
        post_train_steps=3, sr3_steps=(1, 2), sr3_fast_steps=1, slow_step_threshold=1,
        posterior_samples=1, pm_draws=2,
        methods=("lowpass", "supervised", "supervised-2x", "sr3", "sr3-mse", "sr3-pm"),
        methods_3d=("supervised", "sr3", "sr3-pm"), pose_search=False, training_seeds=(0, 1))
    condition = make_condition("phantom", 0.1, config)
    result = bench_run.run_condition(condition, config, tmp_path / "work", progress=False,
                                     log=lambda _: None)
    rows = {row["method"]: row for row in result.rows}
    assert {row["device"] for row in result.rows} == {"cpu"}
    for seed in (0, 1):
        assert (tmp_path / "work" / "baselines" / f"seed{seed}"
                / "phantom_snr0.1_supervised.pt").is_file()
        assert (tmp_path / "work" / f"sr3_phantom_snr0.1_seed{seed}").is_dir()
    assert rows["lowpass"]["n_seeds"] is None and rows["lowpass"]["psnr_seed_sd"] is None
    # SR3 learns from the training split alone, as the trained baselines do
    from cryodiff.denoise import load_denoiser
    from cryodiff.training.data import Normalisation

    norm = load_denoiser(tmp_path / "work" / "sr3_phantom_snr0.1_seed1").normalisation
    expected = Normalisation.measure(condition.train.noisy, condition.train.clean_ctf)
    assert norm.condition_mean == pytest.approx(expected.condition_mean, rel=1e-6)
    assert norm.target_std == pytest.approx(expected.target_std, rel=1e-6)
    for method in ("supervised", "supervised-2x", "sr3_1", "sr3+pp_1", "sr3_2", "sr3+pp-mse_1",
                   "sr3+pp-mse_2", "sr3-pm2_1"):
        row = rows[method]
        assert row["status"] == "ok" and row["n_seeds"] == 2 and row["training_seeds"] == [0, 1]
        assert row["seed_psnrs"][0] != row["seed_psnrs"][1]  # the seeds trained differently
        assert row["psnr"] == pytest.approx(sum(row["seed_psnrs"]) / 2)
        assert row["psnr_seed_sd"] == pytest.approx(
            abs(row["seed_psnrs"][0] - row["seed_psnrs"][1]) / math.sqrt(2))
    assert rows["sr3+pp-mse_1"]["family"] == "sr3-mse"
    assert rows["sr3-pm2_1"]["family"] == "sr3-pm"
    for seed in (0, 1):
        assert (tmp_path / "work" / f"sr3_phantom_snr0.1_seed{seed}" / "pm_post_1_k2.pt").is_file()
    # supervised-2x: SR3's and the sr3-pm post-processor's steps together
    assert "6 steps × " in rows["supervised-2x"]["note"] and "3 steps × " in \
        rows["supervised"]["note"]
    # the one-pass networks use the self-ensemble; the paper-faithful SR3 rows do not
    for method in ("supervised", "supervised-2x", "sr3+pp-mse_1", "sr3-pm2_1"):
        assert "self-ensemble" in rows[method]["note"]
    for method in ("sr3_1", "sr3+pp_1"):
        assert "self-ensemble" not in rows[method]["note"]
    outputs = {o.method: o for o in result.outputs}
    assert isinstance(outputs["supervised"], SeededOutput)
    for method in ("supervised", "sr3+pp-mse_1", "sr3-pm2_1"):  # 3D: the first seed's images
        assert rows[method]["n_test_3d"] == config.n_test_3d
        assert "from training seed 0" in rows[method]["note"]
        assert len(outputs[method].images) == config.n_test_3d
    assert rows["sr3+pp-mse_2"]["n_test_3d"] is None
    # the paired difference with the best row uses each image's PSNR averaged over seeds
    best = max((r for r in result.rows if r["psnr_vs_best_db"] is not None),
               key=lambda r: r["psnr"])
    target = condition.test.clean_ctf[:config.n_test_2d].double()

    def per_image(method):
        return torch.stack([psnr(im.double(), target)
                            for im in outputs[method].seed_images]).mean(0) \
            if isinstance(outputs[method], SeededOutput) \
            else psnr(outputs[method].images[:len(target)].double(), target)

    difference = per_image("supervised") - per_image(best["method"])
    assert rows["supervised"]["psnr_vs_best_db"] == pytest.approx(float(difference.mean()))
    assert rows["supervised"]["psnr_vs_best_sem"] == pytest.approx(
        float(difference.std()) / math.sqrt(config.n_test_2d))
    # seed 0 of this run trained exactly what a one-seed run trains
    single = bench_run.run_condition(condition, dataclasses.replace(
        config, methods=("supervised",), methods_3d=(), training_seeds=(0,)),
        tmp_path / "single", progress=False, log=lambda _: None)
    alone = next(r for r in single.rows if r["method"] == "supervised")
    assert alone["n_seeds"] == 1 and alone["psnr_seed_sd"] is None
    seed_psnrs = rows["supervised"]["seed_psnrs"]  # (fewer images: other batch rounding)
    assert alone["psnr"] == pytest.approx(seed_psnrs[0], abs=1e-5)
    assert abs(alone["psnr"] - seed_psnrs[1]) > 1e-3


def test_splits_are_disjoint_and_noise2noise_pairs_independent():
    config = dataclasses.replace(TINY, n_train=32, n_val=8, n_test_3d=32)
    condition = make_condition("phantom", 0.1, config)
    train, test = condition.train, condition.test
    assert not (train.eulers_deg[:, None, :] == test.eulers_deg[None, :, :]).all(-1).any()
    noise_a = train.noisy - train.clean_ctf
    noise_b = train.noisy_pair - train.clean_ctf
    correlation = torch.corrcoef(torch.stack([noise_a.flatten(), noise_b.flatten()]))[0, 1]
    assert abs(float(correlation)) < 0.05
    # same SNR in every split: the noise variance is calibrated once
    variances = [float((s.noisy - s.clean_ctf).var()) for s in (train, condition.val, test)]
    assert max(variances) / min(variances) < 1.3


def test_sr3_rows_with_an_untrained_model():
    from cryodiff.denoise import Denoiser
    from cryodiff.diffusion import make_schedule
    from cryodiff.models.postprocess import PostProcessUNet
    from cryodiff.models.unet import SR3UNet
    from cryodiff.training.config import get_preset as train_preset
    from cryodiff.training.data import Normalisation

    config = dataclasses.replace(TINY, n_train=16, n_val=8, n_test_2d=6, n_test_slow=3,
                                 n_test_3d=10, sr3_steps=(1, 3), sr3_fast_steps=1,
                                 slow_step_threshold=2, posterior_samples=2, methods_3d=("sr3",))
    condition = make_condition("phantom", 0.1, config)
    train = train_preset("ci")
    torch.manual_seed(0)
    denoiser = Denoiser(SR3UNet(train.model).eval(), PostProcessUNet(train.postprocess).eval(),
                        Normalisation(0.0, 1.0, 0.0, 1.0), make_schedule("linear", 2000), train, 0)
    rows = {r.method: r for r in bench_methods.run_sr3(denoiser, condition, config)}
    assert list(rows) == ["sr3_1", "sr3+pp_1", "sr3_3", "sr3+pp_3", "sr3_mean2_1"]
    assert rows["sr3_1"].images.shape == (10, 32, 32)  # fast steps cover the 3D set
    assert rows["sr3_3"].images.shape == (3, 32, 32)  # slow step counts: the small subset
    assert rows["sr3_mean2_1"].images.shape == (6, 32, 32)
    refined = bench_methods._postprocess(denoiser, rows["sr3_1"].images, condition.test.noisy)
    torch.testing.assert_close(rows["sr3+pp_1"].images, refined)


def _row(method, psnr, ssim, fsc, n_2d, status="ok"):
    return {"method": method, "psnr": psnr, "ssim": ssim, "fsc_0143_A": fsc,
            "n_test_2d": n_2d, "status": status}


def test_verdict_compares_like_with_like_and_names_the_raw_particles():
    from cryodiff.benchmark.report import verdict

    rows = [_row("noisy", 7.0, 0.03, 7.4, 128), _row("supervised", 26.0, 0.59, 9.5, 128),
            _row("sr3+pp_10", 25.7, 0.66, 9.2, 128),
            _row("sr3+pp_250", 27.0, 0.70, None, 32),  # fewer particles: not comparable
            _row("topaz", 21.6, 0.21, 7.5, 128), _row("cwf", None, None, None, None, "skipped")]
    text = verdict(rows, "sr3+pp_10")
    assert "best PSNR: **supervised** (26.000); sr3+pp_10 25.700" in text
    assert "best SSIM: **sr3+pp_10** (0.660)" in text
    assert "best 3D FSC-0.143: **topaz** (7.500); sr3+pp_10 9.200; raw particles 7.400 " \
           "(no denoiser beats them)" in text
    assert "over the 128 particles" in text
    rows[0]["fsc_0143_A"] = 9.0
    assert "no denoiser beats them" not in verdict(rows, "sr3+pp_10")


@pytest.mark.slow
def test_an_interrupted_run_keeps_the_conditions_it_finished(tmp_path):
    from cryodiff.benchmark import run as bench_run

    config = dataclasses.replace(TINY, snrs=(0.1, 0.05), methods=("lowpass",),
                                 methods_3d=("lowpass",))
    real = bench_run.run_condition
    done = []

    def run_condition(condition, *args, **kwargs):
        if done:
            raise KeyboardInterrupt  # the user stops the run during the second condition
        done.append(condition.snr)
        return real(condition, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench_run, "run_condition", run_condition)
        with pytest.raises(KeyboardInterrupt):
            run_benchmark(config, tmp_path, progress=False, log=lambda _: None)
    rows = json.loads((tmp_path / "results.json").read_text())
    assert rows and {row["snr"] for row in rows} == {0.1}
    text = (tmp_path / "results.md").read_text()
    assert "Unfinished run: 1 of 2 conditions done" in text and "| lowpass |" in text
    assert not (tmp_path / "gallery.png").exists()


@pytest.mark.slow
def test_saved_denoised_and_raw_stacks_describe_the_same_particles(tiny_run):
    from cryodiff.io.star import read_particles
    from cryodiff.io.images import load_images

    out, _ = tiny_run
    denoised, raw = read_particles(out / "denoised.star"), read_particles(out / "raw.star")
    assert len(denoised) == len(raw) == TINY.n_test_3d
    np.testing.assert_allclose(denoised.eulers_deg, raw.eulers_deg)
    np.testing.assert_allclose(denoised.shifts_A, raw.shifts_A)
    condition = make_condition("phantom", 0.1, TINY)
    raw_images, denoised_images = load_images(raw), load_images(denoised)
    torch.testing.assert_close(raw_images.float(), condition.test.noisy.float())
    assert not torch.allclose(raw_images.float(), denoised_images.float())


def test_halves_denoised_apart_lets_each_half_see_only_itself():
    from cryodiff.benchmark.evaluate import halves_denoised_apart
    from cryodiff.reconstruct import half_map_split

    gen = torch.Generator().manual_seed(0)
    noisy = torch.randn(41, 8, 8, generator=gen)
    ctf = torch.rand(41, 8, 8, generator=gen)
    seen = []

    def transductive(images, ctf_grid):  # output depends on every image it is given
        seen.append(len(images))
        return images * ctf_grid - images.mean(0)

    out = halves_denoised_apart(transductive, noisy, ctf, seed=3)
    halves = half_map_split(41, 3)
    assert sorted(seen) == [20, 21]
    for half in (0, 1):
        pick = halves == half
        torch.testing.assert_close(out[pick], noisy[pick] * ctf[pick] - noisy[pick].mean(0))


def test_a_transductive_method_is_denoised_per_half_for_its_half_maps():
    from cryodiff.benchmark import run as bench_run
    from cryodiff.benchmark.methods import MethodOutput

    config = dataclasses.replace(TINY, n_train=16, n_val=8, n_test_2d=8, n_test_slow=4,
                                 n_test_3d=24, methods=("cwf",), methods_3d=("cwf",))
    condition = make_condition("phantom", 0.1, config)

    class MeanRemover:  # a stand-in for CWF: its statistics come from the images it denoises
        def fit(self, data):
            assert data.noisy.shape[0] == config.n_val  # fitted on validation, as run_baseline
            return self

        def denoise(self, images, ctf=None):
            return images - images.mean(0)

    test = condition.test
    outputs = [MethodOutput("noisy", "noisy", test.noisy),
               MethodOutput("cwf", "cwf", test.noisy - test.noisy.mean(0))]
    result = bench_run.ConditionResult(condition, outputs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench_methods, "make_baseline", lambda name, **_: MeanRemover())
        bench_run.halfmap_inputs(result, config)
    assert set(result.halfmap_images) == {"cwf"}
    apart = result.halfmap_images["cwf"]
    assert not torch.allclose(apart, outputs[1].images)
    from cryodiff.reconstruct import half_map_split

    pick = half_map_split(len(test), config.seed) == 0
    torch.testing.assert_close(apart[pick], test.noisy[pick] - test.noisy[pick].mean(0))
    assert "each half denoised on its own" in outputs[1].note


@pytest.mark.slow
def test_half_map_and_truth_readings_of_every_3d_set(tiny_run):
    out, rows = tiny_run
    by = {row["method"]: row for row in rows}
    for method in ("clean", "noisy", "lowpass", "supervised"):
        row = by[method]
        assert row["fsc_halfmap_0143_A"] is not None and row["fsc_05_A"] is not None
        assert row["halfmap_minus_truth_A"] == pytest.approx(
            row["fsc_halfmap_0143_A"] - row["fsc_05_A"])
        assert row["fsc_halfmap_unmasked_0143_A"] is not None
        randomized = row["halfmap_randomized_fsc"]  # null where no correction applies
        assert randomized is None or -1 <= randomized <= 1
    assert by["clean"]["halfmap_randomized_fsc"] is None  # its FSC never falls below 0.8
    assert by["wiener"]["fsc_halfmap_0143_A"] is None  # 2D only
    # Half maps of clean images agree better than those of noisy ones.
    assert by["clean"]["fsc_halfmap_0143_A"] < by["noisy"]["fsc_halfmap_0143_A"]
    text = (out / "results.md").read_text()
    assert "half-map FSC-0.143 (Å)" in text and "phase randomisation" in text
    assert (out / "fsc_halfmap_vs_truth.png").stat().st_size > 1000


def test_a_failed_row_names_the_error_on_one_line_and_has_no_images():
    error = RuntimeError("CUDA out of memory.\n  Tried to allocate " + "x" * 400)
    row = bench_methods.failed_output("sr3v-joint_1", "sr3-joint", error)
    assert (row.method, row.family, row.images, row.status) == ("sr3v-joint_1", "sr3-joint",
                                                                 None, "failed")
    expected = "RuntimeError: CUDA out of memory. Tried to allocate " + "x" * 400
    assert row.note == expected[:300]  # one line: a markdown table cell cannot hold two
    short = bench_methods.failed_output("bm3d", "bm3d", ValueError("sigma must be > 0"))
    assert short.note == "ValueError: sigma must be > 0"
