"""Building blocks shared by the SR3 U-Net and the post-processing U-Net.

:class:`UNetBackbone` is the encoder/decoder with skip connections used by both networks; the
SR3 model adds a noise-level embedding that modulates every residual block (FiLM), the
post-processor runs it without one. The backbone accepts any image size: it pads the input to a
multiple of ``2**(levels - 1)`` and crops the output back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def attention_levels(image_size: int, channel_mults: tuple[int, ...],
                     attention_resolutions: tuple[int, ...]) -> tuple[int, ...]:
    """Indices of the U-Net levels whose feature maps (``image_size // 2**level`` pixels)
    are listed in ``attention_resolutions`` and so get self-attention."""
    return tuple(level for level in range(len(channel_mults))
                 if image_size // 2 ** level in attention_resolutions)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count ``<= groups`` that divides ``channels``."""
    groups = max(1, min(groups, channels))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


def sinusoidal_embedding(noise_level: torch.Tensor, dim: int,
                         scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal features of a continuous noise level, ``(B,) -> (B, dim)``.

    As in WaveGrad/SR3 the network sees ``√γ̄`` (in [0, 1]) rather than a step index, scaled by
    ``scale`` so that the frequencies ``10000**(-k/half)`` resolve levels close to 1.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=noise_level.device,
                                                        dtype=torch.float32) / half)
    args = scale * noise_level.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, twice, with dropout and an optional FiLM embedding.

    With ``embedding_dim`` set, the embedding gives a per-channel scale and shift applied after
    the second normalisation: ``h = norm(h) · (1 + scale) + shift`` (SR3/improved-diffusion).
    """

    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int | None,
                 dropout: float, norm_groups: int):
        super().__init__()
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.film = (nn.Sequential(nn.SiLU(), nn.Linear(embedding_dim, 2 * out_channels))
                     if embedding_dim else None)
        self.norm2 = group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual path."""

    def __init__(self, channels: int, heads: int, norm_groups: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels, norm_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2),
                                             v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def pad_to_multiple(x: torch.Tensor,
                    multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad ``(B, C, H, W)`` so that H and W are multiples of ``multiple``.

    Reflection padding (replicate when the image is too small to reflect) avoids the artificial
    edge a zero pad would put into a noisy image. Returns the padded tensor and the
    ``(left, right, top, bottom)`` amounts for :func:`crop_padding`.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if not any(pads):
        return x, pads
    mode = "reflect" if max(pads[:2]) < w and max(pads[2:]) < h else "replicate"
    return F.pad(x, pads, mode=mode), pads


def crop_padding(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    return x[..., top:h - bottom, left:w - right]


class UNetBackbone(nn.Module):
    """Encoder/decoder with skip connections (the improved-diffusion/SR3 layout).

    Level ``i`` works at ``1 / 2**i`` of the (padded) input size with
    ``base_channels * channel_mults[i]`` channels and ``num_res_blocks`` residual blocks
    (``num_res_blocks + 1`` on the way up, each eating one skip); self-attention follows every
    block of the levels listed in ``attention_levels`` and sits in the middle block.
    ``embedding_dim=None`` builds blocks without FiLM.
    """

    def __init__(self, in_channels: int, out_channels: int, base_channels: int,
                 channel_mults: tuple[int, ...], num_res_blocks: int,
                 attention_levels: tuple[int, ...], dropout: float, norm_groups: int,
                 embedding_dim: int | None, attention_heads: int = 1):
        super().__init__()
        self.levels = len(channel_mults)

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, embedding_dim, dropout, norm_groups)

        def attn(ch: int) -> SelfAttention:
            return SelfAttention(ch, attention_heads, norm_groups)

        self.input_conv = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        ch = base_channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                layers = [res(ch, base_channels * mult)]
                ch = base_channels * mult
                if level in attention_levels:
                    layers.append(attn(ch))
                self.down.append(nn.ModuleList(layers))
                skip_channels.append(ch)
            if level < self.levels - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skip_channels.append(ch)

        self.middle = nn.ModuleList([res(ch, ch), attn(ch), res(ch, ch)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for block in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), base_channels * mult)]
                ch = base_channels * mult
                if level in attention_levels:
                    layers.append(attn(ch))
                if level > 0 and block == num_res_blocks:
                    layers.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                nn.Conv2d(ch, ch, 3, padding=1)))
                self.up.append(nn.ModuleList(layers))

        self.output = nn.Sequential(group_norm(ch, norm_groups), nn.SiLU(),
                                    nn.Conv2d(ch, out_channels, 3, padding=1))

    @staticmethod
    def _run(layers: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        for layer in layers:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, in_channels, H, W)``, ``emb (B, embedding_dim)`` → ``(B, out_channels, H, W)``.
        """
        x, pads = pad_to_multiple(x, 2 ** (self.levels - 1))
        h = self.input_conv(x)
        skips = [h]
        for layers in self.down:
            h = self._run(layers, h, emb)
            skips.append(h)
        h = self._run(self.middle, h, emb)
        for layers in self.up:
            h = self._run(layers, torch.cat([h, skips.pop()], dim=1), emb)
        return crop_padding(self.output(h), pads)
