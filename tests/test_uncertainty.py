"""Posterior std and its calibration: analytic Gaussian checks, SciPy cross-checks, the
recalibration scale, the reliability figure, and ``cryodiff denoise --samples --sigma-scale``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from cryodiff.uncertainty import (GAUSSIAN_COVERAGE_1SIGMA, GAUSSIAN_COVERAGE_2SIGMA,
                                  calibration, coverage, coverage_curve, error_sigma_correlation,
                                  finite_sample_factor, fit_sigma_recalibration,
                                  fit_sigma_scale, gaussian_interval, posterior_moments,
                                  recalibrate, reliability_curve)


def gaussian_posterior(n_pixels: int, n_samples: int, seed: int = 0, dtype=torch.float64):
    """Per pixel a Gaussian posterior N(μ, σ²) with its own μ and σ: the truth and
    ``n_samples`` samples are independent draws from it. Returns (truth, samples (P, K), σ)."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n_pixels, generator=g, dtype=torch.float64) * 3
    sigma = torch.exp(torch.randn(n_pixels, generator=g, dtype=torch.float64) * 0.7)
    truth = mu + sigma * torch.randn(n_pixels, generator=g, dtype=torch.float64)
    samples = mu[:, None] + sigma[:, None] * torch.randn(n_pixels, n_samples, generator=g,
                                                          dtype=torch.float64)
    return truth.to(dtype), samples.to(dtype), sigma.to(dtype)


def test_gaussian_constants_and_intervals():
    assert GAUSSIAN_COVERAGE_1SIGMA == pytest.approx(stats.norm.cdf(1) - stats.norm.cdf(-1))
    assert GAUSSIAN_COVERAGE_2SIGMA == pytest.approx(stats.norm.cdf(2) - stats.norm.cdf(-2))
    levels = torch.tensor([0.1, 0.5, GAUSSIAN_COVERAGE_1SIGMA, 0.9, GAUSSIAN_COVERAGE_2SIGMA])
    expected = stats.norm.ppf((1 + levels.numpy().astype(np.float64)) / 2)
    np.testing.assert_allclose(gaussian_interval(levels).numpy(), expected, rtol=1e-6)
    assert finite_sample_factor(4) == pytest.approx(math.sqrt(1.25))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_coverage_counts_pixels_inside(dtype):
    error = torch.tensor([0.0, 0.5, -1.0, 1.5, -3.0, 2.0], dtype=dtype)
    sigma = torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0], dtype=dtype)  # last: e ≠ 0 at σ = 0
    # |e|/σ = 0, 0.5, 1, 1.5, 3, ∞
    assert float(coverage(error, sigma, 1.0)) == pytest.approx(3 / 6)
    np.testing.assert_allclose(coverage(error, sigma, torch.tensor([0.4, 2.0, 10.0])).numpy(),
                               [1 / 6, 4 / 6, 5 / 6])
    # broadcasting: one σ for every pixel of an image stack
    images = torch.tensor([[[0.5, -2.5], [1.5, 0.1]]], dtype=dtype)
    assert float(coverage(images, torch.tensor(2.0, dtype=dtype), 1.0)) == pytest.approx(0.75)


def test_posterior_moments_match_numpy():
    samples = torch.randn(3, 5, 4, 4, generator=torch.Generator().manual_seed(1))
    mean, std = posterior_moments(samples)
    np.testing.assert_allclose(mean.numpy(), samples.numpy().mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), samples.numpy().std(axis=1, ddof=1), rtol=1e-5)
    one_mean, one_std = posterior_moments(samples[:, :1])
    assert torch.equal(one_mean, samples[:, 0]) and not one_std.any()


@pytest.mark.parametrize("n_samples", [4, 16])
def test_sample_std_of_a_gaussian_posterior_follows_student_t(n_samples):
    """Truth and K samples from the same N(μ, σ²): ``(x − x̄) / (s·√(1+1/K))`` is Student-t
    with K − 1 degrees of freedom, so the coverage of ±z·s·√(1+1/K) is the t probability."""
    truth, samples, _ = gaussian_posterior(40_000, n_samples)
    mean, std = posterior_moments(samples)
    sigma = std * finite_sample_factor(n_samples)
    for z in (1.0, 2.0):
        expected = stats.t.cdf(z, n_samples - 1) - stats.t.cdf(-z, n_samples - 1)
        assert float(coverage(truth - mean, sigma, z)) == pytest.approx(expected, abs=0.01)


