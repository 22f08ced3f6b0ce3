"""Noise schedules, re-spacing, the forward process and the training loss."""

from __future__ import annotations

import math

import pytest
import torch

from cryodiff.diffusion import (check_readout_fraction, cosine_schedule, diffusion_loss,
                                linear_schedule, make_schedule, predict_eps_from_y0,
                                predict_y0_from_eps, q_sample, respace, sample_noise_levels,
                                v_target, y0_from_v)
from cryodiff.errors import CryodiffError


@pytest.mark.parametrize("schedule", [linear_schedule(), cosine_schedule(1000),
                                      respace(linear_schedule(), 37)])
def test_schedule_identities(schedule):
    betas = schedule.betas.double()
    exact = schedule.gammas_exact
    assert exact.dtype == torch.float64
    torch.testing.assert_close(schedule.gammas.double(), torch.cumprod(1 - betas, 0),
                               rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(schedule.gammas, exact.float(), rtol=0, atol=0)
    torch.testing.assert_close(schedule.alphas, 1 - schedule.betas)
    torch.testing.assert_close(schedule.sqrt_gammas ** 2, schedule.gammas)
    torch.testing.assert_close(schedule.sqrt_gammas_prev ** 2, schedule.gammas_prev)
    torch.testing.assert_close(schedule.sqrt_one_minus_gammas.double() ** 2, 1 - exact,
                               rtol=1e-6, atol=0)
    assert schedule.gammas_prev[0] == 1
    torch.testing.assert_close(schedule.gammas_prev[1:], schedule.gammas[:-1])
    assert torch.all(schedule.gammas[1:] < schedule.gammas[:-1])
    assert torch.all((schedule.betas > 0) & (schedule.betas < 1))
    assert torch.all(schedule.timesteps[1:] > schedule.timesteps[:-1])


def test_linear_is_sr3():
    schedule = linear_schedule()
    assert schedule.n_steps == 2000
    assert schedule.betas[0].item() == pytest.approx(1e-6, rel=1e-4)
    assert schedule.betas[-1].item() == pytest.approx(1e-2, rel=1e-5)
    # γ̄_T = ∏(1 − β) with Σβ = 2000·(1e-6 + 1e-2)/2 ≈ 10.001: about e^-10
    log_gamma_T = torch.log1p(-torch.linspace(1e-6, 1e-2, 2000, dtype=torch.float64)).sum()
    assert schedule.gammas[-1].item() == pytest.approx(math.exp(log_gamma_T), rel=1e-4)
    # one minus γ̄ near 1 keeps its digits: 1 − γ̄_1 = β_1
    assert schedule.sqrt_one_minus_gammas[0].item() == pytest.approx(1e-3, rel=1e-6)


def test_cosine_endpoints():
    schedule = cosine_schedule(1000)
    s = 0.008
    expected = (math.cos((1 / 1000 + s) / (1 + s) * math.pi / 2) / math.cos(s / (1 + s) * math.pi / 2)) ** 2
    assert schedule.gammas[0].item() == pytest.approx(expected, rel=1e-6)
    assert schedule.gammas[-1].item() < 1e-6


@pytest.mark.parametrize("n_steps", [1, 2, 10, 50, 250, 1999])
def test_respace_keeps_gammas(n_steps):
    base = linear_schedule()
    spaced = respace(base, n_steps)
    assert spaced.n_steps == n_steps
    assert spaced.timesteps[-1] == 2000
    if n_steps > 1:
        assert spaced.timesteps[0] == 1
    torch.testing.assert_close(spaced.gammas_exact, base.gammas_exact[spaced.timesteps - 1],
                               rtol=0, atol=0)
    # consecutive kept γ̄ give β: γ̄_k = γ̄_{k'}·(1 − β_k)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), spaced.gammas_exact[:-1]])
    torch.testing.assert_close(1 - spaced.gammas_exact / prev, spaced.betas.double(),
                               rtol=1e-6, atol=0)
    steps = torch.diff(spaced.timesteps.double())
    if n_steps > 2:
        assert steps.max() - steps.min() <= 1  # evenly spaced


def test_respace_full_length_is_identity():
    base = cosine_schedule(500)
    same = respace(base, 500)
    for name in ("betas", "gammas", "gammas_prev", "sqrt_gammas", "timesteps", "gammas_exact"):
        torch.testing.assert_close(getattr(same, name), getattr(base, name), rtol=1e-6, atol=0)


def test_bad_names_and_sizes_raise():
    with pytest.raises(CryodiffError, match="quadratic"):
        make_schedule("quadratic", 10)
    with pytest.raises(CryodiffError, match="re-space"):
        respace(linear_schedule(100), 101)
    assert make_schedule("cosine", 10).n_steps == 10


def test_noise_levels_cover_consecutive_intervals():
    schedule = linear_schedule(50, 1e-3, 0.2)
    levels = sample_noise_levels(schedule, 20000, torch.Generator().manual_seed(0))
    assert levels.shape == (20000,) and levels.dtype == torch.float32
    assert levels.min() >= schedule.sqrt_gammas[-1] and levels.max() <= 1
    # each interval [√γ̄_t, √γ̄_{t−1}] receives about 1/T of the draws
    edges = torch.cat([schedule.sqrt_gammas.flip(0), torch.ones(1)])
    counts = torch.histogram(levels, bins=edges).hist
    assert (counts - 400).abs().max() < 5 * math.sqrt(400)
    again = sample_noise_levels(schedule, 20000, torch.Generator().manual_seed(0))
    assert torch.equal(levels, again)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_q_sample_statistics(dtype):
    gen = torch.Generator().manual_seed(0)
    y0 = torch.full((2, 1, 128, 128), 1.5, dtype=dtype)
    sqrt_gamma = torch.tensor([0.3, 0.95])
    noise = torch.randn(y0.shape, generator=gen, dtype=dtype)
    y_t = q_sample(y0, sqrt_gamma, noise)
    assert y_t.dtype == dtype
    for i, s in enumerate(sqrt_gamma.tolist()):
        assert y_t[i].mean().item() == pytest.approx(1.5 * s, abs=4 * math.sqrt(1 - s * s) / 128)
        assert y_t[i].std().item() == pytest.approx(math.sqrt(1 - s * s), rel=0.03)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eps_y0_conversions_invert(dtype):
    gen = torch.Generator().manual_seed(1)
    y0 = torch.randn(4, 1, 9, 9, generator=gen, dtype=dtype)
    eps = torch.randn(4, 1, 9, 9, generator=gen, dtype=dtype)
    sqrt_gamma = torch.tensor([0.01, 0.5, 0.99, 0.9999995], dtype=dtype)
    y_t = q_sample(y0, sqrt_gamma, eps)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(predict_eps_from_y0(y_t, y0, sqrt_gamma), eps, rtol=tol, atol=tol * 100)
    torch.testing.assert_close(predict_y0_from_eps(y_t, eps, sqrt_gamma), y0, rtol=tol, atol=tol * 100)


def test_diffusion_loss_is_seeded_and_checks_name():
    schedule = linear_schedule(100)
    y0 = torch.randn(4, 1, 8, 8)

    def model(y_t, cond, level):
        return y_t * 0.5

    a = diffusion_loss(model, y0, y0, schedule, "l1", torch.Generator().manual_seed(3))
    b = diffusion_loss(model, y0, y0, schedule, "l1", torch.Generator().manual_seed(3))
    c = diffusion_loss(model, y0, y0, schedule, "l2", torch.Generator().manual_seed(3))
    assert a.ndim == 0 and a.item() == b.item() and a.item() != c.item()
    # an oracle ε-predictor has zero loss
    oracle = diffusion_loss(lambda y_t, cond, level: predict_eps_from_y0(y_t, y0, level), y0, y0,
                            schedule, "l2", torch.Generator().manual_seed(3))
    assert oracle.item() < 1e-8
    with pytest.raises(CryodiffError, match="huber"):
        diffusion_loss(model, y0, y0, schedule, "huber")


def _recorder(store):
    """A v-model that remembers its inputs and answers 0.3·y_t."""
    def model(y_t, condition, level, raw=False):
        store.append((y_t.clone(), level.clone()))
        return 0.3 * y_t
    return model


def test_readout_rows_see_pure_noise_at_the_noisiest_level_and_are_scored_on_x0():
    schedule = linear_schedule(100)
    y0 = torch.randn(8, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    plain, joint = [], []
    diffusion_loss(_recorder(plain), y0, y0, schedule, "l1", torch.Generator().manual_seed(3),
                   prediction="v")
    loss = diffusion_loss(_recorder(joint), y0, y0, schedule, "l1",
                          torch.Generator().manual_seed(3), prediction="v",
                          readout_fraction=0.25)
    (y_plain, level_plain), (y_joint, level_joint) = plain[0], joint[0]
    # The same draws: the diffusion rows (the last six) are untouched ...
    assert torch.equal(y_joint[2:], y_plain[2:]) and torch.equal(level_joint[2:], level_plain[2:])
    # ... and the first quarter is shown the noise itself at √γ̄_T, as one_pass_x0 reads out.
    generator = torch.Generator().manual_seed(3)
    sample_noise_levels(schedule, 8, generator)
    noise = torch.randn(8, 1, 6, 6, generator=generator)
    assert torch.equal(y_joint[:2], noise[:2])
    torch.testing.assert_close(level_joint[:2], torch.full((2,), schedule.noisiest_level))
    assert not torch.allclose(y_plain[:2], noise[:2])
    # Each row's own loss: |v̂ − v| for diffusion rows, (x̂₀ − y₀)² for readout rows.
    v_hat = 0.3 * y_joint
    diffusion = (v_hat - v_target(y0, noise, level_joint)).abs()[2:]
    readout = (y0_from_v(y_joint, v_hat, level_joint) - y0).square()[:2]
    torch.testing.assert_close(loss, torch.cat([readout, diffusion]).mean())


def test_readout_rows_are_the_global_batchs_first_rows_across_data_parallel_shards():
    schedule = linear_schedule(100)
    y0 = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    whole, shards = [], [[], []]
    diffusion_loss(_recorder(whole), y0, y0, schedule, generator=torch.Generator().manual_seed(5),
                   prediction="v", readout_fraction=0.25)
    for rank in (0, 1):
        diffusion_loss(_recorder(shards[rank]), y0[rank::2], y0[rank::2], schedule,
                       generator=torch.Generator().manual_seed(5), shard=(rank, 2),
                       prediction="v", readout_fraction=0.25)
        assert torch.equal(shards[rank][0][1], whole[0][1][rank::2])
        assert torch.equal(shards[rank][0][0], whole[0][0][rank::2])
    noisiest = torch.tensor(schedule.noisiest_level, dtype=torch.float32)
    assert [bool(level[0] == noisiest) for level in (shards[0][0][1], shards[1][0][1])] == \
        [True, True]


def test_a_readout_fraction_needs_v_and_a_share_below_one():
    schedule, y0 = linear_schedule(10), torch.randn(4, 1, 4, 4)
    with pytest.raises(CryodiffError, match="v-predicting"):
        diffusion_loss(lambda y_t, c, s: y_t, y0, y0, schedule, readout_fraction=0.5)
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(CryodiffError, match=r"\[0, 1\)"):
            check_readout_fraction(bad, "v")
    assert check_readout_fraction(0.0, "eps") == 0.0
