"""Tiny synthetic training problems shared by the training, checkpoint and denoise tests."""

from __future__ import annotations

import dataclasses

import torch

from cryodiff.models.postprocess import PostProcessConfig
from cryodiff.models.unet import UNetConfig
from cryodiff.training.config import PRESETS, TrainConfig, with_overrides


def tiny_config(box: int = 16, **overrides) -> TrainConfig:
    """A model small enough that a few steps take well under a second."""
    base = dataclasses.replace(
        PRESETS["ci"],
        model=UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                         attention_resolutions=(box // 2,), image_size=box, dropout=0.1,
                         norm_groups=4),
        postprocess=PostProcessConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                                      image_size=box, norm_groups=4))
    settings = dict(box=box, steps=6, batch_size=4, n_val=8, log_every=1, val_every=3,
                    val_steps=2, checkpoint_every=3, warmup_steps=2, device="cpu",
                    post_train_steps=4, post_n_samples=8, post_sampling_steps=2)
    return with_overrides(base, **(settings | overrides))


def blob_pairs(n: int, box: int, snr: float = 0.1, seed: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs (clean) and the same plus white noise at ``snr`` (noisy), ``(n, L, L)``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(box) - box / 2, torch.arange(box) - box / 2,
                            indexing="ij")
    centre = (torch.rand(n, 2, generator=g) - 0.5) * box / 3
    radius = (torch.rand(n, 1, 1, generator=g) + 1) * box / 10
    clean = torch.exp(-((xx - centre[:, :1, None]) ** 2 + (yy - centre[:, 1:, None]) ** 2)
                      / (2 * radius ** 2))
    noisy = clean + torch.randn(clean.shape, generator=g) * clean.std() / snr ** 0.5
    return noisy, clean