def test_known_sigma_gives_gaussian_coverage_and_a_calibrated_reliability_curve():
    truth, samples, sigma = gaussian_posterior(40_000, 64)
    mean = samples.mean(dim=1)
    sigma_of_mean_error = sigma * finite_sample_factor(64)
    result = calibration(truth - mean, sigma_of_mean_error)
    assert result.coverage_1sigma == pytest.approx(GAUSSIAN_COVERAGE_1SIGMA, abs=0.01)
    assert result.coverage_2sigma == pytest.approx(GAUSSIAN_COVERAGE_2SIGMA, abs=0.006)
    assert result.miscalibration < 0.01 and result.ence < 0.05
    curve = reliability_curve(truth - mean, sigma_of_mean_error, n_bins=8)
    assert int(curve.count.sum()) == 40_000 and len(curve.count) == 8
    assert bool((curve.rms_sigma[1:] >= curve.rms_sigma[:-1]).all())  # bins sorted by σ
    np.testing.assert_allclose(curve.rms_error.numpy(), curve.rms_sigma.numpy(), rtol=0.06)
    # heteroscedastic errors: σ tracks |error| (σ varies ~×2 per pixel, so clearly positive)
    assert result.spearman > 0.3 and result.pearson > 0.3


@pytest.mark.parametrize("factor", [0.3, 0.7, 2.5])
def test_fitted_scale_corrects_a_miscalibrated_sigma(factor):
    truth, samples, sigma = gaussian_posterior(40_000, 64, seed=2)
    error = truth - samples.mean(dim=1)
    wrong = sigma * factor
    before = calibration(error, wrong)
    assert abs(before.coverage_1sigma - GAUSSIAN_COVERAGE_1SIGMA) > 0.1
    fit, held = slice(0, 20_000), slice(20_000, None)
    scale = fit_sigma_scale(error[fit], wrong[fit])
    assert scale == pytest.approx(finite_sample_factor(64) / factor, rel=0.03)
    after = calibration(error[held], scale * wrong[held])
    assert after.coverage_1sigma == pytest.approx(GAUSSIAN_COVERAGE_1SIGMA, abs=0.015)
    assert after.coverage_2sigma == pytest.approx(GAUSSIAN_COVERAGE_2SIGMA, abs=0.01)
    assert after.miscalibration < before.miscalibration


def test_scale_and_floor_repair_a_sigma_missing_an_additive_error():
    """True error std √(σ² + τ₀²) but the model reports 0.5·σ: no single scale fits (the
    low-σ pixels need the floor); the fitted (s, τ) comes close to (2, τ₀)."""
    g = torch.Generator().manual_seed(7)
    sigma = torch.exp(torch.randn(40_000, generator=g, dtype=torch.float64))
    floor = 1.0
    error = sigma.hypot(torch.tensor(floor, dtype=torch.float64)) * torch.randn(
        40_000, generator=g, dtype=torch.float64)
    reported = 0.5 * sigma
    fit, held = slice(0, 20_000), slice(20_000, None)
    scale_only = calibration(error[held],
                             fit_sigma_scale(error[fit], reported[fit]) * reported[held])
    scale, tau = fit_sigma_recalibration(error[fit], reported[fit])
    # coverage pins (s, τ) down only loosely along their trade-off; the coverage it gives is
    # what must be right
    assert scale == pytest.approx(2.0, rel=0.2) and tau == pytest.approx(floor, rel=0.25)
    both = calibration(error[held], recalibrate(reported[held], scale, tau))
    assert both.coverage_1sigma == pytest.approx(GAUSSIAN_COVERAGE_1SIGMA, abs=0.015)
    assert both.coverage_2sigma == pytest.approx(GAUSSIAN_COVERAGE_2SIGMA, abs=0.01)
    assert both.ence < 0.1 and scale_only.ence > 0.3
    assert both.miscalibration < scale_only.miscalibration
    torch.testing.assert_close(recalibrate(reported, 3.0), 3.0 * reported)


def test_uninformative_sigma_has_no_correlation_and_a_poor_reliability_curve():
    truth, samples, sigma = gaussian_posterior(20_000, 64, seed=3)
    error = truth - samples.mean(dim=1)
    shuffled = sigma[torch.randperm(len(sigma), generator=torch.Generator().manual_seed(0))]
    pearson, spearman = error_sigma_correlation(error, shuffled)
    assert abs(pearson) < 0.05 and abs(spearman) < 0.05
    assert reliability_curve(error, shuffled).ence > 0.3


def test_correlations_match_scipy_including_ties():
    g = torch.Generator().manual_seed(4)
    sigma = torch.randint(0, 5, (500,), generator=g).double()  # many ties
    error = sigma * torch.randn(500, generator=g, dtype=torch.float64) + torch.randn(
        500, generator=g, dtype=torch.float64) * 0.1
    pearson, spearman = error_sigma_correlation(error, sigma)
    assert pearson == pytest.approx(stats.pearsonr(sigma.numpy(), error.abs().numpy())[0])
    assert spearman == pytest.approx(stats.spearmanr(sigma.numpy(), error.abs().numpy())[0])


