"""Extra SR3 rows aimed at PSNR: an L2 + EMA post-processor, and the one-pass x̂₀ read-out.

Both reuse a trained SR3 (the paper-faithful rows of :func:`cryodiff.benchmark.methods.run_sr3`
stay as they are):

* ``sr3+pp-mse_<steps>`` — the same ``steps``-step DDPM samples of the test particles as the
  ``sr3_<steps>`` row (same seed), refined by a post-processor trained for the mean
  (:func:`cryodiff.training.postprocess_mse.train_mse_postprocessor`) on every training and
  validation particle SR3 saw;
* ``sr3-x0_1`` — the network's own x̂₀ at the first step from pure noise: one network
  evaluation, ``(y_T − √(1−γ̄_T)·ε̂) / √γ̄_T`` with the schedule's noisiest ``γ̄_T``. With an
  exact ε̂ this is ``E[y₀ | y_T, particle]``, which at ``γ̄_T → 0`` is the posterior mean;
  dividing by ``√γ̄_T`` amplifies the network's error, which this row measures.
"""

from __future__ import annotations

import time

import torch

from cryodiff.benchmark.conditions import Condition
from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.benchmark.methods import MethodOutput
from cryodiff.denoise import Denoiser, denoise_images
from cryodiff.diffusion import respace
from cryodiff.sampling import sample_progressive
from cryodiff.training.data import generator_for
from cryodiff.training.postprocess_mse import MsePostConfig, train_mse_postprocessor


@torch.no_grad()
def one_pass_x0(denoiser: Denoiser, noisy: torch.Tensor, seed: int = 0,
                batch_size: int = 256) -> torch.Tensor:
    """x̂₀ of the first reverse step from ``y_T ~ N(0, I)`` for ``noisy (N, L, L)``; raw units."""
    norm, device = denoiser.normalisation, next(denoiser.model.parameters()).device
    schedule = respace(denoiser.schedule, 1).to(device)
    out = []
    for number, start in enumerate(range(0, len(noisy), batch_size)):
        condition = norm.condition(noisy[start:start + batch_size].float())[:, None].to(device)
        first = next(sample_progressive(denoiser.model, condition, schedule, "ddpm",
                                        generator=generator_for(seed, number, device=device)))
        out.append(norm.denormalise(first["y0"][:, 0]).cpu())
    return torch.cat(out)


def run_sr3_mse(denoiser: Denoiser, condition: Condition, config: BenchmarkConfig,
                post: MsePostConfig = MsePostConfig()) -> list[MethodOutput]:
    """The ``sr3+pp-mse_<steps>`` and ``sr3-x0_1`` rows on the first ``n_test_2d`` test
    particles (see the module docstring); ``fit_seconds`` is the new post-processor's
    training time (sampling its training inputs included), SR3's own not counted."""
    device = next(denoiser.model.parameters()).device
    train_noisy = torch.cat([condition.train.noisy, condition.val.noisy])
    train_target = torch.cat([condition.train.clean_ctf, condition.val.clean_ctf])
    start = time.perf_counter()
    net = train_mse_postprocessor(denoiser, train_noisy, train_target, post, device)
    fit_seconds = time.perf_counter() - start
    steps, n = post.sampling_steps, config.n_test_2d
    noisy = condition.test.noisy[:n]
    start = time.perf_counter()
    samples = denoise_images(denoiser.model, noisy, denoiser.normalisation, denoiser.schedule,
                             steps=steps, sampler=config.sr3_sampler, seed=config.seed,
                             batch_size=256, device=device).mean
    norm = denoiser.normalisation
    with torch.no_grad():
        refined = norm.denormalise(net(norm.target(samples)[:, None].to(device),
                                       norm.condition(noisy)[:, None].to(device))[:, 0]).cpu()
    seconds = (time.perf_counter() - start) / n
    start = time.perf_counter()
    x0 = one_pass_x0(denoiser, noisy, seed=config.seed)
    x0_seconds = (time.perf_counter() - start) / n
    return [
        MethodOutput(f"sr3+pp-mse_{steps}", "sr3+pp-mse", refined, seconds, fit_seconds,
                     note=f"{steps} {config.sr3_sampler.upper()} steps + post-processor trained "
                          f"with L2 + EMA on {post.draws} draw(s) of {len(train_noisy)} particles"),
        MethodOutput("sr3-x0_1", "sr3-x0", x0, x0_seconds, 0.0,
                     note="one network pass: x̂₀ from pure noise at the noisiest level"),
    ]
