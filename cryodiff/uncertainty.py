"""Per-pixel uncertainty from posterior samples, and how far to trust it (calibration).

A conditional diffusion model draws samples ``x̂⁽¹⁾ … x̂⁽ᴷ⁾`` from (an approximation of) the
posterior ``p(x | noisy particle)``. Their mean is the estimate and their spread a per-pixel
standard deviation ``σ``. If the posterior were exact, the true image would be one more draw
from it, so the error of the K-sample mean ``e = x − x̄`` would have standard deviation
``σ·√(1 + 1/K)`` (:func:`finite_sample_factor`) and, for a Gaussian posterior, fall within
``±1σ`` / ``±2σ`` of it in 68.3 % / 95.4 % of the pixels.

Calibration compares ``σ`` with the true errors on held-out particles: the coverage at
``±zσ`` (:func:`coverage`, :func:`coverage_curve`), the correlation of ``σ`` with ``|e|``
(:func:`error_sigma_correlation`) and the binned reliability curve — RMS error against RMS
``σ`` in bins of ``σ`` (:func:`reliability_curve`; Levi et al. 2022, "Evaluating and
calibrating uncertainty prediction in regression tasks"). A model whose spread is off by a
constant factor is recalibrated with one scale ``s`` fitted on held-out data
(:func:`fit_sigma_scale`, Kuleshov et al. 2018 use the same coverage criterion) and applied as
``s·σ`` (``cryodiff denoise --sigma-scale``); one whose σ is too small where it is confident
needs a floor as well, ``√((s·σ)² + τ²)`` (:func:`fit_sigma_recalibration`,
``--sigma-floor``).

All functions take tensors of any shape (errors and ``σ`` broadcast together, every pixel one
observation) in any units, as long as the two agree; coverage and correlation are unit-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Fraction of a Gaussian within ±1σ and ±2σ of its mean: erf(1/√2), erf(2/√2).
GAUSSIAN_COVERAGE_1SIGMA = math.erf(1 / math.sqrt(2))
GAUSSIAN_COVERAGE_2SIGMA = math.erf(2 / math.sqrt(2))
#: Nominal central-interval probabilities the scale is fitted to and the curve drawn at.
DEFAULT_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def posterior_moments(samples: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over the sample axis ``dim`` (Bessel-corrected; zero
    when there is one sample). ``samples (B, K, ...)`` → ``(B, ...)`` each."""
    mean = samples.mean(dim=dim)
    if samples.shape[dim] < 2:
        return mean, torch.zeros_like(mean)
    return mean, samples.std(dim=dim, correction=1)


def finite_sample_factor(n_samples: int) -> float:
    """``√(1 + 1/K)``: the std of the truth around a K-sample posterior mean, in units of
    the posterior std (the truth and the K samples are K + 1 independent posterior draws)."""
    return math.sqrt(1 + 1 / n_samples)


def gaussian_interval(level: float | torch.Tensor) -> torch.Tensor:
    """Half-width ``z`` (in σ) of the central interval holding ``level`` of a Gaussian:
    ``z = Φ⁻¹((1 + level)/2)``; e.g. 0.6827 → 1, 0.9545 → 2."""
    level = torch.as_tensor(level, dtype=torch.float64)
    return torch.special.ndtri((1 + level) / 2)