def test_coverage_curve_is_the_nominal_levels_for_an_exact_sigma():
    truth, samples, sigma = gaussian_posterior(40_000, 64, seed=5)
    nominal, empirical = coverage_curve(truth - samples.mean(dim=1),
                                        sigma * finite_sample_factor(64))
    np.testing.assert_allclose(empirical.numpy(), nominal.numpy(), atol=0.012)


def test_reliability_figure_draws_every_series():
    from cryodiff.plots.uncertainty import plot_reliability_diagram, plot_reliability_grid

    truth, samples, sigma = gaussian_posterior(2_000, 8, seed=6)
    error = truth - samples.mean(dim=1)
    series = {"raw": (reliability_curve(error, sigma), coverage_curve(error, sigma)),
              "×2": (reliability_curve(error, 2 * sigma), coverage_curve(error, 2 * sigma))}
    fig = plot_reliability_diagram(series)
    assert [len(ax.lines) for ax in fig.axes] == [3, 3]  # two series and the diagonal
    grid = plot_reliability_grid({"a": series, "b": series}, columns=3)
    assert sum(ax.get_visible() for ax in grid.axes) == 4


@pytest.mark.slow
def test_cli_denoise_samples_writes_a_scaled_std(tmp_path, capsys):
    from cryodiff.cli import main as cli
    from cryodiff.denoise import denoise_with, load_denoiser
    from cryodiff.io.mrc import read_stack, write_stack
    from cryodiff.training.data import PairedStackData
    from cryodiff.training.loop import train
    from training_helpers import blob_pairs, tiny_config

    config = tiny_config(steps=2, val_every=100)
    run = tmp_path / "run"
    train(config, run, PairedStackData(*blob_pairs(16, 16), config), progress=False)
    images = blob_pairs(3, 16, seed=7)[0]
    write_stack(tmp_path / "in.mrcs", images, 2.0)
    args = ["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(run), "--steps", "2",
            "--samples", "3", "--device", "cpu"]
    assert cli(args + ["--out", str(tmp_path / "a.mrcs")]) == 0
    assert cli(args + ["--out", str(tmp_path / "b.mrcs"), "--sigma-scale", "2.5",
                       "--sigma-floor", "0.1"]) == 0
    std = torch.as_tensor(read_stack(tmp_path / "a_std.mrcs")).float()
    expected = denoise_with(load_denoiser(run), images, steps=2, n_samples=3, seed=0,
                            match_scale=True)  # the CLI's default
    torch.testing.assert_close(torch.as_tensor(read_stack(tmp_path / "a.mrcs")).float(),
                               expected.mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std, expected.std, rtol=1e-5, atol=1e-5)
    assert bool((std > 0).all())
    torch.testing.assert_close(torch.as_tensor(read_stack(tmp_path / "b_std.mrcs")).float(),
                               (2.5 * std).hypot(torch.tensor(0.1)), rtol=1e-5, atol=1e-6)
    assert torch.equal(torch.as_tensor(read_stack(tmp_path / "b.mrcs")),
                       torch.as_tensor(read_stack(tmp_path / "a.mrcs")))
    capsys.readouterr()
    assert cli(args + ["--out", str(tmp_path / "c.mrcs"), "--sigma-scale", "0"]) == 2
    assert "--sigma-scale" in capsys.readouterr().err


def test_a_scale_fitted_for_one_band_holds_that_band_on_heavy_tailed_errors():
    """Errors with heavier tails than σ says (Laplace, scale σ): no single scale makes ±1σ and
    ±2σ both right, but a scale fitted for the ±2σ band alone makes that band hold 95.4 % on
    held-out pixels, where the all-levels scale leaves it short."""
    g = torch.Generator().manual_seed(11)
    sigma = torch.exp(0.5 * torch.randn(60_000, generator=g, dtype=torch.float64))
    laplace = torch.distributions.Laplace(0.0, 1.0)
    torch.manual_seed(12)
    error = sigma * laplace.sample((60_000,)).double()
    fit, held = slice(0, 30_000), slice(30_000, None)
    overall = calibration(error[held], fit_sigma_scale(error[fit], sigma[fit]) * sigma[held])
    band = fit_sigma_scale(error[fit], sigma[fit], (GAUSSIAN_COVERAGE_2SIGMA,))
    # |e|/σ is Exp(1): its 95.45 % quantile, -ln(1 - 0.9545) = 3.09, halved for the ±2σ band
    assert band == pytest.approx(-math.log(1 - GAUSSIAN_COVERAGE_2SIGMA) / 2, rel=0.03)
    two = calibration(error[held], band * sigma[held])
    assert two.coverage_2sigma == pytest.approx(GAUSSIAN_COVERAGE_2SIGMA, abs=0.006)
    assert overall.coverage_2sigma < GAUSSIAN_COVERAGE_2SIGMA - 0.015
    assert two.coverage_1sigma > GAUSSIAN_COVERAGE_1SIGMA + 0.05  # the price: ±1σ too wide
