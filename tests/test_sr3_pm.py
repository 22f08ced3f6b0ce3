"""``sr3-pm``: the mean of K SR3 draws refined by a post-processor trained on such means."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cryodiff.benchmark import get_preset
from cryodiff.benchmark import sr3_pm
from cryodiff.benchmark.conditions import make_condition
from cryodiff.benchmark.methods import run_sr3, train_config_for


@pytest.fixture(scope="module")
def setup():
    from cryodiff.denoise import Denoiser
    from cryodiff.diffusion import make_schedule
    from cryodiff.models.unet import SR3UNet
    from cryodiff.training.config import get_preset as train_preset
    from cryodiff.training.data import Normalisation

    config = dataclasses.replace(
        get_preset("ci"), n_train=12, n_val=8, n_test_2d=6, n_test_slow=3, n_test_3d=10,
        train_steps=3, sr3_steps=(1,), sr3_fast_steps=1, slow_step_threshold=2,
        posterior_samples=1, pm_draws=3, methods=("sr3", "sr3-pm"),
        methods_3d=("sr3", "sr3-pm"), training_seeds=(4,))
    condition = make_condition("phantom", 0.1, config)
    train = train_preset("ci")
    torch.manual_seed(0)
    denoiser = Denoiser(SR3UNet(train.model).eval(), None, Normalisation(0.1, 2.0, -0.1, 0.5),
                        make_schedule("linear", 2000), train, 0)
    return config, condition, denoiser, run_sr3(denoiser, condition, config, 7.0)


def test_the_recipe_is_the_regression_u_nets_with_k_draws(setup):
    from cryodiff.training.config import with_overrides

    config, condition, _, _ = setup
    # a preset whose post-processor budget differs from the U-Nets' in every field
    train = with_overrides(train_config_for(config, condition), post_lr=3e-5,
                           post_batch_size=5, post_train_steps=7)
    post = sr3_pm.pm_post_config(train, config)
    assert (post.steps, post.batch_size, post.lr) == (train.steps, train.batch_size, train.lr)
    assert (post.draws, post.sampling_steps, post.seed) == (3, 1, 4)
    assert (post.ema_decay, post.grad_clip, post.warmup_steps) == \
        (train.ema_decay, train.grad_clip, train.warmup_steps)


def test_mean_of_draws_averages_the_given_first_draw_with_fresh_ones(setup):
    from cryodiff.training.postprocess_mse import sampler_draws

    config, condition, denoiser, sr3_rows = setup
    post = sr3_pm.pm_post_config(train_config_for(config, condition), config)
    noisy = condition.test.noisy[:4]
    fresh = sampler_draws(denoiser, noisy, post, torch.device("cpu"))
    torch.testing.assert_close(sr3_pm.mean_of_draws(denoiser, noisy, post, torch.device("cpu")),
                               fresh.mean(0))
    first = torch.full_like(noisy, 3.0)  # raw units
    mixed = sr3_pm.mean_of_draws(denoiser, noisy, post, torch.device("cpu"), first)
    norm = denoiser.normalisation
    torch.testing.assert_close(mixed, (norm.target(first) + fresh[:2].sum(0)) / 3)


def test_the_row_trains_on_training_means_and_refines_the_test_mean(setup, tmp_path,
                                                                   monkeypatch):
    from cryodiff.self_ensemble import self_ensemble
    from cryodiff.training.postprocess_mse import refine

    config, condition, denoiser, sr3_rows = setup
    fitted = []
    real = sr3_pm.fit_mse_postprocessor

    def spy(den, samples, noisy, target, post, device):
        net = real(den, samples, noisy, target, post, device)
        fitted.append((samples, noisy, target, post, net))
        return net

    monkeypatch.setattr(sr3_pm, "fit_mse_postprocessor", spy)
    [row] = sr3_pm.run_sr3_pm(denoiser, condition, config, sr3_rows, cache_dir=tmp_path)
    assert row.method == "sr3-pm3_1" and row.family == "sr3-pm"
    samples, noisy, target, post, net = fitted[0]
    cpu = torch.device("cpu")
    torch.testing.assert_close(noisy, condition.train.noisy)
    torch.testing.assert_close(target, condition.train.clean_ctf)
    torch.testing.assert_close(samples[0], sr3_pm.mean_of_draws(denoiser, noisy, post, cpu))
    # the test particles' draws come from other seed streams than the training draws
    test_post = dataclasses.replace(post, seed=post.seed + sr3_pm.TEST_DRAW_SEED_OFFSET)
    same = condition.test.noisy[:len(noisy)]
    assert not torch.allclose(sr3_pm.mean_of_draws(denoiser, same, post, cpu),
                              sr3_pm.mean_of_draws(denoiser, same, test_post, cpu))
    # the 3D set, from the sr3_1 row's samples and two fresh draws, refined in 8 views
    sr3 = next(r for r in sr3_rows if r.method == "sr3_1")
    test_noisy = condition.test.noisy[:config.n_test_3d]
    mean = denoiser.normalisation.denormalise(
        sr3_pm.mean_of_draws(denoiser, test_noisy, test_post, cpu, sr3.images))
    torch.testing.assert_close(row.images, self_ensemble(
        lambda s, y: refine(net, denoiser, s, y), mean, test_noisy))
    assert row.fit_seconds > 7.0 and "self-ensemble" in row.note
    # a resumed run reuses the post-processor; another draw count trains a new one
    monkeypatch.setattr(sr3_pm, "fit_mse_postprocessor", None)  # calling it would fail
    [again] = sr3_pm.run_sr3_pm(denoiser, condition, config, sr3_rows, cache_dir=tmp_path)
    torch.testing.assert_close(again.images, row.images)
    assert "reused" in again.note and again.fit_seconds == row.fit_seconds
    with pytest.raises(TypeError):
        sr3_pm.run_sr3_pm(denoiser, condition, dataclasses.replace(config, pm_draws=2),
                          sr3_rows, cache_dir=tmp_path)
    # outside methods_3d it denoises the 2D set only
    monkeypatch.setattr(sr3_pm, "fit_mse_postprocessor", spy)
    [flat] = sr3_pm.run_sr3_pm(denoiser, condition,
                               dataclasses.replace(config, methods_3d=("sr3",)), sr3_rows)
    assert len(flat.images) == config.n_test_2d


def test_pm_draws_is_validated():
    from cryodiff.errors import CryodiffError

    with pytest.raises(CryodiffError, match="pm_draws"):
        dataclasses.replace(get_preset("ci"), pm_draws=0).validate()
