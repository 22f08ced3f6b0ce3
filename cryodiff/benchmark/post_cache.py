"""Trained post-processors (and other networks built on SR3, e.g. sr3-x0ft's fine-tuned copy)
kept beside the SR3 run they refine, under a key of their settings.

A later benchmark run reuses a post-processor only when its key (recipe, particles, data and
the SR3 checkpoint's step) is identical; an unreadable or different file is retrained, never
trusted. Weights are loaded with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from cryodiff.benchmark.conditions import Condition
from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.denoise import Denoiser
from cryodiff.io.keyed_cache import load_keyed, store_keyed
from cryodiff.models.postprocess import PostProcessUNet


def training_particles(config: BenchmarkConfig, condition: Condition) -> int:
    """How many training particles the post-processors learn from: the first
    ``mse_post_samples`` (None: the whole training split)."""
    n = len(condition.train)
    return n if config.mse_post_samples is None else min(config.mse_post_samples, n)


def post_key(label: str, post, particles: int, condition: Condition,
             config: BenchmarkConfig, denoiser: Denoiser) -> str:
    """The cache key of a post-processor: its recipe ``post`` (a dataclass) under ``label``,
    the ``particles`` it learns from, the data and the SR3 checkpoint's step."""
    from cryodiff.benchmark.methods import data_settings

    return json.dumps({label: dataclasses.asdict(post), "particles": particles,
                       "data": data_settings(condition, config), "sr3_step": denoiser.step},
                      sort_keys=True)


def store_post(cache: Path, key: str, net: torch.nn.Module, fit_seconds: float) -> None:
    """Save a trained network under ``key`` for :func:`load_cached_post` (atomic)."""
    store_keyed(cache, key, fit_seconds=fit_seconds,
                state={k: v.cpu() for k, v in net.state_dict().items()})


def load_cached_post(cache: Path | None, key: str, denoiser: Denoiser, device: torch.device,
                     build: Callable[[], torch.nn.Module] | None = None
                     ) -> tuple[torch.nn.Module | None, float | None]:
    """The network saved in ``cache`` under ``key`` (:func:`store_post`) and its training
    seconds, or ``(None, None)``; an unreadable cache is retrained, never trusted. ``build``
    makes the empty network (default: a post-processor of ``denoiser``'s shape)."""
    saved = load_keyed(cache, key)
    if saved is None:
        return None, None
    try:
        net = build() if build is not None else PostProcessUNet(denoiser.config.postprocess)
        net.load_state_dict(saved["state"])
        return net.to(device).eval().requires_grad_(False), float(saved["fit_seconds"])
    except Exception:  # damaged or of another shape: retrained
        return None, None


def trained_post(cache_dir: Path | None, file_name: str, key: str, denoiser: Denoiser,
                 device: torch.device, train: Callable[[], torch.nn.Module],
                 build: Callable[[], torch.nn.Module] | None = None
                 ) -> tuple[torch.nn.Module, float, bool]:
    """``(network, training seconds, reused)``: the network saved as ``cache_dir/file_name``
    under ``key`` if there is one (``build`` as in :func:`load_cached_post`), else
    ``train()``'s, timed and saved there (with ``cache_dir``)."""
    cache = None if cache_dir is None else Path(cache_dir) / file_name
    net, fit_seconds = load_cached_post(cache, key, denoiser, device, build)
    if net is not None:
        return net, fit_seconds, True
    start = time.perf_counter()
    net = train()
    fit_seconds = time.perf_counter() - start
    if cache is not None:
        store_post(cache, key, net, fit_seconds)
    return net, fit_seconds, False
