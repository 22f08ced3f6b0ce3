"""``sr3-x0ft``: a v-predicting SR3's one-pass x̂₀ fine-tuned for the posterior mean.

The row ``sr3v-x0ft_1`` (:mod:`cryodiff.training.x0_finetune`): a copy of SR3's network is
fine-tuned at its noisiest level on the training split, with the squared error of its
one-pass x̂₀ and the regression U-Nets' recipe (the preset's steps: SR3 + this fine-tuning
train as many optimiser steps as ``supervised-2x`` and ``supervised-large-2x``, the latter
SR3's size), then read out exactly as ``sr3v-x0_1`` (one pass per particle from pure noise,
through the dihedral self-ensemble when the benchmark has it). The fine-tuned weights are
kept beside the SR3 run (``x0ft.pt``) under a key of their settings and of SR3's exact
weights, and reused by a later identical run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cryodiff.benchmark.conditions import Condition
from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.benchmark.methods import SELF_ENSEMBLE_NOTE, MethodOutput, one_pass_row
from cryodiff.benchmark.post_cache import post_key, trained_post, training_particles
from cryodiff.denoise import Denoiser
from cryodiff.models.unet import SR3UNet
from cryodiff.training.checkpoint import weights_digest
from cryodiff.training.x0_finetune import finetune_x0, x0ft_recipe

ROW = "sr3-x0ft_1"
CACHE_FILE = "x0ft.pt"


def run_sr3_x0ft(denoiser: Denoiser, condition: Condition, config: BenchmarkConfig,
                 sr3_rows: list[MethodOutput], cache_dir: Path | None = None
                 ) -> list[MethodOutput]:
    """The ``sr3v-x0ft_1`` row of ``denoiser`` under ``config.training_seed`` on the 2D test
    particles; a skipped row for an ε-predicting SR3. ``fit_seconds``: SR3's (from
    ``sr3_rows``) plus the fine-tuning's."""
    from cryodiff.benchmark.methods import train_config_for

    name = config.sr3_row(ROW)
    if config.sr3_prediction != "v":
        return [MethodOutput(name, "sr3-x0ft", None, status="skipped",
                             note="needs a v-predicting SR3 (--sr3-prediction v)")]
    device = next(denoiser.model.parameters()).device
    recipe = x0ft_recipe(train_config_for(config, condition))
    m = training_particles(config, condition)
    key = post_key("x0ft", recipe, m, condition, config, denoiser)
    key += weights_digest(denoiser.model.state_dict())  # SR3's exact weights, not only its step

    def train():
        return finetune_x0(denoiser, condition.train.noisy[:m], condition.train.clean_ctf[:m],
                           recipe)

    net, fit_seconds, reused = trained_post(cache_dir, CACHE_FILE, key, denoiser, device, train,
                                            build=lambda: SR3UNet(denoiser.config.model))
    sr3 = next((row for row in sr3_rows if row.family == "sr3" and row.fit_seconds), None)
    row = one_pass_row(dataclasses.replace(denoiser, model=net),
                       condition.test.noisy[:config.n_test_2d], config,
                       None if sr3 is None else sr3.fit_seconds + fit_seconds)
    note = (f"SR3's one-pass x̂₀ at the noisiest level, its network fine-tuned there with L2 "
            f"+ EMA ({recipe.steps} steps × {recipe.batch_size} on {m} training particles, "
            f"the regression U-Nets' recipe, on top of SR3)"
            + (f"; {SELF_ENSEMBLE_NOTE}" if config.self_ensemble else "")
            + ("; trained by an earlier run with the same settings (reused)" if reused else ""))
    return [dataclasses.replace(row, method=name, family="sr3-x0ft", note=note)]
