"""The post-processing U-Net (Zhang et al. 2024, arXiv 2401.01097).

A light U-Net without noise-level input that refines a diffusion sample: it sees the sample and
the noisy particle and predicts a residual correction, ``refined = sample + correction``. It is
trained on sampler outputs against clean targets, so that a few sampling steps plus this
network approach the quality of many steps. The same backbone, called with the noisy image as
``sample`` (or ``condition_channels=0``), is the supervised U-Net baseline;
:class:`DirectUNet` is that backbone without the input skip (the output is the estimate
itself, as SR3's one-pass x̂₀ is), for the direct-output supervised baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cryodiff.models.layers import UNetBackbone, attention_levels
from cryodiff.models.unet import config_from_dict, config_to_dict


@dataclass(frozen=True)
class PostProcessConfig:
    """Shape of the post-processing U-Net (see :class:`cryodiff.models.unet.UNetConfig`).

    ``condition_channels=0`` builds a network that only sees ``sample`` (call it with
    ``condition=None``).
    """

    image_channels: int = 1
    condition_channels: int = 1
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = ()
    image_size: int = 64
    attention_heads: int = 1
    dropout: float = 0.0
    norm_groups: int = 8

    def attention_levels(self) -> tuple[int, ...]:
        """Indices of the levels whose feature maps get self-attention."""
        return attention_levels(self.image_size, self.channel_mults, self.attention_resolutions)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PostProcessConfig:
        return config_from_dict(cls, data)


class PostProcessUNet(nn.Module):
    """Residual refinement network: ``(sample, condition) -> sample + correction``."""

    def __init__(self, config: PostProcessConfig = PostProcessConfig()):
        super().__init__()
        self.config = config
        self.backbone = UNetBackbone(
            in_channels=config.condition_channels + config.image_channels,
            out_channels=config.image_channels,
            base_channels=config.base_channels,
            channel_mults=tuple(config.channel_mults),
            num_res_blocks=config.num_res_blocks,
            attention_levels=config.attention_levels(),
            dropout=config.dropout,
            norm_groups=config.norm_groups,
            embedding_dim=None,
            attention_heads=config.attention_heads,
        )

    def forward(self, sample: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """``sample (B, image_channels, L, L)``, ``condition (B, condition_channels, L, L)``
        (``None`` when ``condition_channels == 0``) → refined ``(B, image_channels, L, L)``."""
        return sample + self.correction(sample, condition)

    def correction(self, sample: torch.Tensor, condition: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """The backbone's output for ``sample`` and ``condition`` (shapes as :meth:`forward`)."""
        if (condition is None) != (self.config.condition_channels == 0):
            given = "none" if condition is None else "one"
            raise ValueError(f"{type(self).__name__} with condition_channels="
                             f"{self.config.condition_channels} was given {given}")
        inputs = sample if condition is None else torch.cat([condition, sample], dim=1)
        return self.backbone(inputs)


class DirectUNet(PostProcessUNet):
    """:class:`PostProcessUNet` without the input skip: ``(sample, condition) -> estimate``,
    the backbone's output itself (the same weights and shapes)."""

    def forward(self, sample: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        return self.correction(sample, condition)
