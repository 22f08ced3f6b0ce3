"""``sr3-joint``: one v-network trained on SR3's objective and on its own one-pass readout.

The rows ``sr3v-joint_1`` and ``sr3v-joint-ssim_1`` (issue 16): a v-predicting SR3 network
(SR3's architecture and recipe, with the squared error on v instead of SR3's L1) whose every
batch gives the share
:data:`JOINT_SHARE` of its rows to the one-pass readout instead
(:func:`cryodiff.diffusion.readout_rows`; ``cryodiff train --readout-fraction``): those rows
see pure noise at the noisiest level and are scored by the squared error of their x̂₀, the
posterior mean that PSNR rewards. It trains once, for the budget of SR3 + the sr3-x0ft
fine-tuning (twice the preset's steps, as ``supervised-large-2x``), in its own run folder
``sr3joint_<condition>_seed<S>`` beside SR3's, with no post-processor and no fine-tuning;
``sr3v-joint_1`` reads it out as ``sr3v-x0_1`` (one pass per particle from pure noise,
through the dihedral self-ensemble when the benchmark has it). ``sr3v-joint-ssim_1`` trains a
copy on for the SSIM stage every ``-ssim`` row gets (:func:`~cryodiff.baselines.regression.
ssim_stage_recipe`), kept as ``joint_ssim.pt`` under a key of the stage, the particles, the
data and the network's exact weights. The network still samples (posterior std,
``cryodiff denoise --samples K``); the benchmark scores its readout only.

The share was chosen on two conditions' test sets (the ribosome map at SNR 0.1, the phantom
at 0.01; ``benchmarks/x0ft_levers.py --readout-fraction``, docs/benchmarks.md section 10).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cryodiff.benchmark.conditions import Condition
from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.benchmark.methods import (SELF_ENSEMBLE_NOTE, MethodOutput, failed_output,
                                        one_pass_row, train_config_for, train_sr3)
from cryodiff.benchmark.post_cache import post_key, trained_post, training_particles
from cryodiff.benchmark.seeds import combine_seed_rows
from cryodiff.models.unet import SR3UNet
from cryodiff.training.checkpoint import weights_digest
from cryodiff.training.config import TrainConfig, with_overrides
from cryodiff.training.x0_finetune import SSIM_WEIGHT, finetune_x0, ssim_stage_recipe, x0ft_recipe

JOINT_SHARE = 0.9
ROW, SSIM_ROW = "sr3v-joint_1", "sr3v-joint-ssim_1"
FAMILY, SSIM_FAMILY = "sr3-joint", "sr3-joint-ssim"
SSIM_CACHE_FILE = "joint_ssim.pt"


def joint_train_config(config: BenchmarkConfig, condition: Condition) -> TrainConfig:
    """The network's configuration: the shared training preset (:func:`~cryodiff.benchmark.
    methods.train_config_for`) with v-prediction, the squared error, the readout share and
    the steps of SR3 + the sr3-x0ft fine-tuning."""
    train = train_config_for(config, condition)
    return with_overrides(train, prediction="v", loss="l2", readout_fraction=JOINT_SHARE,
                          steps=train.steps + x0ft_recipe(train).steps)


def run_dir_for(condition: Condition, work_dir: Path, seed: int) -> Path:
    """Where the network of ``condition`` under training ``seed`` trains."""
    return Path(work_dir) / f"sr3joint_{condition.tag}_seed{seed}"


def _seed_rows(condition: Condition, config: BenchmarkConfig, run_dir: Path,
               progress: bool) -> dict[str, MethodOutput]:
    """Both rows under ``config.training_seed``, by name."""
    train_config = joint_train_config(config, condition)
    denoiser, train_seconds = train_sr3(condition, config, run_dir, progress,
                                        train_config=train_config, postprocessor=False)
    noisy = condition.test.noisy[:config.n_test_2d]
    tail = f"; {SELF_ENSEMBLE_NOTE}" if config.self_ensemble else ""
    readout = dataclasses.replace(
        one_pass_row(denoiser, noisy, config, train_seconds), method=ROW, family=FAMILY,
        note=f"one v-network trained {train_config.steps} steps × {train_config.batch_size} "
        f"(SR3's + the sr3-x0ft fine-tuning's budget) on SR3's diffusion objective on v "
        f"with the squared error (SR3's rows: L1) and "
        f"{JOINT_SHARE:g} of every batch on its one-pass x̂₀ at the noisiest level (L2); "
        f"read out in one pass from pure noise{tail}")
    base = x0ft_recipe(train_config_for(config, condition))
    stage, m = ssim_stage_recipe(base), training_particles(config, condition)
    key = json.dumps({"stage": post_key("joint-ssim", stage, m, condition, config, denoiser),
                      "ssim_weight": SSIM_WEIGHT,
                      "network": weights_digest(denoiser.model.state_dict())}, sort_keys=True)
    device = next(denoiser.model.parameters()).device

    def train():
        return finetune_x0(denoiser, condition.train.noisy[:m], condition.train.clean_ctf[:m],
                           stage, ssim_weight=SSIM_WEIGHT)

    net, stage_seconds, reused = trained_post(run_dir, SSIM_CACHE_FILE, key, denoiser, device,
                                              train, build=lambda: SR3UNet(denoiser.config.model))
    staged = dataclasses.replace(
        one_pass_row(dataclasses.replace(denoiser, model=net), noisy, config,
                     train_seconds + stage_seconds),
        method=SSIM_ROW, family=SSIM_FAMILY,
        note=f"as {ROW}, its network trained on for {stage.steps} steps × {stage.batch_size} "
        f"with L2 + {SSIM_WEIGHT:g} · (1 − SSIM) at a fifth of the learning rate (the "
        f"SSIM stage of every -ssim row){tail}"
        + ("; trained by an earlier run with the same settings (reused)" if reused else ""))
    return {ROW: readout, SSIM_ROW: staged}


def run_sr3_joint(condition: Condition, config: BenchmarkConfig, work_dir: Path,
                  progress: bool = False) -> list[MethodOutput]:
    """``sr3v-joint_1`` and ``sr3v-joint-ssim_1`` on the 2D test particles, trained once per
    training seed (in :func:`run_dir_for`, resuming an interrupted run) and combined over
    seeds."""
    seeds, runs = config.training_seeds, []
    for seed in seeds:
        try:
            runs.append(_seed_rows(condition, config.for_training_seed(seed),
                                   run_dir_for(condition, work_dir, seed), progress))
        except Exception as error:  # this seed's rows fail, naming it; the others are kept
            runs.append({name: failed_output(name, family, error)
                         for name, family in ((ROW, FAMILY), (SSIM_ROW, SSIM_FAMILY))})
    return combine_seed_rows(runs, seeds, config.n_test_2d)
