"""Supervised U-Net: the post-processor's backbone trained directly on noisy → clean pairs.

The strongest simple baseline: it has the clean targets the diffusion model trains on and
the same architecture as the post-processor, but no generative prior or sampling.
"""

from __future__ import annotations

import torch

from cryodiff.baselines.base import DenoisingData
from cryodiff.baselines.regression import UNetRegressor


class SupervisedUNet(UNetRegressor):
    """U-Net regressing ``target`` ("clean_ctf" by default, or "clean") from noisy images.
    See :class:`cryodiff.baselines.regression.UNetRegressor` for the options."""

    name = "supervised"

    def training_pairs(self, data: DenoisingData) -> tuple[torch.Tensor, torch.Tensor]:
        return data.noisy, data.target(self.target)
