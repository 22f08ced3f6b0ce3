"""The SR3 conditional denoising U-Net (Saharia et al. 2021, arXiv 2104.07636).

The network predicts the noise ε in ``y_t = √γ̄·y₀ + √(1−γ̄)·ε`` from the diffused clean image
``y_t`` concatenated with the condition (the noisy particle). The noise level enters as the
continuous ``√γ̄`` (not a step index), through a sinusoidal embedding and an MLP, and modulates
every residual block — so one trained model serves any inference schedule (WaveGrad/SR3).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cryodiff.diffusion import check_prediction, eps_from_v
from cryodiff.errors import CryodiffError
from cryodiff.models.layers import UNetBackbone, attention_levels, sinusoidal_embedding


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(config).items()}


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from :func:`config_to_dict` output; lists become tuples."""
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CryodiffError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    return cls(**{key: tuple(value) if isinstance(value, list) else value
                  for key, value in data.items()})


@dataclass(frozen=True)
class UNetConfig:
    """Shape of the SR3 U-Net.

    ``attention_resolutions`` are feature-map sizes in pixels, counted for an input of
    ``image_size`` pixels (level ``i`` has ``image_size / 2**i``); the set of levels with
    attention is fixed at construction, so other input sizes keep attention on the same levels.
    ``noise_embedding_dim=None`` uses ``base_channels``; the MLP widens it to
    ``4 * base_channels``. ``norm_groups`` is clamped to a divisor of each layer's channels.
    ``prediction``: what the last layer is trained to output, ``"eps"`` (ε, SR3's) or ``"v"``
    (:data:`cryodiff.diffusion.PREDICTIONS`); the model returns ε̂ either way.
    """

    image_channels: int = 1
    condition_channels: int = 1
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    image_size: int = 64
    attention_heads: int = 1
    dropout: float = 0.1
    norm_groups: int = 32
    noise_embedding_dim: int | None = None
    noise_level_scale: float = 1000.0
    prediction: str = "eps"

    def __post_init__(self) -> None:
        check_prediction(self.prediction)  # a damaged config fails where it is read

    def attention_levels(self) -> tuple[int, ...]:
        """Indices of the levels whose feature maps get self-attention."""
        return attention_levels(self.image_size, self.channel_mults, self.attention_resolutions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``prediction`` only when it is not the paper's ``"eps"``, so an ε
        model's configuration (and every cache key built from it) reads as before v existed."""
        data = config_to_dict(self)
        if data["prediction"] == "eps":
            del data["prediction"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        return config_from_dict(cls, data)


class SR3UNet(nn.Module):
    """U-Net conditioned on the noisy particle and the noise level ``√γ̄`` that returns ε̂
    (trained to output ε, or v and converted: ``config.prediction``)."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = config
        self.embedding_dim = config.noise_embedding_dim or config.base_channels
        hidden = 4 * config.base_channels
        self.noise_mlp = nn.Sequential(nn.Linear(self.embedding_dim, hidden), nn.SiLU(),
                                       nn.Linear(hidden, hidden))
        self.backbone = UNetBackbone(
            in_channels=config.condition_channels + config.image_channels,
            out_channels=config.image_channels,
            base_channels=config.base_channels,
            channel_mults=tuple(config.channel_mults),
            num_res_blocks=config.num_res_blocks,
            attention_levels=config.attention_levels(),
            dropout=config.dropout,
            norm_groups=config.norm_groups,
            embedding_dim=hidden,
            attention_heads=config.attention_heads,
        )

    def forward(self, y_t: torch.Tensor, condition: torch.Tensor,
                noise_level: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """Predict ε.

        ``y_t (B, image_channels, L, L)``, ``condition (B, condition_channels, L, L)``,
        ``noise_level (B,)`` = ``√γ̄`` (a scalar tensor broadcasts); any L, odd or even.
        Returns ``ε̂ (B, image_channels, L, L)``; with ``raw`` the last layer's output as
        trained (ε̂ or v̂, ``config.prediction``).
        """
        noise_level = noise_level.reshape(-1).expand(y_t.shape[0])
        emb = sinusoidal_embedding(noise_level, self.embedding_dim, self.config.noise_level_scale)
        emb = self.noise_mlp(emb.to(y_t.dtype))
        out = self.backbone(torch.cat([condition, y_t], dim=1), emb)
        if raw or self.config.prediction == "eps":
            return out
        return eps_from_v(y_t, out, noise_level)  # in y_t's dtype: x̂₀ divides ε̂ by √γ̄