def _ratios(error: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``|e|/σ`` per pixel, flattened, float64 (``0/0 → 0``, ``e/0 → ∞``)."""
    error, sigma = torch.broadcast_tensors(error.double(), sigma.double())
    ratio = error.abs() / sigma
    return torch.where((error == 0) & (sigma == 0), torch.zeros_like(ratio), ratio).flatten()


def coverage(error: torch.Tensor, sigma: torch.Tensor,
             z: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Fraction of pixels with ``|error| ≤ z·σ`` (a scalar, or one value per entry of ``z``).

    ``error = truth − estimate`` and ``sigma`` broadcast together; float64 result. The ideal
    for a Gaussian error of std σ is ``erf(z/√2)``: 0.683 at z = 1, 0.954 at z = 2.
    """
    ratio = _ratios(error, sigma)
    z = torch.as_tensor(z, dtype=torch.float64, device=ratio.device)
    return (ratio[:, None] <= z.reshape(1, -1)).double().mean(dim=0).reshape(z.shape)


def coverage_curve(error: torch.Tensor, sigma: torch.Tensor,
                   levels: tuple[float, ...] = DEFAULT_LEVELS) -> tuple[torch.Tensor, torch.Tensor]:
    """Empirical against nominal coverage of the Gaussian central intervals: for each
    nominal ``level`` the fraction of pixels with ``|e| ≤ z(level)·σ``.
    Returns ``(nominal, empirical)``, ``(len(levels),)`` float64; ideal: equal."""
    nominal = torch.tensor(levels, dtype=torch.float64)
    return nominal, coverage(error, sigma, gaussian_interval(nominal))


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0 … n−1 with ties given their average rank."""
    sorted_values, order = torch.sort(values)
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(len(values), dtype=values.dtype, device=values.device)
    _, inverse, counts = torch.unique_consecutive(sorted_values, return_inverse=True,
                                                  return_counts=True)
    if len(counts) < len(values):  # average the ranks within each run of ties
        first = torch.cumsum(counts, 0) - counts
        mean_rank = (first + (counts - 1) / 2).to(values.dtype)
        ranks[order] = mean_rank[inverse]
    return ranks


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else float("nan")


def error_sigma_correlation(error: torch.Tensor, sigma: torch.Tensor) -> tuple[float, float]:
    """Pearson and Spearman (rank, ties averaged) correlation between ``σ`` and ``|error|``
    over all pixels. Positive: the model is least sure where it errs most. (For an exactly
    calibrated Gaussian error the Pearson value is bounded well below 1 — ``|e|`` scatters
    around ``σ·√(2/π)`` — so compare values between models, not against 1.)"""
    error, sigma = torch.broadcast_tensors(error.double(), sigma.double())
    a, b = sigma.flatten(), error.abs().flatten()
    return _pearson(a, b), _pearson(_ranks(a), _ranks(b))


@dataclass(frozen=True)
class ReliabilityCurve:
    """Binned reliability: pixels sorted by ``σ`` into equal-count bins; per bin the RMS
    ``σ`` (``rms_sigma``), the RMS error (``rms_error``) and the pixel ``count``, all
    ``(n_bins,)``. Calibrated: ``rms_error == rms_sigma``. ``ence`` is the expected
    normalised calibration error ``mean |rms_sigma − rms_error| / rms_sigma``."""

    rms_sigma: torch.Tensor
    rms_error: torch.Tensor
    count: torch.Tensor

    @property
    def ence(self) -> float:
        valid = self.rms_sigma > 0
        gap = (self.rms_sigma[valid] - self.rms_error[valid]).abs() / self.rms_sigma[valid]
        return float(gap.mean()) if bool(valid.any()) else float("nan")


def reliability_curve(error: torch.Tensor, sigma: torch.Tensor,
                      n_bins: int = 10) -> ReliabilityCurve:
    """RMS error against RMS ``σ`` in ``n_bins`` equal-count bins of ``σ`` (see
    :class:`ReliabilityCurve`)."""
    error, sigma = torch.broadcast_tensors(error.double(), sigma.double())
    order = torch.argsort(sigma.flatten())
    err2, sig2 = error.flatten()[order] ** 2, sigma.flatten()[order] ** 2
    bins = [chunk for chunk in torch.tensor_split(torch.arange(len(order)), n_bins) if len(chunk)]
    return ReliabilityCurve(
        rms_sigma=torch.stack([sig2[b].mean().sqrt() for b in bins]),
        rms_error=torch.stack([err2[b].mean().sqrt() for b in bins]),
        count=torch.tensor([len(b) for b in bins]))


def coverage_miscalibration(error: torch.Tensor, sigma: torch.Tensor,
                            levels: tuple[float, ...] = DEFAULT_LEVELS) -> float:
    """Root-mean-square gap between empirical and nominal coverage over ``levels``."""
    nominal, empirical = coverage_curve(error, sigma, levels)
    return float((empirical - nominal).square().mean().sqrt())


def fit_sigma_scale(error: torch.Tensor, sigma: torch.Tensor,
                    levels: tuple[float, ...] = DEFAULT_LEVELS) -> float:
    """The scale ``s`` minimising :func:`coverage_miscalibration` of ``(error, s·σ)``.

    Coverage at scale ``s`` and level ``p`` is the fraction of ``|e|/σ ≤ s·z(p)``, a step
    function of ``s``; the search covers the scales that make each level exact
    (``quantile_p(|e|/σ) / z(p)``) and a fine geometric grid spanning them, and keeps the
    best (the smallest on ties). Fit it on held-out particles, apply it to new ones.
    """
    ratio = torch.sort(_ratios(error, sigma)).values
    n_total = len(ratio)  # infinite ratios (σ = 0, e ≠ 0) are never covered
    ratio = ratio[torch.isfinite(ratio)]
    if len(ratio) == 0:
        return 1.0
    nominal = torch.tensor(levels, dtype=torch.float64)
    z = gaussian_interval(nominal)
    # the p-quantiles of the sorted ratios (torch.quantile refuses more than 2²⁴ values)
    at = (nominal * len(ratio)).ceil().long().clamp(1, len(ratio)) - 1
    exact = ratio[at] / z
    exact = exact[exact > 0]
    if len(exact) == 0:
        return 1.0
    grid = torch.logspace(math.log10(float(exact.min()) / 2), math.log10(float(exact.max()) * 2),
                          2001, dtype=torch.float64)
    scales = torch.sort(torch.cat([exact, grid])).values
    counts = torch.searchsorted(ratio, scales[:, None] * z[None, :], right=True)
    gaps = (counts.double() / n_total - nominal[None, :]).square().mean(dim=1)
    return float(scales[int(torch.argmin(gaps))])


def recalibrate(sigma: torch.Tensor, scale: float = 1.0, floor: float = 0.0) -> torch.Tensor:
    """``σ' = √((s·σ)² + τ²)``: a scale ``s`` and a floor ``τ`` (in σ's units) fitted by
    :func:`fit_sigma_recalibration`; ``floor = 0`` is the plain scale."""
    return (scale * sigma).hypot(torch.as_tensor(floor, dtype=sigma.dtype, device=sigma.device))


def fit_sigma_recalibration(error: torch.Tensor, sigma: torch.Tensor,
                            levels: tuple[float, ...] = DEFAULT_LEVELS,
                            n_floors: int = 40) -> tuple[float, float]:
    """Scale ``s`` and floor ``τ`` of :func:`recalibrate` minimising
    :func:`coverage_miscalibration`.

    A single scale cannot repair a σ that is too small where the model is confident and
    wrong (errors heavy-tailed against σ): the floor adds an error the samples do not show.
    Written ``σ' = s·√(σ² + c²)``, each ``c`` on a grid (0 and ``n_floors`` values
    log-spaced from 1 % to 300 % of the RMS σ) gets its exact best ``s``
    (:func:`fit_sigma_scale`); the best pair is returned as ``(s, τ = s·c)``.
    """
    sigma64 = torch.broadcast_tensors(error, sigma)[1].double()
    rms = float(sigma64.square().mean().sqrt())
    if not rms > 0:
        return 1.0, 0.0
    offsets = [0.0] + (rms * torch.logspace(-2, math.log10(3), n_floors,
                                            dtype=torch.float64)).tolist()
    best = (math.inf, 1.0, 0.0)
    for c in offsets:
        widened = sigma64.hypot(torch.tensor(c, dtype=torch.float64))
        scale = fit_sigma_scale(error, widened, levels)
        gap = coverage_miscalibration(error, scale * widened, levels)
        if gap < best[0]:
            best = (gap, scale, scale * c)
    return best[1], best[2]


@dataclass(frozen=True)
class Calibration:
    """Calibration of ``σ`` against true errors over ``n_pixels`` pixels: coverage at ±1σ
    and ±2σ (ideal 0.683 / 0.954), the RMS coverage gap over :data:`DEFAULT_LEVELS`,
    Pearson / Spearman correlation of ``σ`` with ``|error|``, the ENCE of the reliability
    curve, and ``rms_error`` / ``rms_sigma`` over all pixels."""

    n_pixels: int
    coverage_1sigma: float
    coverage_2sigma: float
    miscalibration: float
    pearson: float
    spearman: float
    ence: float
    rms_error: float
    rms_sigma: float


def calibration(error: torch.Tensor, sigma: torch.Tensor, n_bins: int = 10) -> Calibration:
    """All calibration figures of ``σ`` for ``error = truth − estimate`` (see
    :class:`Calibration`)."""
    error, sigma = torch.broadcast_tensors(error.double(), sigma.double())
    one, two = coverage(error, sigma, torch.tensor([1.0, 2.0])).tolist()
    pearson, spearman = error_sigma_correlation(error, sigma)
    return Calibration(
        n_pixels=error.numel(), coverage_1sigma=one, coverage_2sigma=two,
        miscalibration=coverage_miscalibration(error, sigma), pearson=pearson,
        spearman=spearman, ence=reliability_curve(error, sigma, n_bins).ence,
        rms_error=float(error.square().mean().sqrt()),
        rms_sigma=float(sigma.square().mean().sqrt()))
