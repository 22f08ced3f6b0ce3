"""A post-processor trained for the posterior mean: L2 loss, EMA, every training particle.

The paper-faithful post-processor (:mod:`cryodiff.training.postprocess`) learns with an L1
loss — whose minimiser is the per-pixel *median* of the clean images compatible with a sample
— from ``post_n_samples`` cached samples, and is used without weight averaging. PSNR rewards
the *mean* (the minimiser of the squared error), so this variant changes exactly those
levers and nothing else about the network: the squared error, an exponential moving average
of the weights (as the diffusion model's), AdamW with warm-up and gradient clipping, and
``draws`` fresh sampler draws of *every* training particle instead of one cached draw of a
subset. The network is the same :class:`~cryodiff.models.postprocess.PostProcessUNet`.
In the benchmark (:func:`mse_post_config`) its optimiser recipe is the one every learnt
method shares: the training preset's ``weight_decay``, ``warmup_steps``, ``grad_clip``,
``ema_decay`` and ``amp``, with the post-processor's ``post_lr``, ``post_batch_size`` and
``post_train_steps``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cryodiff.denoise import Denoiser, denoise_images
from cryodiff.models.postprocess import PostProcessUNet
from cryodiff.training.config import TrainConfig
from cryodiff.training.data import PURPOSE_AUGMENT, PURPOSE_BATCH, augment_pairs, generator_for
from cryodiff.self_ensemble import self_ensemble
from cryodiff.threads import adapt_threads
from cryodiff.training.loop import autocast_dtype, optimiser_step, warmup_lr


@dataclass(frozen=True)
class MsePostConfig:
    """Training of the mean-seeking post-processor: ``draws`` sampler outputs per training
    particle (``sampling_steps`` steps of ``sampler``), ``steps`` AdamW steps of
    ``batch_size`` at ``lr`` (``weight_decay``) with a linear warm-up over ``warmup_steps``,
    gradient-norm clipping at ``grad_clip``, EMA with ``ema_decay`` (ramped as the diffusion
    model's), autocast as ``amp`` resolves on the device (as the diffusion model's loop)."""

    draws: int = 1
    sampling_steps: int = 10
    sampler: str = "ddpm"
    steps: int = 600
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    amp: str = "none"
    seed: int = 0


def mse_post_config(train: TrainConfig, sampling_steps: int, sampler: str = "ddpm",
                    seed: int | None = None, draws: int = 1) -> MsePostConfig:
    """The benchmark's recipe for a post-processor of ``sampling_steps``-step samples: the
    training preset ``train``'s post-processor budget (``post_train_steps`` of
    ``post_batch_size`` at ``post_lr``) and its shared optimiser settings (weight decay,
    warm-up, clipping, EMA, precision); ``seed`` defaults to the preset's."""
    return MsePostConfig(draws=draws, sampling_steps=sampling_steps, sampler=sampler,
                         steps=train.post_train_steps, batch_size=train.post_batch_size,
                         lr=train.post_lr, weight_decay=train.weight_decay,
                         warmup_steps=train.warmup_steps, grad_clip=train.grad_clip,
                         ema_decay=train.ema_decay, amp=train.amp,
                         seed=train.seed if seed is None else seed)


def sampler_draws(denoiser: Denoiser, noisy: torch.Tensor, config: MsePostConfig,
                  device: torch.device) -> torch.Tensor:
    """``(draws, N, L, L)`` normalised sampler outputs for ``noisy (N, L, L)`` (raw units),
    each draw from its own seed stream."""
    return torch.stack([_one_draw(denoiser, noisy, config, draw, device)
                        for draw in range(config.draws)])


def _one_draw(denoiser: Denoiser, noisy: torch.Tensor, config: MsePostConfig, draw: int,
              device: torch.device) -> torch.Tensor:
    """Draw number ``draw`` of ``noisy (N, L, L)`` (its own seed stream), normalised units."""
    norm = denoiser.normalisation
    return norm.target(denoise_images(denoiser.model, noisy, norm, denoiser.schedule,
                                      steps=config.sampling_steps, sampler=config.sampler,
                                      seed=10_000 * (config.seed + 1) + draw, device=device,
                                      batch_size=256).mean)


