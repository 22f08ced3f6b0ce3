"""``sr3-x0ft``: a v-predicting SR3's one-pass x̂₀ fine-tuned for the posterior mean.

The row ``sr3v-x0ft_1`` (:mod:`cryodiff.training.x0_finetune`): a copy of SR3's network is
fine-tuned at its noisiest level on the training split, with the squared error of its
one-pass x̂₀ and the regression U-Nets' recipe (the preset's steps: SR3 + this fine-tuning
train as many optimiser steps as ``supervised-2x`` and ``supervised-large-2x``, the latter
SR3's size), then read out exactly as ``sr3v-x0_1`` (one pass per particle from pure noise,
through the dihedral self-ensemble when the benchmark has it). The fine-tuned weights are
kept beside the SR3 run (``x0ft.pt``) under a key of their settings and of SR3's exact
weights, and reused by a later identical run.

The row ``sr3v-x0ft-ssim_1`` trains that fine-tuned network on for a short SSIM stage
(:func:`cryodiff.baselines.regression.ssim_stage_recipe`: a tenth more steps, with
``1 − SSIM`` added to the squared error): the posterior mean that L2 gives is PSNR's optimum,
but its faint background ripple costs SSIM, whose luminance and contrast terms punish any
signal where the truth is flat. Kept as ``x0ft_ssim.pt`` under a key of the stage, of the
fine-tuned network's key and of its exact weights.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cryodiff.benchmark.conditions import Condition
from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.benchmark.methods import SELF_ENSEMBLE_NOTE, MethodOutput, one_pass_row
from cryodiff.benchmark.post_cache import post_key, trained_post, training_particles
from cryodiff.denoise import Denoiser
from cryodiff.models.unet import SR3UNet
from cryodiff.training.checkpoint import weights_digest
from cryodiff.training.x0_finetune import (SSIM_WEIGHT, finetune_x0, ssim_stage_recipe,
                                          x0ft_recipe)

ROW = "sr3-x0ft_1"
SSIM_ROW = "sr3-x0ft-ssim_1"
CACHE_FILE = "x0ft.pt"
SSIM_CACHE_FILE = "x0ft_ssim.pt"
# The last fine-tuned network made without a cache folder (a run on a ``--checkpoint``), so
# that sr3-x0ft-ssim builds on sr3-x0ft's network instead of fine-tuning a second one.
_LAST: dict = {}


def _x0ft_network(denoiser: Denoiser, condition: Condition, config: BenchmarkConfig,
                  cache_dir: Path | None):
    """``(network, fit seconds, reused, recipe, particles, key)`` of the x̂₀ fine-tuning of
    ``denoiser`` (cached in ``cache_dir/x0ft.pt``)."""
    from cryodiff.benchmark.methods import train_config_for

    device = next(denoiser.model.parameters()).device
    recipe = x0ft_recipe(train_config_for(config, condition))
    m = training_particles(config, condition)
    key = post_key("x0ft", recipe, m, condition, config, denoiser)
    key += weights_digest(denoiser.model.state_dict())  # SR3's exact weights, not only its step

    def train():
        return finetune_x0(denoiser, condition.train.noisy[:m], condition.train.clean_ctf[:m],
                           recipe)

    if cache_dir is None and _LAST.get("key") == key:  # no folder to cache in (--checkpoint)
        return _LAST["net"], _LAST["seconds"], True, recipe, m, key
    net, fit_seconds, reused = trained_post(cache_dir, CACHE_FILE, key, denoiser, device, train,
                                            build=lambda: SR3UNet(denoiser.config.model))
    if cache_dir is None:
        _LAST.clear()
        _LAST.update(key=key, net=net, seconds=fit_seconds)
    return net, fit_seconds, reused, recipe, m, key


def _sr3_fit_seconds(sr3_rows: list[MethodOutput]) -> float | None:
    sr3 = next((row for row in sr3_rows if row.family == "sr3" and row.fit_seconds), None)
    return None if sr3 is None else sr3.fit_seconds


def _readout_row(denoiser: Denoiser, net, condition: Condition, config: BenchmarkConfig,
                 sr3_rows: list[MethodOutput], own_seconds: float) -> MethodOutput:
    """``net`` read out as ``sr3v-x0_1`` on the 2D test particles; its fit seconds are SR3's
    (None when unknown) plus ``own_seconds``."""
    sr3_seconds = _sr3_fit_seconds(sr3_rows)
    return one_pass_row(dataclasses.replace(denoiser, model=net),
                        condition.test.noisy[:config.n_test_2d], config,
                        None if sr3_seconds is None else sr3_seconds + own_seconds)


def _note_tail(config: BenchmarkConfig, reused: bool) -> str:
    return ((f"; {SELF_ENSEMBLE_NOTE}" if config.self_ensemble else "")
            + ("; trained by an earlier run with the same settings (reused)" if reused else ""))


def _skipped(name: str, family: str) -> list[MethodOutput]:
    return [MethodOutput(name, family, None, status="skipped",
                         note="needs a v-predicting SR3 (--sr3-prediction v)")]


def run_sr3_x0ft(denoiser: Denoiser, condition: Condition, config: BenchmarkConfig,
                 sr3_rows: list[MethodOutput], cache_dir: Path | None = None
                 ) -> list[MethodOutput]:
    """The ``sr3v-x0ft_1`` row of ``denoiser`` under ``config.training_seed`` on the 2D test
    particles; a skipped row for an ε-predicting SR3. ``fit_seconds``: SR3's (from
    ``sr3_rows``) plus the fine-tuning's."""
    name = config.sr3_row(ROW)
    if config.sr3_prediction != "v":
        return _skipped(name, "sr3-x0ft")
    net, fit_seconds, reused, recipe, m, _ = _x0ft_network(denoiser, condition, config,
                                                           cache_dir)
    row = _readout_row(denoiser, net, condition, config, sr3_rows, fit_seconds)
    note = (f"SR3's one-pass x̂₀ at the noisiest level, its network fine-tuned there with L2 "
            f"+ EMA ({recipe.steps} steps × {recipe.batch_size} on {m} training particles, "
            f"the regression U-Nets' recipe, on top of SR3)" + _note_tail(config, reused))
    return [dataclasses.replace(row, method=name, family="sr3-x0ft", note=note)]


