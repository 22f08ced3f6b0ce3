"""Extra SR3 rows aimed at PSNR: an L2 + EMA post-processor per step count, and the one-pass
x̂₀ read-out.

Both reuse a trained SR3 (the paper-faithful rows of :func:`cryodiff.benchmark.methods.run_sr3`
stay as they are):

* ``sr3+pp-mse_<steps>`` (the ``"sr3-mse"`` method of the benchmark) — the ``sr3_<steps>``
  row's own samples of the test particles, refined by a post-processor trained for the mean
  (:func:`cryodiff.training.postprocess_mse.train_mse_postprocessor`) on ``steps``-step
  samples of the training split, one post-processor per step count;
* :func:`cryodiff.denoise.one_pass_x0` — the network's own x̂₀
  at the first step from pure noise: one network evaluation. With ε-prediction it divides
  the network's error by ``√γ̄_T`` (≈ 150×; its PSNR was 2.5 dB when measured), so it is a
  row of the table only for a v-predicting SR3 (``sr3v-x0_1``,
  :func:`cryodiff.benchmark.methods.run_sr3`).
"""

from __future__ import annotations

import time
from pathlib import Path

from cryodiff.benchmark.conditions import Condition
from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.benchmark.methods import SELF_ENSEMBLE_NOTE, MethodOutput
from cryodiff.benchmark.post_cache import post_key, trained_post, training_particles
from cryodiff.denoise import Denoiser
from cryodiff.training.postprocess_mse import (mse_post_config, refine_views,
                                               train_mse_postprocessor)


def run_sr3_mse(denoiser: Denoiser, condition: Condition, config: BenchmarkConfig,
                sr3_rows: list[MethodOutput], cache_dir: Path | None = None
                ) -> list[MethodOutput]:
    """One ``sr3+pp-mse_<steps>`` row (family ``"sr3-mse"``) per ``sr3_<steps>`` row of
    ``sr3_rows`` (:func:`cryodiff.benchmark.methods.run_sr3` of the same ``denoiser`` and
    ``config``): a post-processor trained for that step count refines those very samples, so
    the rows cover the same test particles (the 3D set for the fast step count when SR3 is
    reconstructed) and differ from ``sr3_<steps>`` by the post-processor alone.

    Step counts above ``config.mse_post_max_steps`` get none (sampling the training particles
    costs ``particles × steps`` network passes). Each post-processor learns from
    ``steps``-step samples of the first ``mse_post_samples``
    particles of the training split (all of them by default; the pairs every trained method
    gets), with the recipe of :func:`cryodiff.training.postprocess_mse.mse_post_config`
    seeded by ``config.training_seed``. ``fit_seconds``: SR3's (``sr3_rows``') plus this
    post-processor's training, its training samples included. With ``cache_dir`` (the SR3
    run's folder) each trained post-processor is saved there (``mse_post_<steps>.pt``) and
    reused by a later run with the same SR3 checkpoint and settings.
    """
    from cryodiff.benchmark.methods import train_config_for

    device = next(denoiser.model.parameters()).device
    train = train_config_for(config, condition)
    m = training_particles(config, condition)
    rows = []
    for row in sr3_rows:
        steps = int(row.method.rsplit("_", 1)[1]) if row.family == "sr3" else None
        if steps is None or row.images is None or (
                config.mse_post_max_steps is not None and steps > config.mse_post_max_steps):
            continue
        post = mse_post_config(train, steps, config.sr3_sampler, config.training_seed)
        key = post_key("post", post, m, condition, config, denoiser)
        net, fit_seconds, reused = trained_post(
            cache_dir, f"mse_post_{steps}.pt", key, denoiser, device,
            lambda post=post: train_mse_postprocessor(
                denoiser, condition.train.noisy[:m], condition.train.clean_ctf[:m], post,
                device))
        samples = row.images
        start = time.perf_counter()
        refined = refine_views(net, denoiser, samples, condition.test.noisy[:len(samples)],
                               config.self_ensemble)
        seconds = (row.seconds_per_image or 0.0) + (time.perf_counter() - start) / len(samples)
        rows.append(MethodOutput(
            config.sr3_row(f"sr3+pp-mse_{steps}"), "sr3-mse", refined, seconds,
            None if row.fit_seconds is None else row.fit_seconds + fit_seconds,
            note=f"the {config.sr3_row(f'sr3_{steps}')} samples + a post-processor trained for them with L2 + EMA "
                 f"({post.steps} steps on {m} training particles, on top of SR3)"
                 + (f"; {SELF_ENSEMBLE_NOTE}" if config.self_ensemble else "")
                 + ("; trained by an earlier run with the same settings (reused)"
                    if reused else "")))
    return rows
