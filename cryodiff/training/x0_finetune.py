"""``x0ft``: a v-predicting SR3's one-pass x̂₀, fine-tuned for the posterior mean.

At the schedule's noisiest level ``√γ̄_T`` a v-predicting SR3 network sees pure noise and the
particle, and its ``x̂₀ = √γ̄_T·y_T − √(1−γ̄_T)·v̂`` regresses the clean image: a posterior-mean
estimate in one pass (:func:`cryodiff.denoise.one_pass_x0`). Diffusion training spends only
the few steps that draw levels near ``√γ̄_T`` on it. Fine-tuning a copy of the network there
alone, with the squared error of x̂₀ against the clean target and the recipe every
regression U-Net of the benchmark gets (:class:`~cryodiff.baselines.regression.
RegressionRecipe`: the preset's steps, batch, AdamW, warm-up, clipping, EMA, precision),
spends the second half of SR3 + post-processor's budget (the ``supervised-2x`` row's) on
the readout that PSNR rewards. The fine-tuned copy only reads x̂₀ out; SR3's own network,
which samples, is left as it was.

The SSIM stage (``ssim_weight``, ``start``; :func:`~cryodiff.baselines.regression.
ssim_stage_recipe`) trains the fine-tuned copy on for a tenth more steps with
``SSIM_WEIGHT · (1 − SSIM)`` beside the squared error: the posterior mean leaves a faint
ripple where the particle's surroundings are flat, which PSNR barely sees and SSIM punishes.

For a user's run, :func:`train_x0_finetune` (``cryodiff train --x0-finetune [--x0-ssim]``)
stores the copy in the run's latest checkpoint under ``x0_finetune``; ``cryodiff denoise
--method x0ft`` applies it (:func:`cryodiff.denoise.denoise_one_pass` with ``finetuned``). The benchmark's
row is :mod:`cryodiff.benchmark.sr3_x0ft`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from pathlib import Path

import torch
from torch import nn

from cryodiff.baselines.regression import (SSIM_WEIGHT, RegressionRecipe, fit_image_to_image,
                                          ssim_stage_recipe)
from cryodiff.diffusion import y0_from_v
from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import write_json_atomic
from cryodiff.training.config import TrainConfig

METRICS = "x0_finetune_metrics.json"


class X0Readout(nn.Module):
    """SR3's v-network read out as a regressor: ``condition (B, 1, L, L)`` (a normalised
    particle) → x̂₀ ``(B, 1, L, L)`` at noise level ``sqrt_gamma`` (``√γ̄``), from a fresh
    ``y_T ~ N(0, I)`` per call, drawn from the global generator (which
    :func:`~cryodiff.baselines.regression.fit_image_to_image` seeds with the recipe's seed),
    as :func:`cryodiff.denoise.one_pass_x0` reads it at test time."""

    def __init__(self, model: nn.Module, sqrt_gamma: float):
        super().__init__()
        self.model = model
        self.sqrt_gamma = float(sqrt_gamma)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        y_t = torch.randn_like(condition)
        level = condition.new_full((len(condition),), self.sqrt_gamma)
        return y0_from_v(y_t, self.model(y_t, condition, level, raw=True), level)


def x0ft_recipe(train: TrainConfig) -> RegressionRecipe:
    """The fine-tuning recipe: the regression U-Nets' (``train``'s steps, batch, optimiser,
    warm-up, clipping, EMA, precision and seed) with the squared error (PSNR's loss)."""
    return RegressionRecipe.from_train_config(train, "l2")


def finetune_x0(denoiser, noisy: torch.Tensor, target: torch.Tensor,
                recipe: RegressionRecipe, ssim_weight: float = 0.0,
                start: nn.Module | None = None) -> nn.Module:
    """A copy of ``denoiser``'s v-network fine-tuned so its one-pass x̂₀ at the noisiest
    level fits ``target`` given ``noisy`` (both ``(N, L, L)``, raw units, on any device; the
    denoiser's normalisation is applied). Returns the EMA copy in eval mode, on the
    denoiser's device, for :func:`cryodiff.denoise.one_pass_x0` (the denoiser itself is
    untouched). ``start``: the network to fine-tune instead of the denoiser's (a fine-tuned
    copy, for the SSIM stage). ``ssim_weight`` > 0 adds ``ssim_weight · (1 − SSIM)`` to the
    squared error, SSIM taken in the target's units (:func:`~cryodiff.baselines.regression.
    fit_image_to_image`). Raises :class:`CryodiffError` for an ε-predicting model."""
    from cryodiff.denoise import check_one_pass

    check_one_pass(denoiser, "x0ft")
    device = next(denoiser.model.parameters()).device
    norm = denoiser.normalisation
    network = copy.deepcopy(start if start is not None else denoiser.model)
    readout = X0Readout(network.float().requires_grad_(True), denoiser.schedule.noisiest_level)
    inputs = norm.condition(noisy.float()).to(device)
    targets = norm.target(target.float()).to(device)
    fit = fit_image_to_image(readout, inputs, targets, recipe, ssim_weight=ssim_weight,
                             to_raw=norm.denormalise)
    return fit.ema.model.eval().requires_grad_(False)


def train_x0_finetune(run_dir: str | os.PathLike, data, *, particles: int | None = None,
                      steps: int | None = None, ssim_stage: bool = False,
                      device: str = "auto", progress: bool = True) -> dict:
    """Fine-tune the x̂₀ readout of the v-predicting run in ``run_dir`` on ``particles``
    training pairs of ``data`` (default: every pair of a data folder, the preset's
    ``post_n_samples`` for on-the-fly data) for ``steps`` (default the run's ``steps``,
    :func:`x0ft_recipe`), with ``ssim_stage`` then for :func:`ssim_stage_recipe`'s steps with
    ``SSIM_WEIGHT · (1 − SSIM)`` added to the loss, and store it in the run's latest
    checkpoint (``x0_finetune``).

    Returns the metrics also written to ``RUN/x0_finetune_metrics.json``: the recipe, the
    particles, the training seconds and the validation PSNR (dB) and SSIM of ``x0`` and
    ``x0ft`` (both with the self-ensemble, as ``cryodiff denoise`` applies them).
    """
    from cryodiff.denoise import load_denoiser
    from cryodiff.training import checkpoint as ckpt
    from cryodiff.training.loop import select_device
    from cryodiff.training.pm_postprocess import default_particles

    if (particles is not None and particles < 1) or (steps is not None and steps < 1):
        raise CryodiffError(f"particles and steps must be at least 1, got {particles}, {steps}")
    latest = ckpt.resolve_checkpoint(run_dir)
    config = TrainConfig.from_json(ckpt.load_checkpoint(latest)["config"])
    dev = select_device(device if device != "auto" else config.device, verbose=False)
    denoiser = load_denoiser(latest, dev)
    recipe = x0ft_recipe(config)
    recipe = dataclasses.replace(recipe, steps=steps or recipe.steps)
    asked = particles or default_particles(data, config)
    noisy, target = data.fixed_pairs(asked)
    if progress:
        if len(noisy) < asked:
            print(f"cryodiff: the training split has {len(noisy)} particles (asked for "
                  f"{asked}); using all")
        print(f"cryodiff: fine-tuning the x̂₀ readout ({recipe.steps} steps × "
              f"{recipe.batch_size}, {len(noisy)} particles)")
    start = time.perf_counter()
    tuned = finetune_x0(denoiser, noisy, target, recipe)
    stage = ssim_stage_recipe(recipe) if ssim_stage else None
    if stage is not None:
        if progress:
            print(f"cryodiff: SSIM stage ({stage.steps} steps, L2 + {SSIM_WEIGHT} · (1 − SSIM))")
        tuned = finetune_x0(denoiser, noisy, target, stage, ssim_weight=SSIM_WEIGHT,
                            start=tuned)
    seconds = time.perf_counter() - start
    ckpt.store_entry(latest, "x0_finetune", {
        "weights": {k: v.cpu() for k, v in tuned.state_dict().items()},
        "particles": len(noisy), "steps": recipe.steps + (stage.steps if stage else 0)})
    metrics = {"recipe": dataclasses.asdict(recipe),
               "ssim_stage": None if stage is None else {**dataclasses.asdict(stage),
                                                         "ssim_weight": SSIM_WEIGHT},
               "particles": len(noisy),
               "checkpoint": str(latest), "training_seconds": seconds,
               **_validation(dataclasses.replace(denoiser, x0_model=tuned), data, config)}
    write_json_atomic(Path(run_dir) / METRICS, metrics)
    return metrics


def _validation(denoiser, data, config: TrainConfig) -> dict[str, float]:
    """Validation PSNR (dB) and SSIM of ``x0`` and ``x0ft`` (self-ensembled)."""
    from cryodiff.denoise import denoise_one_pass
    from cryodiff.metrics import psnr, ssim

    noisy, target = data.val_condition, data.val_target
    scores = {}
    for name, finetuned in (("x0", False), ("x0ft", True)):
        images = denoise_one_pass(denoiser, noisy, seed=config.seed, finetuned=finetuned).mean
        scores[f"val_psnr_{name}"] = float(psnr(images, target).mean())
        scores[f"val_ssim_{name}"] = float(ssim(images, target).mean())
    return scores


def x0ft_summary(metrics: dict) -> str:
    """One line for the console: the validation PSNR of ``x0`` and ``x0ft``."""
    return (f"validation PSNR: x0 {metrics['val_psnr_x0']:.2f} dB, x0ft "
            f"{metrics['val_psnr_x0ft']:.2f} dB (SSIM {metrics['val_ssim_x0ft']:.3f})")
