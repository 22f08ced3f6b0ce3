"""The L2 + EMA post-processor and the one-pass x̂₀ read-out (cryodiff.benchmark.sr3_mse)."""

from __future__ import annotations

import math

import pytest
import torch

from cryodiff.denoise import load_denoiser, one_pass_x0
from cryodiff.diffusion import predict_y0_from_eps
from cryodiff.models.postprocess import PostProcessUNet
from cryodiff.training.data import PairedStackData, generator_for
from cryodiff.training.loop import train
from cryodiff.training.postprocess_mse import MsePostConfig, sampler_draws, train_mse_postprocessor
from training_helpers import blob_pairs, tiny_config


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    run = tmp_path_factory.mktemp("mse") / "run"
    config = tiny_config(steps=3, val_every=100)
    train(config, run, PairedStackData(*blob_pairs(24, 16), config), progress=False)
    return load_denoiser(run)


def test_one_pass_x0_is_the_first_step_prediction_from_pure_noise(denoiser):
    noisy = blob_pairs(5, 16, seed=1)[0]
    got = one_pass_x0(denoiser, noisy, seed=3)
    norm = denoiser.normalisation
    condition = norm.condition(noisy)[:, None]
    y_T = torch.randn(condition.shape, generator=generator_for(3, 0))
    sqrt_gamma = math.sqrt(float(denoiser.schedule.gammas_exact[-1]))  # the noisiest level
    level = torch.full((5,), sqrt_gamma)
    eps = denoiser.model(y_T, condition, level)
    expected = norm.denormalise(predict_y0_from_eps(y_T, eps, level)[:, 0])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_sampler_draws_are_distinct_and_seeded(denoiser):
    noisy = blob_pairs(4, 16, seed=2)[0]
    config = MsePostConfig(draws=2, sampling_steps=2)
    draws = sampler_draws(denoiser, noisy, config, torch.device("cpu"))
    assert draws.shape == (2, 4, 16, 16)
    assert not torch.equal(draws[0], draws[1])
    torch.testing.assert_close(sampler_draws(denoiser, noisy, config, torch.device("cpu")), draws)


def test_mse_postprocessor_is_an_ema_of_the_trained_weights(denoiser):
    noisy, clean = blob_pairs(8, 16, seed=4)
    config = MsePostConfig(draws=1, sampling_steps=2, steps=4, batch_size=4, warmup_steps=2)
    net = train_mse_postprocessor(denoiser, noisy, clean, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        initial = PostProcessUNet(denoiser.config.postprocess)
    assert not net.training
    moved = [not torch.equal(a, b) for a, b in zip(net.parameters(), initial.parameters())]
    assert any(moved)
    out = net(torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16))
    assert out.shape == (2, 1, 16, 16)


def test_the_benchmark_recipe_comes_from_the_training_preset():
    from cryodiff.training.config import get_preset
    from cryodiff.training.postprocess_mse import mse_post_config

    train = get_preset("cpu-small")
    post = mse_post_config(train, 50, "ddim", seed=2)
    assert (post.sampling_steps, post.sampler, post.seed, post.draws) == (50, "ddim", 2, 1)
    assert (post.steps, post.batch_size, post.lr) == (
        train.post_train_steps, train.post_batch_size, train.post_lr)
    assert (post.weight_decay, post.warmup_steps, post.grad_clip, post.ema_decay, post.amp) == (
        train.weight_decay, train.warmup_steps, train.grad_clip, train.ema_decay, train.amp)
    assert mse_post_config(train, 10).seed == train.seed


def test_refine_applies_the_network_in_normalised_units(denoiser):
    from cryodiff.training.postprocess_mse import refine

    noisy, clean = blob_pairs(5, 16, seed=5)
    torch.manual_seed(1)
    net = PostProcessUNet(denoiser.config.postprocess).eval()
    norm = denoiser.normalisation
    with torch.no_grad():
        expected = norm.denormalise(net(norm.target(clean)[:, None],
                                        norm.condition(noisy)[:, None])[:, 0])
    torch.testing.assert_close(refine(net, denoiser, clean, noisy, batch_size=2), expected)