def run_sr3_x0ft_ssim(denoiser: Denoiser, condition: Condition, config: BenchmarkConfig,
                      sr3_rows: list[MethodOutput], cache_dir: Path | None = None
                      ) -> list[MethodOutput]:
    """The ``sr3v-x0ft-ssim_1`` row: ``sr3v-x0ft_1``'s fine-tuned network (trained here when
    no cache holds it) trained on for the SSIM stage (:func:`~cryodiff.baselines.regression.
    ssim_stage_recipe`, squared error + ``SSIM_WEIGHT · (1 − SSIM)``), cached in
    ``cache_dir/x0ft_ssim.pt``, and read out as ``sr3v-x0_1``. ``fit_seconds``: SR3's, the
    fine-tuning's and the stage's."""
    name = config.sr3_row(SSIM_ROW)
    if config.sr3_prediction != "v":
        return _skipped(name, "sr3-x0ft-ssim")
    tuned, x0ft_seconds, _, recipe, m, x0ft_key = _x0ft_network(denoiser, condition, config,
                                                                cache_dir)
    stage = ssim_stage_recipe(recipe)
    key = json.dumps({"x0ft": x0ft_key, "x0ft_weights": weights_digest(tuned.state_dict()),
                      "ssim_stage": dataclasses.asdict(stage), "ssim_weight": SSIM_WEIGHT},
                     sort_keys=True)
    device = next(denoiser.model.parameters()).device

    def train():
        return finetune_x0(denoiser, condition.train.noisy[:m], condition.train.clean_ctf[:m],
                           stage, ssim_weight=SSIM_WEIGHT, start=tuned)

    net, stage_seconds, reused = trained_post(cache_dir, SSIM_CACHE_FILE, key, denoiser, device,
                                              train, build=lambda: SR3UNet(denoiser.config.model))
    row = _readout_row(denoiser, net, condition, config, sr3_rows,
                       x0ft_seconds + stage_seconds)
    note = (f"as sr3v-x0ft_1, its fine-tuned network trained on for {stage.steps} steps × "
            f"{stage.batch_size} with L2 + {SSIM_WEIGHT} · (1 − SSIM) at a fifth of the "
            f"learning rate ({recipe.steps + stage.steps} fine-tuning steps in all: "
            f"{stage.steps} beyond sr3v-x0ft_1's and beyond the supervised-2x budget)"
            + _note_tail(config, reused))
    return [dataclasses.replace(row, method=name, family="sr3-x0ft-ssim", note=note)]
