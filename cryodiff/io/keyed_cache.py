"""Caches of expensive results (trained networks, sampler outputs) under a key of their settings.

A cache file is one ``torch.save`` dict with a ``key`` beside the payload. It is trusted only
when its key equals the one asked for, so a change of settings, data or checkpoint recomputes
rather than reuses; an unreadable or damaged file is recomputed too, never trusted. Files are
written atomically and read with ``weights_only=True`` (no pickled code runs).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from cryodiff.io.atomic import atomic_path


def data_fingerprint(*tensors: torch.Tensor) -> list[float]:
    """Sums of ``tensors`` and of their squares (float64, to 9 significant digits, so that the
    summation order of other thread counts does not matter): tells cached results of other
    particles apart (cheap, not cryptographic)."""
    return [float(f"{float(value):.9g}") for t in tensors
            for value in (t.double().sum(), t.double().square().sum())]


def load_keyed(cache: str | os.PathLike | None, key: Any) -> dict[str, Any] | None:
    """The dict saved in ``cache`` by :func:`store_keyed` under ``key``, else None (no file,
    another key, or unreadable)."""
    if cache is None or not os.path.isfile(cache):
        return None
    try:
        saved = torch.load(cache, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for damaged files
        return None
    return saved if isinstance(saved, dict) and saved.get("key") == key else None


def store_keyed(cache: str | os.PathLike, key: Any, **payload: Any) -> None:
    """Save ``payload`` under ``key`` to ``cache`` atomically, for :func:`load_keyed`."""
    with atomic_path(cache) as tmp:
        torch.save({"key": key, **payload}, tmp)