def test_sr3_mse_rows_refine_the_sr3_rows_own_samples(monkeypatch, tmp_path):
    """One post-processor per step count, trained on the training split with the preset's
    recipe and the training seed, applied to exactly the ``sr3_<steps>`` samples."""
    import dataclasses

    from cryodiff.benchmark import get_preset, sr3_mse
    from cryodiff.benchmark.conditions import make_condition
    from cryodiff.benchmark.methods import run_sr3, train_config_for
    from cryodiff.denoise import Denoiser
    from cryodiff.diffusion import make_schedule
    from cryodiff.models.unet import SR3UNet
    from cryodiff.training.config import get_preset as train_preset
    from cryodiff.training.data import Normalisation
    from cryodiff.self_ensemble import self_ensemble
    from cryodiff.training.postprocess_mse import refine

    config = dataclasses.replace(
        get_preset("ci"), n_train=12, n_val=8, n_test_2d=6, n_test_slow=3, n_test_3d=10,
        post_train_steps=2, sr3_steps=(1, 3), sr3_fast_steps=1, slow_step_threshold=2,
        posterior_samples=2, methods=("sr3", "sr3-mse"), methods_3d=("sr3",),
        training_seeds=(4,))
    condition = make_condition("phantom", 0.1, config)
    train = train_preset("ci")
    torch.manual_seed(0)
    denoiser = Denoiser(SR3UNet(train.model).eval(), None, Normalisation(0.0, 1.0, 0.0, 1.0),
                        make_schedule("linear", 2000), train, 0)
    trained = []
    real = sr3_mse.train_mse_postprocessor

    def spy(den, noisy, target, post, device):
        net = real(den, noisy, target, post, device)
        trained.append((noisy, target, post, net))
        return net

    monkeypatch.setattr(sr3_mse, "train_mse_postprocessor", spy)
    sr3_rows = run_sr3(denoiser, condition, config, 7.0)
    rows = sr3_mse.run_sr3_mse(denoiser, condition, config, sr3_rows, cache_dir=tmp_path)
    assert [r.method for r in rows] == ["sr3+pp-mse_1", "sr3+pp-mse_3"]
    assert {r.family for r in rows} == {"sr3-mse"}
    expected_recipe = train_config_for(config, condition)
    by_name = {r.method: r for r in sr3_rows}
    for row, (noisy, target, post, net), steps in zip(rows, trained, (1, 3)):
        torch.testing.assert_close(noisy, condition.train.noisy)
        torch.testing.assert_close(target, condition.train.clean_ctf)
        assert post.sampling_steps == steps and post.seed == 4
        assert post.steps == 2 and post.lr == expected_recipe.post_lr
        samples = by_name[f"sr3_{steps}"].images
        assert row.images.shape == samples.shape  # the 3D set for the fast step count
        noisy_test = condition.test.noisy[:len(samples)]
        # the post-processor runs through the dihedral self-ensemble (config.self_ensemble)
        torch.testing.assert_close(row.images, self_ensemble(
            lambda s, y: refine(net, denoiser, s, y), samples, noisy_test))
        assert row.fit_seconds > 7.0
    assert rows[0].images.shape[0] == config.n_test_3d and rows[1].images.shape[0] == 3
    # a resumed run reuses the saved post-processors; other settings train new ones
    monkeypatch.setattr(sr3_mse, "train_mse_postprocessor", None)  # calling it would fail
    again = sr3_mse.run_sr3_mse(denoiser, condition, config, sr3_rows, cache_dir=tmp_path)
    for first, second in zip(rows, again):
        torch.testing.assert_close(second.images, first.images)
        assert "reused" in second.note and second.fit_seconds == first.fit_seconds
    with pytest.raises(TypeError):
        sr3_mse.run_sr3_mse(denoiser, condition, dataclasses.replace(config, post_train_steps=3),
                            sr3_rows, cache_dir=tmp_path)
    # step counts above mse_post_max_steps get no post-processor (their sampling is costly)
    capped = sr3_mse.run_sr3_mse(denoiser, condition,
                                 dataclasses.replace(config, mse_post_max_steps=2), sr3_rows,
                                 cache_dir=tmp_path)
    assert [r.method for r in capped] == ["sr3+pp-mse_1"]
    # without the self-ensemble the post-processor is applied once
    single = sr3_mse.run_sr3_mse(denoiser, condition,
                                 dataclasses.replace(config, self_ensemble=False), sr3_rows,
                                 cache_dir=tmp_path)
    torch.testing.assert_close(single[0].images, refine(
        trained[0][3], denoiser, by_name["sr3_1"].images, condition.test.noisy[:config.n_test_3d]))
    assert "self-ensemble" in rows[0].note and "self-ensemble" not in single[0].note
