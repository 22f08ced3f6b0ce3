"""Supervised U-Nets trained directly on noisy → clean pairs: the strongest simple baselines.

They have the clean targets the diffusion model trains on, but no generative prior or
sampling. Three variants (issue 16): ``supervised``, the post-processor's backbone with the
L2 loss; ``supervised-l1``, the same with the L1 loss (a median, not the PSNR-optimal mean);
``supervised-large``, SR3's own U-Net shape without its noise-level and condition inputs,
so the comparison with SR3 is at matched size. ``supervised-2x`` and ``supervised-large-2x``
are the small and the large one under the names the benchmark trains twice as long;
``supervised-large-direct-2x`` is the large one with a direct output (no ``input +``
skip), as SR3's one-pass x̂₀ has.
"""

from __future__ import annotations

import torch

from cryodiff.baselines.base import DenoisingData
from cryodiff.baselines.regression import UNetRegressor
from cryodiff.errors import CryodiffError
from cryodiff.models.postprocess import DirectUNet, PostProcessConfig
from cryodiff.models.unet import UNetConfig


class SupervisedUNet(UNetRegressor):
    """U-Net regressing ``target`` ("clean_ctf" by default, or "clean") from noisy images.
    See :class:`cryodiff.baselines.regression.UNetRegressor` for the options."""

    name = "supervised"

    def training_pairs(self, data: DenoisingData) -> tuple[torch.Tensor, torch.Tensor]:
        return data.noisy, data.target(self.target)


class SupervisedUNetL1(SupervisedUNet):
    """:class:`SupervisedUNet` trained with the L1 loss (the per-pixel posterior median)."""

    name = "supervised-l1"
    default_loss = "l1"

    def __init__(self, recipe=None, **options):
        super().__init__(recipe, **options)
        if self.recipe.loss != "l1":
            raise CryodiffError(f"{self.name} trains with the L1 loss, not {self.recipe.loss!r}")


def matched_backbone_config(unet: UNetConfig) -> PostProcessConfig:
    """SR3's U-Net shape ``unet`` as a residual network without noise-level or condition
    input: the same levels, widths, blocks, attention, dropout and normalisation, one image
    channel in and out (built as a condition-free
    :class:`~cryodiff.models.postprocess.PostProcessUNet`, ``input + correction``)."""
    return PostProcessConfig(
        image_channels=unet.image_channels, condition_channels=0,
        base_channels=unet.base_channels, channel_mults=tuple(unet.channel_mults),
        num_res_blocks=unet.num_res_blocks, attention_resolutions=tuple(unet.attention_resolutions),
        image_size=unet.image_size, attention_heads=unet.attention_heads, dropout=unet.dropout,
        norm_groups=unet.norm_groups)


class SupervisedUNetLarge(SupervisedUNet):
    """:class:`SupervisedUNet` with SR3's network: ``unet`` is the diffusion model's
    :class:`~cryodiff.models.unet.UNetConfig` (default: its defaults at the training box
    size), turned into a network by :func:`matched_backbone_config`. Its parameter count is
    SR3's less the noise-level MLP, the FiLM layers and the condition's input weights."""

    name = "supervised-large"

    def __init__(self, recipe=None, *, unet: UNetConfig | None = None, **options):
        if unet is not None and options.get("config") is not None:
            raise CryodiffError(f"{self.name}: give unet (SR3's shape) or config, not both")
        super().__init__(recipe, **options)
        self.unet = unet

    def default_config(self, image_size: int) -> PostProcessConfig:
        return matched_backbone_config(self.unet or UNetConfig(image_size=image_size))


class SupervisedUNetLong(SupervisedUNet):
    """:class:`SupervisedUNet` under its own name for a longer budget: the benchmark gives it
    twice the training preset's steps, what SR3 and its ``"sr3-pm"`` post-processor train
    together, so the two compare at equal optimiser steps."""

    name = "supervised-2x"


class SupervisedUNetLargeLong(SupervisedUNetLarge):
    """:class:`SupervisedUNetLarge` under its own name for the longer budget: SR3's network
    shape trained for as many optimiser steps as SR3 and a fine-tuning or post-processor on
    top of it together (the benchmark doubles the preset's steps) — the regressor of SR3's
    size at SR3's whole budget, beside which ``sr3v-x0ft`` is measured."""

    name = "supervised-large-2x"


class SupervisedUNetLargeDirectLong(SupervisedUNetLargeLong):
    """:class:`SupervisedUNetLargeLong` with a direct output: the backbone's output is the
    estimate (:class:`~cryodiff.models.postprocess.DirectUNet`), not ``input + correction``.
    SR3's one-pass x̂₀ is such a direct estimate, so this peer separates that output form
    from the diffusion network's other differences (its noise input and level embedding)."""

    name = "supervised-large-direct-2x"
    network_class = DirectUNet
