"""Training the post-processing U-Net on sampler outputs (Zhang et al. 2024).

The trained diffusion model (EMA weights) denoises ``post_n_samples`` training particles with
only ``post_sampling_steps`` steps; those fast, imperfect samples are cached in
``RUN/postprocess_cache.pt`` and the post-processor learns to map (sample, noisy particle) to
the clean target. The result is added to the run's latest checkpoint under ``postprocess``,
so ``cryodiff denoise`` applies it automatically.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cryodiff.denoise import denoise_images, load_denoiser
from cryodiff.io.atomic import write_json_atomic
from cryodiff.io.keyed_cache import data_fingerprint, load_keyed, store_keyed
from cryodiff.models.postprocess import PostProcessUNet
from cryodiff.training import checkpoint as ckpt
from cryodiff.training.config import TrainConfig
from cryodiff.training.data import (PURPOSE_AUGMENT, PURPOSE_BATCH, TrainingData, augment_pairs,
                                    generator_for)
from cryodiff.threads import adapt_threads
from cryodiff.training.loop import select_device

CACHE = "postprocess_cache.pt"


def sampler_outputs(run_dir: str | os.PathLike, data: TrainingData,
                    device: torch.device, progress: bool = True) -> dict[str, torch.Tensor]:
    """Normalised ``condition``, ``target`` and few-step ``sample`` tensors ``(n, 1, L, L)``,
    from the cache if it was made by the same checkpoint and settings."""
    latest = ckpt.resolve_checkpoint(run_dir)
    denoiser = load_denoiser(latest, device)
    config, norm = denoiser.config, denoiser.normalisation
    condition, target = data.fixed_pairs(config.post_n_samples)
    # the exact weights and particles, not only the step: a network retrained in the same
    # folder (or other data) to the same step must not reuse these samples
    key = [denoiser.step, config.post_n_samples, config.post_sampling_steps, config.post_sampler,
           ckpt.weights_digest(denoiser.model.state_dict()), data_fingerprint(condition, target)]
    cache = Path(run_dir) / CACHE
    cached = load_keyed(cache, key)  # an unreadable cache is sampled again, never trusted
    if cached is not None and all(isinstance(cached.get(k), torch.Tensor)
                                  for k in ("condition", "target", "sample")):
        return cached
    samples = denoise_images(denoiser.model, condition, norm, denoiser.schedule,
                             steps=config.post_sampling_steps, sampler=config.post_sampler,
                             seed=config.seed + 1, device=device, progress=progress,
                             batch_size=64).mean
    cached = {"condition": norm.condition(condition)[:, None],
              "target": norm.target(target)[:, None], "sample": norm.target(samples)[:, None]}
    store_keyed(cache, key, **cached)
    return cached


def train_postprocessor(run_dir: str | os.PathLike, data: TrainingData, *,
                        device: str = "auto", progress: bool = True,
                        on_log: Callable[[dict[str, Any]], None] | None = None
                        ) -> PostProcessUNet:
    """Train the post-processor of the run in ``run_dir`` and store it in its latest
    checkpoint; returns the trained network (eval mode). Metrics go to
    ``RUN/postprocess_metrics.json`` (L1 loss every 10 steps)."""
    latest = ckpt.resolve_checkpoint(run_dir)
    state = ckpt.load_checkpoint(latest)
    config = TrainConfig.from_json(state["config"])
    dev = select_device(device if device != "auto" else config.device, verbose=False)
    cache = sampler_outputs(run_dir, data, dev, progress)
    condition, target, sample = cache["condition"], cache["target"], cache["sample"]
    net = PostProcessUNet(config.postprocess).to(dev)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.post_lr)
    rows, window = [], []
    n = condition.shape[0]
    for step in tqdm(range(config.post_train_steps), disable=not progress, desc="post-processor"):
        adapt_threads(dev)
        idx = torch.randint(0, n, (config.post_batch_size,),
                            generator=generator_for(config.seed, PURPOSE_BATCH, step, 99))
        c, pair = augment_pairs(condition[idx], torch.cat([sample[idx], target[idx]], dim=1),
                                generator_for(config.seed, PURPOSE_AUGMENT, step, 99))
        c, s, t = c.to(dev), pair[:, :1].to(dev), pair[:, 1:].to(dev)
        for group in optimizer.param_groups:
            group["lr"] = config.post_lr * min(1.0, (step + 1) / 50)
        loss = F.l1_loss(net(s, c), t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.append(float(loss.detach()))
        if (step + 1) % 10 == 0 or step + 1 == config.post_train_steps:
            rows.append({"step": step + 1, "loss": sum(window) / len(window),
                         "sample_loss": float(F.l1_loss(s, t))})
            window = []
            if on_log is not None:
                on_log(rows[-1])
    net.eval().requires_grad_(False)
    ckpt.store_entry(latest, "postprocess", {k: v.cpu() for k, v in net.state_dict().items()})
    write_json_atomic(Path(run_dir) / "postprocess_metrics.json", rows)
    return net