def mean_of_draws(denoiser: Denoiser, noisy: torch.Tensor, config: MsePostConfig,
                  device: torch.device, first: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of the ``config.draws`` draws of :func:`sampler_draws`, normalised units
    ``(N, L, L)``, summed one draw at a time (memory of two stacks, not ``draws``).

    ``first``: raw-unit samples of the same particles already drawn (e.g. a benchmark row's),
    counted as one of the draws; the ``draws − 1`` others are draws ``0 … draws − 2``.
    """
    total = torch.zeros(noisy.shape, dtype=torch.float64)
    fresh = config.draws
    if first is not None:
        total += denoiser.normalisation.target(first.float()).double().cpu()
        fresh -= 1
    for draw in range(fresh):
        total += _one_draw(denoiser, noisy, config, draw, device).double().cpu()
    return (total / config.draws).float()


def train_mse_postprocessor(denoiser: Denoiser, noisy: torch.Tensor, target: torch.Tensor,
                            config: MsePostConfig = MsePostConfig(),
                            device: str | torch.device = "cpu") -> PostProcessUNet:
    """Train a post-processor of ``denoiser``'s shape on ``(noisy, target)`` pairs
    ``(N, L, L)`` in raw units (target: the denoiser's training target); returns the EMA
    network in eval mode, ready for ``postprocess(sample, condition)`` in normalised units."""
    device = torch.device(device)
    samples = sampler_draws(denoiser, noisy, config, device)
    return fit_mse_postprocessor(denoiser, samples, noisy, target, config, device)


def fit_mse_postprocessor(denoiser: Denoiser, samples: torch.Tensor, noisy: torch.Tensor,
                          target: torch.Tensor, config: MsePostConfig = MsePostConfig(),
                          device: str | torch.device = "cpu") -> PostProcessUNet:
    """Train the post-processor on given ``samples (D, N, L, L)`` (normalised, e.g. from
    :func:`sampler_draws`, or means of several draws) of the particles ``noisy (N, L, L)``
    with ``target (N, L, L)`` (raw units): ``config``'s recipe, every draw a training pair;
    ``config.draws`` and its sampling fields are not used here. Returns the EMA network."""
    device = torch.device(device)
    norm = denoiser.normalisation
    draws = samples.shape[0]
    samples = samples.flatten(0, 1)[:, None]
    condition = norm.condition(noisy.float())[:, None].repeat(draws, 1, 1, 1)
    clean = norm.target(target.float())[:, None].repeat(draws, 1, 1, 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = PostProcessUNet(denoiser.config.postprocess).to(device)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    amp_dtype = autocast_dtype(config.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    net.train()
    for step in range(config.steps):
        adapt_threads(device)
        idx = torch.randint(0, len(samples), (config.batch_size,),
                            generator=generator_for(config.seed, PURPOSE_BATCH, step, 98))
        c, pair = augment_pairs(condition[idx], torch.cat([samples[idx], clean[idx]], dim=1),
                                generator_for(config.seed, PURPOSE_AUGMENT, step, 98))
        c, s, t = c.to(device), pair[:, :1].to(device), pair[:, 1:].to(device)
        for group in optimiser.param_groups:
            group["lr"] = warmup_lr(config.lr, step, config.warmup_steps)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.mse_loss(net(s, c).float(), t)
        optimiser_step(loss, optimiser, scaler, net, config.grad_clip, ema, step,
                       config.ema_decay)
    return ema


@torch.no_grad()
def refine(net: PostProcessUNet, denoiser: Denoiser, samples: torch.Tensor,
           noisy: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``net`` applied to ``samples (N, L, L)`` of the particles ``noisy (N, L, L)``, both in
    raw units (normalised with ``denoiser``'s statistics); raw-unit output on the CPU."""
    norm, device = denoiser.normalisation, next(net.parameters()).device
    out = []
    for start in range(0, len(samples), batch_size):
        s = norm.target(samples[start:start + batch_size].float())[:, None].to(device)
        c = norm.condition(noisy[start:start + batch_size].float())[:, None].to(device)
        out.append(norm.denormalise(net(s, c)[:, 0]).float().cpu())
    return torch.cat(out)


def refine_views(net: PostProcessUNet, denoiser: Denoiser, samples: torch.Tensor,
                 noisy: torch.Tensor, ensemble: bool) -> torch.Tensor:
    """:func:`refine`, through the dihedral self-ensemble when ``ensemble`` (the sample and
    its particle transformed alike)."""
    def apply(s, y):
        return refine(net, denoiser, s, y)
    return self_ensemble(apply, samples, noisy) if ensemble else apply(samples, noisy)
