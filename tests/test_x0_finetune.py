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
        methods=("supervised-large", "supervised-large-2x", "sr3", "sr3-x0ft"), methods_3d=(),
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
    # its equal-size, equal-budget peer: SR3's network shape, twice the steps
    large, large_2x = first["supervised-large"], first["supervised-large-2x"]
    assert large_2x.status == "ok" and "6 steps × " in large_2x.note
    assert "3 steps × " in large.note
    assert large.note.split(" M parameters")[0].rsplit(" ", 1)[-1] == \
        large_2x.note.split(" M parameters")[0].rsplit(" ", 1)[-1]
    # an ε run says why it has no such row
    eps = dataclasses.replace(config, sr3_prediction="eps", methods=("sr3", "sr3-x0ft"))
    rows = {o.method: o for o in bench_run.run_condition(
        condition, eps, tmp_path / "eps", progress=False, log=lambda _: None).outputs}
    assert rows["sr3-x0ft_1"].status == "skipped" and "v-predicting" in rows["sr3-x0ft_1"].note


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
    assert cli(["train", "--data", str(data_dir), "--out", str(run), "--x0-steps", "3"]) == 2
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
