"""Training ``sr3-pm``'s post-processor for a run: SR3's posterior mean, refined.

PSNR rewards the posterior mean ``E[clean | particle]``. The mean of ``K`` SR3 samples
estimates it (with a leftover spread ``σ²/K`` and SR3's own errors); a post-processor of the
paper's shape, trained with the squared error on such means of the training particles, removes
what is left. This is the benchmark's ``sr3-pm`` row (:mod:`cryodiff.benchmark.sr3_pm`) for a
user's own run: the same recipe (:func:`pm_recipe`: the run's ``steps``, ``batch_size`` and
``lr`` with its warm-up, clipping, EMA and precision), stored in the run's latest checkpoint
under ``pm_postprocess`` so that ``cryodiff denoise --method sr3-pm`` applies it
(:func:`cryodiff.denoise.denoise_posterior_mean`). The means of the training draws, the
expensive part, are cached in ``RUN/pm_means_cache.pt`` (keyed by their settings), so an
interrupted run resumes after them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import torch

from cryodiff.denoise import MeanRefiner, denoise_with, load_denoiser, refine_mean
from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import write_json_atomic
from cryodiff.io.keyed_cache import data_fingerprint, load_keyed, store_keyed
from cryodiff.training import checkpoint as ckpt
from cryodiff.training.config import TrainConfig
from cryodiff.training.data import TrainingData
from cryodiff.training.loop import select_device
from cryodiff.training.postprocess_mse import (MsePostConfig, fit_mse_postprocessor,
                                               mean_of_draws, mse_post_config)

MEANS_CACHE = "pm_means_cache.pt"
METRICS = "pm_postprocess_metrics.json"
DEFAULT_DRAWS = 4


def pm_recipe(train: TrainConfig, sampling_steps: int, sampler: str = "ddpm",
              draws: int = DEFAULT_DRAWS, seed: int | None = None) -> MsePostConfig:
    """The ``sr3-pm`` post-processor's recipe: means of ``draws`` samples of
    ``sampling_steps`` steps of ``sampler``, trained like every regression U-Net of the
    benchmark (``train``'s ``steps``, ``batch_size``, ``lr`` and shared optimiser settings);
    ``seed`` defaults to ``train``'s."""
    base = mse_post_config(train, sampling_steps, sampler, seed, draws=draws)
    return dataclasses.replace(base, steps=train.steps, batch_size=train.batch_size,
                               lr=train.lr)


def default_particles(data: TrainingData, config: TrainConfig) -> int:
    """Training particles the post-processor learns from by default: every pair of a data
    folder; ``post_n_samples`` simulated ones for on-the-fly data."""
    return len(data) if hasattr(data, "__len__") else config.post_n_samples


def train_pm_postprocessor(run_dir: str | os.PathLike, data: TrainingData, *,
                           draws: int = DEFAULT_DRAWS, particles: int | None = None,
                           steps: int | None = None, device: str = "auto",
                           progress: bool = True) -> dict:
    """Train the ``sr3-pm`` post-processor of the run in ``run_dir`` on means of ``draws``
    samples of ``particles`` training pairs (default :func:`default_particles`) for ``steps``
    (default the run's ``steps``) and store it in the run's latest checkpoint.

    Returns the metrics also written to ``RUN/pm_postprocess_metrics.json``: the recipe,
    the seconds spent drawing the training means (0 when they came from the cache) and
    training, and the validation PSNR (dB) and SSIM of one sample, of the mean of ``draws``
    samples and of the refined mean (``sr3-pm``, with the self-ensemble).
    """
    if draws < 1 or (particles is not None and particles < 1) or (steps is not None
                                                                    and steps < 1):
        raise CryodiffError(f"draws, particles and steps must be at least 1, got {draws}, "
                            f"{particles}, {steps}")
    latest = ckpt.resolve_checkpoint(run_dir)
    config = TrainConfig.from_json(ckpt.load_checkpoint(latest)["config"])
    dev = select_device(device if device != "auto" else config.device, verbose=False)
    denoiser = load_denoiser(latest, dev)
    recipe = pm_recipe(config, config.post_sampling_steps, config.post_sampler, draws)
    recipe = dataclasses.replace(recipe, steps=steps or recipe.steps)
    asked = particles or default_particles(data, config)
    noisy, target = data.fixed_pairs(asked)
    n = len(noisy)
    if progress and n < asked:
        print(f"cryodiff: the training split has {n} particles (asked for {asked}); using all")
    start = time.perf_counter()
    means, cached = _cached_means(Path(run_dir), denoiser, noisy, recipe, dev, progress)
    sampling_seconds = 0.0 if cached else time.perf_counter() - start
    if progress:
        print(f"cryodiff: training the sr3-pm post-processor ({recipe.steps} steps × "
              f"{recipe.batch_size}, means of {draws} samples of {n} particles)")
    start = time.perf_counter()
    net = fit_mse_postprocessor(denoiser, means[None], noisy, target, recipe, dev)
    training_seconds = time.perf_counter() - start
    refiner = MeanRefiner(net, draws, recipe.sampling_steps, recipe.sampler)
    ckpt.store_entry(latest, "pm_postprocess", {
        "weights": {k: v.cpu() for k, v in net.state_dict().items()}, "draws": draws,
        "sampling_steps": recipe.sampling_steps, "sampler": recipe.sampler, "particles": n,
        "steps": recipe.steps})
    metrics = {"recipe": dataclasses.asdict(recipe), "particles": n, "checkpoint": str(latest),
               "sampling_seconds": sampling_seconds, "means_from_cache": cached,
               "training_seconds": training_seconds,
               **_validation(dataclasses.replace(denoiser, mean_refiner=refiner), data, config)}
    write_json_atomic(Path(run_dir) / METRICS, metrics)
    return metrics


def _cached_means(run_dir: Path, denoiser, noisy: torch.Tensor, recipe: MsePostConfig,
                  device: torch.device, progress: bool) -> tuple[torch.Tensor, bool]:
    """``(means, cached)``: normalised means of ``recipe.draws`` samples of ``noisy``, from
    ``RUN/pm_means_cache.pt`` when the same weights, particles and draw settings made them
    (``cached`` True), else drawn and saved there."""
    key = [denoiser.step, ckpt.weights_digest(denoiser.model.state_dict()), len(noisy),
           recipe.draws, recipe.sampling_steps, recipe.sampler, recipe.seed,
           data_fingerprint(noisy)]
    cache = run_dir / MEANS_CACHE
    saved = load_keyed(cache, key)
    if saved is not None and isinstance(saved.get("means"), torch.Tensor) \
            and saved["means"].shape == noisy.shape:
        return saved["means"], True
    if progress:
        print(f"cryodiff: drawing {recipe.draws} samples ({recipe.sampling_steps} "
              f"{recipe.sampler.upper()} steps) of {len(noisy)} training particles")
    means = mean_of_draws(denoiser, noisy, recipe, device)
    store_keyed(cache, key, means=means)
    return means, False


def _validation(denoiser, data: TrainingData, config: TrainConfig) -> dict[str, float]:
    """Validation PSNR (dB) and SSIM of one sample, the mean of the draws and ``sr3-pm``."""
    from cryodiff.metrics import psnr, ssim

    refiner, noisy, target = denoiser.mean_refiner, data.val_condition, data.val_target
    one = denoise_with(denoiser, noisy, steps=refiner.sampling_steps, sampler=refiner.sampler,
                       postprocess=False, seed=config.seed).mean
    # the draws denoise_posterior_mean makes (same seed and batches), refined as it does
    mean = denoise_with(denoiser, noisy, steps=refiner.sampling_steps, sampler=refiner.sampler,
                        n_samples=refiner.draws, postprocess=False, seed=config.seed).mean
    refined = refine_mean(denoiser, mean, noisy)
    scores = {}
    for name, images in (("one_sample", one), ("mean_of_draws", mean), ("sr3_pm", refined)):
        scores[f"val_psnr_{name}"] = float(psnr(images, target).mean())
        scores[f"val_ssim_{name}"] = float(ssim(images, target).mean())
    return scores


def pm_summary(metrics: dict) -> str:
    """One line for the console: the validation PSNR of one sample, the mean, ``sr3-pm``."""
    return (f"validation PSNR: one sample {metrics['val_psnr_one_sample']:.2f} dB, mean of "
            f"{metrics['recipe']['draws']} {metrics['val_psnr_mean_of_draws']:.2f} dB, sr3-pm "
            f"{metrics['val_psnr_sr3_pm']:.2f} dB (SSIM {metrics['val_ssim_sr3_pm']:.3f})")

