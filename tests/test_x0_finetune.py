"""sr3-x0ft: a v-SR3's one-pass x̂₀ fine-tuned at the noisiest level (issue 16)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cryodiff.errors import CryodiffError


@pytest.fixture(scope="module")
def v_denoiser(tmp_path_factory):
    """A v-predicting SR3 trained briefly on blobs: its one-pass x̂₀ is still poor."""
    from cryodiff.denoise import load_denoiser
    from cryodiff.training.data import PairedStackData
    from cryodiff.training.loop import train
    from training_helpers import blob_pairs, tiny_config

    config = tiny_config(steps=20, log_every=20, val_every=1000, checkpoint_every=1000,
                         lr=2e-3, batch_size=8)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                   prediction="v"))
    run = tmp_path_factory.mktemp("v") / "run"
    train(config, run, PairedStackData(*blob_pairs(200, 16), config), progress=False)
    return load_denoiser(run, torch.device("cpu"))


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean())


def test_fine_tuning_improves_the_one_pass_x0_and_leaves_sr3_alone(v_denoiser):
    from cryodiff.baselines.regression import RegressionRecipe
    from cryodiff.denoise import one_pass_x0
    from cryodiff.training.x0_finetune import finetune_x0
    from training_helpers import blob_pairs

    before = {k: v.clone() for k, v in v_denoiser.model.state_dict().items()}
    noisy, clean = blob_pairs(200, 16)
    recipe = RegressionRecipe(steps=80, batch_size=16, lr=2e-3, warmup_steps=5, grad_clip=1.0,
                              ema_decay=0.9, seed=3)
    tuned = finetune_x0(v_denoiser, noisy, clean, recipe)
    assert not tuned.training and not any(p.requires_grad for p in tuned.parameters())
    for key, value in v_denoiser.model.state_dict().items():  # SR3 itself is untouched
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    # held-out particles: the fine-tuned readout (through the same one_pass_x0 the benchmark
    # and `denoise` use, so its normalisation and level are the ones it was trained at)
    test_noisy, test_clean = blob_pairs(64, 16, seed=9)
    original = one_pass_x0(v_denoiser, test_noisy, seed=1)
    refined = one_pass_x0(dataclasses.replace(v_denoiser, model=tuned), test_noisy, seed=1)
    assert _mse(refined, test_clean) < 0.7 * _mse(original, test_clean)
    # the same recipe and seed give the same network
    again = finetune_x0(v_denoiser, noisy, clean, recipe)
    for key, value in tuned.state_dict().items():
        torch.testing.assert_close(value, again.state_dict()[key])


def test_fine_tuning_refuses_an_eps_model(v_denoiser):
    from cryodiff.baselines.regression import RegressionRecipe
    from cryodiff.training.x0_finetune import finetune_x0

    eps = dataclasses.replace(v_denoiser, config=dataclasses.replace(
        v_denoiser.config, model=dataclasses.replace(v_denoiser.config.model,
                                                     prediction="eps")))
    noisy = torch.zeros(4, 16, 16)
    with pytest.raises(CryodiffError, match="v-predicting"):
        finetune_x0(eps, noisy, noisy, RegressionRecipe(steps=1))


def test_the_recipe_is_the_regression_unets_with_l2():
    from cryodiff.baselines.regression import RegressionRecipe
    from cryodiff.training.config import get_preset, with_overrides
    from cryodiff.training.x0_finetune import x0ft_recipe

    train = with_overrides(get_preset("cpu-small"), seed=4)
    assert x0ft_recipe(train) == RegressionRecipe.from_train_config(train, "l2")
    assert x0ft_recipe(train).steps == train.steps and x0ft_recipe(train).seed == 4


def test_the_ssim_loss_is_one_minus_the_metric_in_raw_units():
    from cryodiff.baselines.regression import RegressionRecipe, fit_image_to_image, ssim_loss
    from cryodiff.metrics import ssim

    generator = torch.Generator().manual_seed(0)
    target = torch.randn(3, 16, 16, generator=generator)
    prediction = (target + 0.3 * torch.randn(3, 16, 16, generator=generator)).requires_grad_()
    loss = ssim_loss(prediction, target)
    torch.testing.assert_close(loss, 1 - ssim(prediction, target).mean())
    loss.backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0
    # taken after to_raw: SSIM's luminance term sees the offset, so the units matter
    shifted = ssim_loss(prediction, target, lambda x: x + 5.0)
    torch.testing.assert_close(shifted, 1 - ssim(prediction + 5.0, target + 5.0).mean())
    assert abs(float(shifted.detach()) - float(loss.detach())) > 1e-3
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    with pytest.raises(CryodiffError, match="ssim_weight"):
        fit_image_to_image(net, target, target, RegressionRecipe(steps=1), ssim_weight=-1.0)


def test_a_regression_unets_ssim_stage(monkeypatch):
    """The stage trains a copy (the fitted denoiser is untouched), takes SSIM in the images'
    units, weighs it against the squared error as SR3's stage does (SR3's targets are
    standardised by their own std, these by the noisy images': the weight is scaled by the
    standardised targets' variance), runs a tenth of the budget's steps and round-trips
    through state()/load_state()."""
    from cryodiff.baselines import regression
    from cryodiff.baselines.base import DenoisingData
    from cryodiff.baselines.supervised import SupervisedUNet
    from training_helpers import blob_pairs

    noisy, clean = blob_pairs(64, 16)
    data = DenoisingData(noisy=noisy, clean_ctf=clean)
    fitted = SupervisedUNet(steps=20, batch_size=8, seed=1).fit(data)
    before = {k: v.clone() for k, v in fitted.model.state_dict().items()}
    seen = {}
    real_fit = regression.fit_image_to_image

    def spy(model, inputs, targets, recipe, **options):
        seen.update(targets=targets, recipe=recipe, **options)
        return real_fit(model, inputs, targets, recipe, **options)

    monkeypatch.setattr(regression, "fit_image_to_image", spy)
    staged = fitted.ssim_stage(data, weight=0.3, budget_steps=40)
    assert seen["recipe"].steps == 4 and len(staged.losses) == 20 + 4
    assert len(fitted.losses) == 20 and staged.recipe == fitted.recipe
    torch.testing.assert_close(seen["to_raw"](seen["targets"]), clean, rtol=1e-5, atol=1e-5)
    raw_variance = float(clean.var()) / fitted._scale ** 2
    assert seen["ssim_weight"] == pytest.approx(0.3 * raw_variance, rel=1e-4)
    assert seen["ssim_weight"] < 0.3 / 2  # blobs: the clean images vary less than the noisy
    for key, value in fitted.model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert any((value - before[key]).abs().max() > 0
               for key, value in staged.model.state_dict().items())
    reloaded = SupervisedUNet().load_state(staged.state())
    torch.testing.assert_close(reloaded.denoise(noisy[:4]), staged.denoise(noisy[:4]))
    with pytest.raises(RuntimeError, match="before fit"):
        SupervisedUNet().ssim_stage(data)


def test_the_ssim_stage_recipe():
    from cryodiff.training.config import get_preset
    from cryodiff.training.x0_finetune import ssim_stage_recipe, x0ft_recipe

    recipe = x0ft_recipe(get_preset("cpu-small"))
    stage = ssim_stage_recipe(recipe)
    assert (stage.steps, stage.lr, stage.warmup_steps, stage.seed) == (
        recipe.steps // 10, recipe.lr / 5, 0, recipe.seed + 1)
    assert (stage.batch_size, stage.ema_decay, stage.grad_clip, stage.loss, stage.amp) == (
        recipe.batch_size, recipe.ema_decay, recipe.grad_clip, "l2", recipe.amp)
    assert ssim_stage_recipe(dataclasses.replace(recipe, steps=3)).steps == 1
    assert ssim_stage_recipe(dataclasses.replace(recipe, steps=8000), 4000).steps == 400


def test_the_ssim_stage_raises_ssim_over_the_same_steps_without_it(v_denoiser):
    """From the same fine-tuned network, seed and steps, the stage with the SSIM term ends
    with a higher SSIM on held-out particles than the same stage with L2 alone."""
    from cryodiff.baselines.regression import RegressionRecipe
    from cryodiff.denoise import one_pass_x0
    from cryodiff.metrics import ssim
    from cryodiff.training.x0_finetune import finetune_x0
    from training_helpers import blob_pairs

    noisy, clean = blob_pairs(200, 16)
    recipe = RegressionRecipe(steps=80, batch_size=16, lr=2e-3, warmup_steps=5, grad_clip=1.0,
                              ema_decay=0.9, seed=3)
    tuned = finetune_x0(v_denoiser, noisy, clean, recipe)
    stage = dataclasses.replace(recipe, steps=40, lr=4e-4, warmup_steps=0, seed=4)
    test_noisy, test_clean = blob_pairs(64, 16, seed=9)
    scores = {}
    for weight in (0.0, 1.0):
        net = finetune_x0(v_denoiser, noisy, clean, stage, ssim_weight=weight, start=tuned)
        images = one_pass_x0(dataclasses.replace(v_denoiser, model=net), test_noisy, seed=1)
        scores[weight] = float(ssim(images, test_clean).mean())
    assert scores[1.0] > scores[0.0] + 0.005, scores  # measured: 0.874 → 0.885


@pytest.mark.slow
def test_the_benchmark_row_its_cache_and_its_equal_budget_peer(tmp_path):
    from cryodiff.benchmark import run as bench_run
    from cryodiff.benchmark.conditions import make_condition
    from cryodiff.benchmark.config import get_preset
    from cryodiff.denoise import load_denoiser, one_pass_x0
    from cryodiff.self_ensemble import self_ensemble

    config = dataclasses.replace(
        get_preset("ci"), n_train=32, n_val=8, n_test_2d=8, n_test_slow=4, n_test_3d=24,
        train_steps=3, post_train_steps=3, sr3_steps=(1,), sr3_fast_steps=1,
        slow_step_threshold=1, posterior_samples=1,
        methods=("supervised-large", "supervised-large-2x", "supervised-2x-ssim", "sr3",
                 "sr3-x0ft", "sr3-x0ft-ssim"),
        methods_3d=(),
        pose_search=False, sr3_prediction="v")
    condition = make_condition("phantom", 0.1, config)
    work = tmp_path / "work"
    first = {o.method: o for o in bench_run.run_condition(
        condition, config, work, progress=False, log=lambda _: None).outputs}
    row = first["sr3v-x0ft_1"]
    assert row.status == "ok" and row.family == "sr3-x0ft"
    assert "3 steps × " in row.note and "self-ensemble" in row.note
    assert row.fit_seconds > first["sr3v_1"].fit_seconds  # SR3's time plus the fine-tuning's
    cache = work / "sr3v_phantom_snr0.1_seed0" / "x0ft.pt"
    assert cache.is_file()
    # the row is the fine-tuned network's one-pass x̂₀ through the self-ensemble
    from cryodiff.models.unet import SR3UNet

    denoiser = load_denoiser(work / "sr3v_phantom_snr0.1_seed0", torch.device("cpu"))
    saved = torch.load(cache, weights_only=True)
    net = SR3UNet(denoiser.config.model)
    net.load_state_dict(saved["state"])
    tuned = dataclasses.replace(denoiser, model=net.eval())
    expected = self_ensemble(lambda y: one_pass_x0(tuned, y, seed=0),
                             condition.test.noisy[:config.n_test_2d])
    torch.testing.assert_close(row.images, expected)
    # a second run reuses the fine-tuned network and gives the same images
    again = {o.method: o for o in bench_run.run_condition(
        condition, config, work, progress=False, log=lambda _: None).outputs}
    assert "reused" in again["sr3v-x0ft_1"].note
    torch.testing.assert_close(again["sr3v-x0ft_1"].images, row.images)
    # the SSIM stage: on top of the same fine-tuned network (reused, not trained twice), one
    # more step here (a tenth of 3, at least one), its own cache, reused by the second run
    stage = first["sr3v-x0ft-ssim_1"]
    assert stage.status == "ok" and stage.family == "sr3-x0ft-ssim"
    assert "1 steps × " in stage.note and "(1 − SSIM)" in stage.note
    assert (work / "sr3v_phantom_snr0.1_seed0" / "x0ft_ssim.pt").is_file()
    assert stage.fit_seconds > row.fit_seconds
    assert (stage.images - row.images).abs().max() > 1e-6
    assert "reused" in again["sr3v-x0ft-ssim_1"].note
    torch.testing.assert_close(again["sr3v-x0ft-ssim_1"].images, stage.images)
    # the same stage offered to the supervised U-Net: on top of supervised-2x's own network
    # (trained and cached as that row's), its own cache, reused by the second run
    peer = first["supervised-2x-ssim"]
    assert peer.status == "ok" and "6 steps × " in peer.note
    assert "SSIM stage: 1 steps with L2 + 0.3 · (1 − SSIM)" in peer.note
    baselines = work / "baselines" / "seed0"
    assert (baselines / "phantom_snr0.1_supervised-2x.pt").is_file()
    assert (baselines / "phantom_snr0.1_supervised-2x-ssim.pt").is_file()
    assert "reused" in again["supervised-2x-ssim"].note
    torch.testing.assert_close(again["supervised-2x-ssim"].images, peer.images)
    # its equal-size, equal-budget peer: SR3's network shape, twice the steps
    large, large_2x = first["supervised-large"], first["supervised-large-2x"]
    assert large_2x.status == "ok" and "6 steps × " in large_2x.note
    assert "3 steps × " in large.note
    assert large.note.split(" M parameters")[0].rsplit(" ", 1)[-1] == \
        large_2x.note.split(" M parameters")[0].rsplit(" ", 1)[-1]
    # an ε run says why it has no such row
    eps = dataclasses.replace(config, sr3_prediction="eps",
                              methods=("sr3", "sr3-x0ft", "sr3-x0ft-ssim"))
    rows = {o.method: o for o in bench_run.run_condition(
        condition, eps, tmp_path / "eps", progress=False, log=lambda _: None).outputs}
    for name in ("sr3-x0ft_1", "sr3-x0ft-ssim_1"):
        assert rows[name].status == "skipped" and "v-predicting" in rows[name].note
    with pytest.raises(CryodiffError, match="sr3-x0ft-ssim is scored in 2D only"):
        dataclasses.replace(config, methods_3d=("sr3-x0ft-ssim",)).validate()


@pytest.mark.slow
def test_cli_train_x0_finetune_and_denoise_x0ft(tmp_path, capsys):
    """`cryodiff train --resume --x0-finetune` stores the fine-tuned network in the run's
    checkpoint; `cryodiff denoise --method x0ft` applies it; refusals are one line each."""
    import json

    from cryodiff.cli import main as cli
    from cryodiff.denoise import denoise_one_pass, load_denoiser
    from cryodiff.io.mrc import read_stack, write_stack
    from cryodiff.training import checkpoint as ckpt
    from cryodiff.training.config import with_overrides
    from cryodiff.training.data import PairedStackData
    from cryodiff.training.loop import train
    from cryodiff.training.x0_finetune import METRICS
    from training_helpers import blob_pairs, tiny_config

    noisy, clean = blob_pairs(40, 16)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_stack(data_dir / "particles.mrcs", noisy, 2.0)
    write_stack(data_dir / "clean_ctf.mrcs", clean, 2.0)
    config = with_overrides(tiny_config(steps=4, val_every=100), prediction="v")
    run = tmp_path / "run"
    train(config, run, PairedStackData.from_folder(data_dir, config), progress=False)
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    base = ["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(run)]
    write_stack(tmp_path / "in.mrcs", blob_pairs(3, 16, seed=5)[0], 2.0)
    assert cli(base + ["--out", str(tmp_path / "none.mrcs"), "--method", "x0ft"]) == 2
    err = capsys.readouterr().err
    assert "no fine-tuned x̂₀ network" in err and "--x0-finetune" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "none.mrcs").exists()
    for flags in (["--x0-steps", "3"], ["--x0-ssim"]):
        assert cli(["train", "--data", str(data_dir), "--out", str(run), *flags]) == 2
        assert "add --x0-finetune" in capsys.readouterr().err
    assert cli(["train", "--data", str(data_dir), "--out", str(run), "--resume",
                "--x0-finetune", "--x0-steps", "3", "--x0-particles", "16",
                "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fine-tuned x̂₀ network stored" in out and "validation PSNR: x0 " in out
    saved = ckpt.load_checkpoint(run)["x0_finetune"]
    assert (saved["particles"], saved["steps"]) == (16, 3)
    metrics = json.loads((run / METRICS).read_text())
    assert metrics["recipe"]["steps"] == 3 and metrics["recipe"]["loss"] == "l2"
    assert metrics["ssim_stage"] is None
    # with the SSIM stage: a tenth more steps (at least one), stored in the same entry
    assert cli(["train", "--data", str(data_dir), "--out", str(run), "--resume",
                "--x0-finetune", "--x0-steps", "10", "--x0-particles", "16", "--x0-ssim",
                "--no-progress"]) == 0
    assert "fine-tuned x̂₀ network stored" in capsys.readouterr().out
    saved = ckpt.load_checkpoint(run)["x0_finetune"]
    assert (saved["particles"], saved["steps"]) == (16, 11)
    metrics = json.loads((run / METRICS).read_text())
    assert (metrics["ssim_stage"]["steps"], metrics["ssim_stage"]["ssim_weight"]) == (1, 0.3)
    denoiser = load_denoiser(run)
    assert denoiser.x0_model is not None
    result = tmp_path / "x0ft.mrcs"
    assert cli(base + ["--out", str(result), "--method", "x0ft", "--seed", "2",
                       "--keep-scale"]) == 0
    assert "x0ft: the fine-tuned network" in capsys.readouterr().out
    images = torch.as_tensor(read_stack(tmp_path / "in.mrcs")).float()
    expected = denoise_one_pass(denoiser, images, seed=2, finetuned=True).mean
    torch.testing.assert_close(torch.as_tensor(read_stack(result)).float(), expected,
                               rtol=1e-5, atol=1e-5)
    plain = denoise_one_pass(denoiser, images, seed=2).mean
    assert (plain - expected).abs().max() > 1e-4  # another network than x0's
    for extra in (["--steps", "3"], ["--samples", "2"], ["--std"]):
        assert cli(base + ["--out", str(tmp_path / "bad.mrcs"), "--method", "x0ft",
                           *extra]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.mrcs").exists()
    # an ε run is refused before anything is trained
    eps_run = tmp_path / "eps"
    assert cli(["train", "--data", str(data_dir), "--out", str(eps_run), "--x0-finetune",
                "--steps", "2", "--no-progress"]) == 2
    assert "needs a v-predicting model" in capsys.readouterr().err
    assert not eps_run.exists()
    # a damaged entry is a one-line error naming the file
    state = ckpt.load_checkpoint(run)
    file = ckpt.resolve_checkpoint(run)
    broken = {k: v for k, v in state.items() if k not in ("format", "cryodiff_version", "path")}
    broken["x0_finetune"] = {**state["x0_finetune"], "steps": 0}
    ckpt.save_checkpoint(file, broken)
    with pytest.raises(CryodiffError, match="x0_finetune entry is damaged"):
        load_denoiser(run)


def test_more_draws_average_the_readouts_of_successive_starting_noises(v_denoiser):
    from cryodiff.denoise import denoise_one_pass, one_pass_x0
    from cryodiff.diffusion import y0_from_v
    from cryodiff.training.data import generator_for
    from training_helpers import blob_pairs

    noisy, _ = blob_pairs(6, 16, seed=11)
    norm = v_denoiser.normalisation
    condition = norm.condition(noisy.float())[:, None]
    level = condition.new_full((len(condition),), v_denoiser.schedule.noisiest_level)
    generator = generator_for(3, 0)  # seed 3, the first (only) batch
    passes = []
    with torch.no_grad():
        for _ in range(3):
            y_t = torch.randn(condition.shape, generator=generator)
            passes.append(norm.denormalise(
                y0_from_v(y_t, v_denoiser.model(y_t, condition, level, raw=True), level)[:, 0]))
    torch.testing.assert_close(one_pass_x0(v_denoiser, noisy, seed=3, draws=3),
                               torch.stack(passes).mean(0))
    # one draw is the readout as it always was (the first of the three)
    torch.testing.assert_close(one_pass_x0(v_denoiser, noisy, seed=3), passes[0])
    torch.testing.assert_close(
        denoise_one_pass(v_denoiser, noisy, seed=3, draws=3, self_ensemble=False).mean,
        one_pass_x0(v_denoiser, noisy, seed=3, draws=3))
    with pytest.raises(CryodiffError, match="draws must be at least 1"):
        one_pass_x0(v_denoiser, noisy, draws=0)


def test_more_draws_shrink_what_the_readout_takes_from_its_starting_noise(v_denoiser):
    from cryodiff.denoise import one_pass_x0
    from training_helpers import blob_pairs

    noisy, _ = blob_pairs(32, 16, seed=12)

    def seed_spread(draws: int) -> float:  # two starting-noise seeds, same particles
        return _mse(one_pass_x0(v_denoiser, noisy, seed=0, draws=draws),
                    one_pass_x0(v_denoiser, noisy, seed=1, draws=draws))

    one, sixteen = seed_spread(1), seed_spread(16)
    assert one > 0  # the briefly trained network still listens to y_T
    # independent draws: the spread of a 16-draw mean is 1/16 of one draw's (up to sampling)
    assert sixteen < one / 8
