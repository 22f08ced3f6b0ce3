"""sr3-pm for a user's run: `cryodiff train --pm-postprocess`, `cryodiff denoise --method
sr3-pm`, the checkpoint entry, its checks and the one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from cryodiff.cli import main as cli
from cryodiff.denoise import denoise_posterior_mean, load_denoiser
from cryodiff.errors import CryodiffError
from cryodiff.io.mrc import read_stack, write_stack
from cryodiff.training import checkpoint as ckpt
from cryodiff.training.data import PairedStackData
from cryodiff.training.loop import train
from cryodiff.training.pm_postprocess import (MEANS_CACHE, METRICS, pm_recipe,
                                              train_pm_postprocessor)
from cryodiff.training.postprocess_mse import refine_views
from training_helpers import blob_pairs, tiny_config


def _data(config):
    return PairedStackData(*blob_pairs(40, 16), config)


@pytest.fixture(scope="module")
def pm_run(tmp_path_factory):
    """A tiny run with its sr3-pm post-processor (3 draws, 5 steps, 12 particles)."""
    run = tmp_path_factory.mktemp("pm") / "run"
    config = tiny_config(steps=4, val_every=100)
    train(config, run, _data(config), progress=False)
    metrics = train_pm_postprocessor(run, _data(config), draws=3, particles=12, steps=5,
                                     progress=False)
    return run, metrics


def test_recipe_is_the_regression_u_nets():
    config = tiny_config(steps=4, val_every=100)
    recipe = pm_recipe(config, 7, "ddim", draws=3)
    assert (recipe.steps, recipe.batch_size, recipe.lr) == (config.steps, config.batch_size,
                                                            config.lr)
    assert (recipe.draws, recipe.sampling_steps, recipe.sampler) == (3, 7, "ddim")
    assert (recipe.warmup_steps, recipe.ema_decay, recipe.grad_clip) == (
        config.warmup_steps, config.ema_decay, config.grad_clip)


def test_stored_in_the_checkpoint_with_its_settings(pm_run):
    run, metrics = pm_run
    state = ckpt.load_checkpoint(run)
    saved = state["pm_postprocess"]
    assert {k: saved[k] for k in ("draws", "sampling_steps", "sampler", "particles", "steps")} \
        == {"draws": 3, "sampling_steps": 2, "sampler": "ddpm", "particles": 12, "steps": 5}
    assert state.get("postprocess") is None  # the paper's is a separate entry
    refiner = load_denoiser(run).mean_refiner
    assert (refiner.draws, refiner.sampling_steps, refiner.sampler) == (3, 2, "ddpm")
    on_disk = json.loads((run / METRICS).read_text())
    assert on_disk["particles"] == 12 and on_disk["recipe"]["steps"] == 5
    for name in ("one_sample", "mean_of_draws", "sr3_pm"):
        assert on_disk[f"val_psnr_{name}"] == pytest.approx(metrics[f"val_psnr_{name}"])
    assert (run / MEANS_CACHE).is_file()
    assert on_disk["means_from_cache"] is False and on_disk["sampling_seconds"] > 0


def test_denoise_is_the_refined_mean_of_the_draws(pm_run):
    """The output is the refiner applied (self-ensembled) to the mean of its K samples, and
    its std is the spread of those samples; the refiner changes the mean."""
    from cryodiff.denoise import denoise_with

    run, _ = pm_run
    denoiser = load_denoiser(run)
    images = blob_pairs(5, 16, seed=7)[0]
    result = denoise_posterior_mean(denoiser, images, batch_size=15, seed=2)
    draws = denoise_with(denoiser, images, steps=2, sampler="ddpm", n_samples=3,
                         postprocess=False, batch_size=15, seed=2)
    net = denoiser.mean_refiner.net
    torch.testing.assert_close(result.mean, refine_views(net, denoiser, draws.mean, images,
                                                         True))
    torch.testing.assert_close(result.std, draws.std)
    assert not torch.allclose(result.mean, draws.mean)
    once = denoise_posterior_mean(denoiser, images, batch_size=15, seed=2, self_ensemble=False)
    torch.testing.assert_close(once.mean, refine_views(net, denoiser, draws.mean, images, False))
    assert not torch.equal(once.mean, result.mean)


def test_matched_scale_maps_back(pm_run):
    """Images in other grey levels give the same denoised particles in their own units."""
    run, _ = pm_run
    denoiser = load_denoiser(run)
    images = blob_pairs(3, 16, seed=9)[0]
    plain = denoise_posterior_mean(denoiser, images, match_scale=True, seed=1)
    scaled = denoise_posterior_mean(denoiser, 5.0 * images + 2.0, match_scale=True, seed=1)
    torch.testing.assert_close(scaled.mean, 5.0 * plain.mean + 2.0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scaled.std, 5.0 * plain.std, rtol=1e-4, atol=1e-4)


def test_means_cache_is_reused_and_keyed(pm_run, tmp_path, monkeypatch):
    run, _ = pm_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = tiny_config(steps=4, val_every=100)
    import cryodiff.training.pm_postprocess as pm
    calls = []
    original = pm.mean_of_draws
    monkeypatch.setattr(pm, "mean_of_draws", lambda *a, **k: calls.append(1) or original(*a, **k))
    metrics = train_pm_postprocessor(copy, _data(config), draws=3, particles=12, steps=2,
                                     progress=False)
    assert calls == [] and metrics["means_from_cache"]  # same weights, particles, draws
    assert metrics["sampling_seconds"] == 0.0
    train_pm_postprocessor(copy, _data(config), draws=2, particles=12, steps=2, progress=False)
    assert calls == [1]  # other draws: drawn again
    (copy / MEANS_CACHE).write_bytes(b"not a torch file")
    train_pm_postprocessor(copy, _data(config), draws=2, particles=12, steps=2, progress=False)
    assert calls == [1, 1]  # unreadable cache: drawn again, never trusted
    assert load_denoiser(copy).mean_refiner.draws == 2
    # Other weights at the same step (a network retrained in the same folder): drawn again.
    state = ckpt.load_checkpoint(copy)
    state["ema"] = {k: v + 0.01 if v.is_floating_point() else v
                    for k, v in state["ema"].items()}
    ckpt.save_checkpoint(state.pop("path"), {k: v for k, v in state.items()
                                             if k not in ("format", "cryodiff_version")})
    train_pm_postprocessor(copy, _data(config), draws=2, particles=12, steps=2, progress=False)
    assert calls == [1, 1, 1]


def test_resuming_training_drops_the_stale_refiner(pm_run, tmp_path, capsys):
    """More training steps make a new checkpoint without the refiner of the old weights:
    sr3-pm then asks for a new one instead of refining with a stale network."""
    run, _ = pm_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = tiny_config(steps=5, val_every=100)
    train(config, copy, _data(config), resume=True, progress=False)
    assert load_denoiser(copy).step == 5 and load_denoiser(copy).mean_refiner is None
    write_stack(tmp_path / "in.mrcs", blob_pairs(2, 16, seed=5)[0], 2.0)
    assert cli(["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(copy), "--out",
                str(tmp_path / "o.mrcs"), "--method", "sr3-pm"]) == 2
    assert "no sr3-pm post-processor" in capsys.readouterr().err


def test_damaged_entry_is_one_line_error(pm_run, tmp_path):
    run, _ = pm_run
    state = ckpt.load_checkpoint(run)
    state = {k: v for k, v in state.items() if k not in ("format", "cryodiff_version", "path")}
    bad = tmp_path / "bad.pt"
    for damage in ({"draws": 0}, {"sampler": "euler"}, {"steps": True},
                   {"weights": {"w": torch.tensor([float("nan")])}}):
        ckpt.save_checkpoint(bad, state | {"pm_postprocess": state["pm_postprocess"] | damage})
        with pytest.raises(CryodiffError, match="pm_postprocess") as error:
            ckpt.load_checkpoint(bad)
        assert str(bad) in str(error.value) and "\n" not in str(error.value)
    ckpt.save_checkpoint(bad, state | {"pm_postprocess": state["pm_postprocess"] | {
        "weights": {"w": torch.zeros(1)}}})
    with pytest.raises(CryodiffError, match="sr3-pm post-processor weights do not fit"):
        load_denoiser(bad)


def test_cli_denoise_methods_and_errors(pm_run, tmp_path, capsys):
    run, _ = pm_run
    write_stack(tmp_path / "in.mrcs", blob_pairs(3, 16, seed=5)[0], 2.0)
    out = tmp_path / "out.mrcs"
    base = ["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(run), "--out", str(out)]
    assert cli(base + ["--method", "sr3-pm", "--std"]) == 0
    assert "sr3-pm: mean of 3 ddpm samples of 2 steps, refined" in capsys.readouterr().out
    assert read_stack(out).shape == (3, 16, 16)
    assert read_stack(tmp_path / "out_std.mrcs").shape == (3, 16, 16)
    assert cli(base[:-1] + [str(tmp_path / "once.mrcs"), "--method", "sr3-pm",
                            "--no-self-ensemble"]) == 0
    denoiser = load_denoiser(run)
    images = torch.as_tensor(read_stack(tmp_path / "in.mrcs")).float()
    for name, ensemble in (("out.mrcs", True), ("once.mrcs", False)):
        expected = denoise_posterior_mean(denoiser, images, self_ensemble=ensemble,
                                          match_scale=True)  # the CLI's defaults
        torch.testing.assert_close(torch.as_tensor(read_stack(tmp_path / name)).float(),
                                   expected.mean, rtol=1e-5, atol=1e-5)
    capsys.readouterr()
    for extra, message in ((["--method", "sr3-pm", "--samples", "4"], "averages the 3 samples"),
                           (["--method", "sr3+pp"], "no post-processor for sr3+pp"),
                           (["--method", "sr3-pm", "--no-postprocess"], "contradicts"),
                           (["--std"], "--std is for --method sr3-pm"),
                           (["--no-self-ensemble"], "is for --method sr3-pm, x0, x0ft and pm+x0"),
                           (["--method", "pm+x0"], "pm+x0 needs a v-predicting model"),
                           (["--method", "sr3-pm", "--std", "--sigma-scale", "2"],
                            "not calibrated"),
                           (["--sigma-floor", "0.1"], "recalibrate the std map")):
        assert cli(base[:-1] + [str(tmp_path / "other.mrcs")] + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "other.mrcs").exists()


def test_std_of_a_single_draw_is_one_line_error(pm_run, tmp_path, capsys):
    run, _ = pm_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = tiny_config(steps=4, val_every=100)
    train_pm_postprocessor(copy, _data(config), draws=1, particles=12, steps=2, progress=False)
    write_stack(tmp_path / "in.mrcs", blob_pairs(2, 16, seed=5)[0], 2.0)
    base = ["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(copy), "--method",
            "sr3-pm"]
    assert cli(base + ["--out", str(tmp_path / "a.mrcs"), "--std"]) == 2
    err = capsys.readouterr().err
    assert "no spread to write" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.mrcs").exists()
    assert cli(base + ["--out", str(tmp_path / "b.mrcs")]) == 0


def test_cli_train_pm_options_need_pm_postprocess(tmp_path, capsys):
    assert cli(["train", "--map", "phantom", "--out", str(tmp_path / "r"), "--pm-draws",
                "8", "--pm-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "--pm-draws, --pm-steps set the sr3-pm post-processor" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_cli_denoise_sr3_pm_without_refiner_is_one_line_error(tmp_path, capsys):
    config = tiny_config(steps=1, val_every=100)
    run = tmp_path / "run"
    train(config, run, _data(config), progress=False)
    write_stack(tmp_path / "in.mrcs", blob_pairs(2, 16, seed=5)[0], 2.0)
    assert cli(["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(run), "--out",
                str(tmp_path / "o.mrcs"), "--method", "sr3-pm"]) == 2
    err = capsys.readouterr().err
    assert "no sr3-pm post-processor" in err and "--pm-postprocess" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_train_pm_postprocess_on_a_finished_run(tmp_path, capsys):
    """`cryodiff train --resume --pm-postprocess` adds sr3-pm to a finished run, keeping the
    paper's post-processor; a later `--postprocess` keeps sr3-pm's."""
    from cryodiff.training.postprocess import train_postprocessor

    noisy, clean = blob_pairs(40, 16)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_stack(data_dir / "particles.mrcs", noisy, 2.0)
    write_stack(data_dir / "clean_ctf.mrcs", clean, 2.0)
    config = tiny_config(steps=3, val_every=100)
    run = tmp_path / "run"
    train(config, run, _data(config), progress=False)
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    train_postprocessor(run, PairedStackData.from_folder(data_dir, config), progress=False)
    assert cli(["train", "--data", str(data_dir), "--out", str(run), "--resume",
                "--pm-postprocess", "--pm-draws", "2", "--pm-steps", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "sr3-pm post-processor stored" in out and "validation PSNR: one sample" in out
    denoiser = load_denoiser(run)
    assert denoiser.postprocessor is not None and denoiser.mean_refiner.draws == 2
    assert json.loads((run / METRICS).read_text())["particles"] == len(
        PairedStackData.from_folder(data_dir, config))
    train_postprocessor(run, PairedStackData.from_folder(data_dir, config), progress=False)
    assert load_denoiser(run).mean_refiner is not None


def test_cli_denoise_pm_x0_is_the_mean_of_sr3_pm_and_x0(tmp_path, capsys):
    """`cryodiff denoise --method pm+x0` (the benchmark's sr3v-pm+x0) on a v-run with its sr3-pm
    post-processor: the pixelwise mean of the sr3-pm and x0 outputs, the x̂₀ drawn from its
    own seed stream; its refusals are one line each."""
    from cryodiff.denoise import PM_X0_SEED_OFFSET, denoise_one_pass, denoise_pm_x0
    from cryodiff.training.config import with_overrides

    run = tmp_path / "run"
    config = with_overrides(tiny_config(steps=4, val_every=100), prediction="v")
    train(config, run, _data(config), progress=False)
    base = ["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(run)]
    write_stack(tmp_path / "in.mrcs", blob_pairs(3, 16, seed=5)[0], 2.0)
    assert cli(base + ["--out", str(tmp_path / "none.mrcs"), "--method", "pm+x0"]) == 2
    assert "no sr3-pm post-processor" in capsys.readouterr().err
    train_pm_postprocessor(run, _data(config), draws=2, particles=8, steps=3, progress=False)
    out = tmp_path / "out.mrcs"
    assert cli(base + ["--out", str(out), "--method", "pm+x0", "--seed", "4"]) == 0
    assert "pm+x0: sr3-pm (mean of 2 ddpm samples of 2 steps, refined) averaged with x0" \
        in capsys.readouterr().out
    denoiser = load_denoiser(run)
    images = torch.as_tensor(read_stack(tmp_path / "in.mrcs")).float()
    pm = denoise_posterior_mean(denoiser, images, seed=4, match_scale=True)
    x0 = denoise_one_pass(denoiser, images, seed=4 + PM_X0_SEED_OFFSET, match_scale=True)
    assert (pm.mean - x0.mean).abs().max() > 1e-3  # two different estimates
    torch.testing.assert_close(torch.as_tensor(read_stack(out)).float(),
                               (pm.mean + x0.mean) / 2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(denoise_pm_x0(denoiser, images, seed=4, match_scale=True).mean,
                               (pm.mean + x0.mean) / 2)
    assert not (tmp_path / "out_std.mrcs").exists()
    for extra, message in ((["--samples", "2"], "pm+x0 averages the 2 samples"),
                           (["--std"], "--std is for --method sr3-pm"),
                           (["--sigma-scale", "2"], "recalibrate the std map")):
        assert cli(base + ["--out", str(tmp_path / "other.mrcs"), "--method", "pm+x0",
                           *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "other.mrcs").exists()
    assert cli(base + ["--out", str(tmp_path / "once.mrcs"), "--method", "pm+x0",
                       "--no-self-ensemble", "--steps", "2"]) == 0
