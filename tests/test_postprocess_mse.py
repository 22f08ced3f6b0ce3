"""The L2 + EMA post-processor and the one-pass x̂₀ read-out (cryodiff.benchmark.sr3_mse)."""

from __future__ import annotations

import math

import pytest
import torch

from cryodiff.benchmark.sr3_mse import one_pass_x0
from cryodiff.denoise import load_denoiser
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
