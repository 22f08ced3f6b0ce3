"""Soft circular (2D) and spherical (3D) masks centred on the box origin (index L//2)."""

from __future__ import annotations

import math

import torch

from cryodiff.fourier import radius_grid


def soft_round_mask(size: int, ndim: int, radius_px: float, edge_width_px: float = 3.0,
                    device=None, dtype=torch.float32) -> torch.Tensor:
    """1 inside ``radius_px``, a raised-cosine fall to 0 over ``edge_width_px`` pixels.

    Shape ``(size,)*ndim``; ``edge_width_px = 0`` gives a hard mask.
    """
    radius = radius_grid(size, ndim, device, dtype)
    if edge_width_px <= 0:
        return (radius <= radius_px).to(dtype)
    ramp = ((radius - radius_px) / edge_width_px).clamp(0, 1)
    return 0.5 * (1 + torch.cos(math.pi * ramp))


def disk_mask(size: int, radius_px: float | None = None, device=None) -> torch.Tensor:
    """Boolean particle disk of ``radius_px`` (default: the inscribed circle, L/2 - 1)."""
    radius_px = size / 2 - 1 if radius_px is None else radius_px
    return radius_grid(size, 2, device) <= radius_px


def default_support_px(size: int) -> tuple[float, float]:
    """``(radius_px, edge_px)`` of the default soft spherical support of a ``size³`` map.

    The raised-cosine edge is ``max(2, size / 16)`` pixels wide and ends on the inscribed
    sphere (radius ``size / 2``), the ball ASPIRE's 3D bases are limited to: for 64³, flat to
    28 px and zero from 32 px. The box corners, where a Fourier inversion keeps only noise
    (amplified by the gridding correction), are set to zero.
    """
    edge_px = max(2.0, size / 16)
    return size / 2 - edge_px, edge_px
