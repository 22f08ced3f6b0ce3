"""Trained post-processors kept beside the SR3 run they refine, under a key of their settings.

A later benchmark run reuses a post-processor only when its key (recipe, particles, data and
the SR3 checkpoint's step) is identical; an unreadable or different file is retrained, never
trusted. Weights are loaded with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cryodiff.denoise import Denoiser
from cryodiff.io.atomic import atomic_path
from cryodiff.models.postprocess import PostProcessUNet


def store_post(cache: Path, key: str, net: PostProcessUNet, fit_seconds: float) -> None:
    """Save a trained post-processor under ``key`` for :func:`load_cached_post` (atomic)."""
    with atomic_path(cache) as tmp:
        torch.save({"key": key, "fit_seconds": fit_seconds,
                    "state": {k: v.cpu() for k, v in net.state_dict().items()}}, tmp)


def load_cached_post(cache: Path | None, key: str, denoiser: Denoiser, device: torch.device
                     ) -> tuple[PostProcessUNet | None, float | None]:
    """The post-processor saved in ``cache`` under ``key`` (:func:`store_post`) and its
    training seconds, or ``(None, None)``; an unreadable cache is retrained, never trusted."""
    if cache is None or not cache.is_file():
        return None, None
    try:
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved.get("key") != key:
            return None, None
        net = PostProcessUNet(denoiser.config.postprocess)
        net.load_state_dict(saved["state"])
        return net.to(device).eval().requires_grad_(False), float(saved["fit_seconds"])
    except Exception:
        return None, None
