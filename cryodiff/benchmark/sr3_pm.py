"""``sr3-pm``: cryodiff's own denoiser for PSNR — SR3's posterior mean, refined.

PSNR rewards the posterior mean ``E[clean | particle]``. SR3 draws from the posterior, so the
mean of ``K`` draws estimates it with a leftover spread of ``σ²/K``, plus SR3's own errors.
A post-processor of the paper's shape (:class:`~cryodiff.models.postprocess.PostProcessUNet`:
it sees the mean and the noisy particle) trained with the squared error on such means of the
training split removes what is left. It is trained with the recipe every regression U-Net of
the benchmark gets (:meth:`~cryodiff.baselines.regression.RegressionRecipe.from_train_config`:
the preset's ``steps``, ``batch_size``, ``lr``, warm-up, clipping, EMA, precision), so SR3 and
this post-processor together train twice the steps of one U-Net — the ``supervised-2x`` row
of the table has that budget. At test time the post-processor runs through the dihedral
self-ensemble when the benchmark's ``self_ensemble`` is on, as every network trained here does.

Measured levers (``benchmarks/denoiser_levers.py``, ``docs/benchmarks.md`` section 10; ``ci``,
phantom, one training seed): the full budget instead of ``post_train_steps`` added 0.22–0.35
dB, the mean of 4 draws instead of one 0.10–0.19 dB, the self-ensemble 0.03–0.11 dB.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from cryodiff.benchmark.conditions import Condition
from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.benchmark.methods import SELF_ENSEMBLE_NOTE, MethodOutput
from cryodiff.benchmark.post_cache import post_key, trained_post, training_particles
from cryodiff.denoise import Denoiser
from cryodiff.training.config import TrainConfig
from cryodiff.training.pm_postprocess import pm_recipe
from cryodiff.training.postprocess_mse import (MsePostConfig, fit_mse_postprocessor,
                                               mean_of_draws, refine_views)

# Added to a training seed for the test particles' draws, so a seed's test draws never
# share a seed stream with its own training draws (nor with another seed's, for training
# seeds fewer than 5,000 apart; they would be drawn for other particles anyway).
TEST_DRAW_SEED_OFFSET = 5_000


def pm_post_config(train: TrainConfig, config: BenchmarkConfig) -> MsePostConfig:
    """The post-processor's recipe (:func:`~cryodiff.training.pm_postprocess.pm_recipe`, as
    ``cryodiff train --pm-postprocess`` trains it): ``pm_draws`` draws of ``sr3_fast_steps``
    steps per particle, trained like every regression U-Net, seeded with the training seed."""
    return pm_recipe(train, config.sr3_fast_steps, config.sr3_sampler, config.pm_draws,
                     config.training_seed)


def run_sr3_pm(denoiser: Denoiser, condition: Condition, config: BenchmarkConfig,
               sr3_rows: list[MethodOutput], cache_dir: Path | None = None
               ) -> list[MethodOutput]:
    """The ``sr3-pm<K>_<steps>`` row of ``denoiser`` under ``config.training_seed``.

    Trains (or reloads from ``cache_dir/pm_post_<steps>_k<K>.pt``) the post-processor on means
    of ``K = pm_draws`` draws of the first ``mse_post_samples`` training particles (all by
    default), then denoises the test particles — the whole 3D set when ``"sr3-pm"`` is in
    ``methods_3d``, else the 2D set — from the mean of ``K`` draws, the ``sr3_<steps>`` row's
    samples (from ``sr3_rows``) counting as the first. ``fit_seconds``: SR3's plus this
    post-processor's, its training draws included.
    """
    from cryodiff.benchmark.methods import train_config_for

    device = next(denoiser.model.parameters()).device
    steps, k = config.sr3_fast_steps, config.pm_draws
    post = pm_post_config(train_config_for(config, condition), config)
    m = training_particles(config, condition)
    key = post_key("pm_post", post, m, condition, config, denoiser)
    noisy_train, target_train = condition.train.noisy[:m], condition.train.clean_ctf[:m]

    def train():
        means = mean_of_draws(denoiser, noisy_train, post, device)
        return fit_mse_postprocessor(denoiser, means[None], noisy_train, target_train, post,
                                     device)

    net, fit_seconds, reused = trained_post(cache_dir, f"pm_post_{steps}_k{k}.pt", key,
                                            denoiser, device, train)
    n = config.n_test_3d if "sr3-pm" in config.methods_3d else config.n_test_2d
    noisy = condition.test.noisy[:n]
    sr3 = next((row for row in sr3_rows if row.method == config.sr3_row(f"sr3_{steps}")), None)
    first = sr3.images[:n] if sr3 is not None and sr3.images is not None \
        and len(sr3.images) >= n else None
    start = time.perf_counter()
    test_post = dataclasses.replace(post, seed=post.seed + TEST_DRAW_SEED_OFFSET)
    mean = denoiser.normalisation.denormalise(mean_of_draws(denoiser, noisy, test_post, device,
                                                            first))
    refined = refine_views(net, denoiser, mean, noisy, config.self_ensemble)
    seconds = (time.perf_counter() - start) / n
    if first is not None:
        seconds += sr3.seconds_per_image or 0.0
    sr3_fit = None if sr3 is None else sr3.fit_seconds
    note = (f"mean of {k} SR3 samples ({steps} {config.sr3_sampler.upper()} steps) refined by "
            f"a post-processor trained on such means with L2 + EMA ({post.steps} steps × "
            f"{post.batch_size} on {m} training particles, the regression U-Nets' recipe, on "
            f"top of SR3)" + (f"; {SELF_ENSEMBLE_NOTE}" if config.self_ensemble else "")
            + ("; trained by an earlier run with the same settings (reused)" if reused else ""))
    return [MethodOutput(config.sr3_row(f"sr3-pm{k}_{steps}"), "sr3-pm", refined, seconds,
                         None if sr3_fit is None else sr3_fit + fit_seconds, note=note)]
