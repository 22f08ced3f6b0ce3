"""Resampling a map to a particle data set's box and pixel size.

A map of ``L_m`` voxels at ``p_m`` Å/voxel is brought to ``L`` voxels at ``p`` Å/voxel in three
steps, all about the box origin (index ``L // 2``, :mod:`cryodiff.fourier`):

1. real-space zero-pad or crop to a box ``c`` just covering the target field of view
   (``c ≥ L · p / p_m + 2``; of the 16 such sizes, the one for which ``c · p_m / p`` is closest
   to an integer), which bounds the memory of step 2 and sets how exactly it can resample;
2. Fourier crop or zero-pad (:func:`cryodiff.fourier.fourier_resize`) from ``c`` to
   ``c' = round(c · p_m / p) > L`` voxels, which keeps the field of view, so the pixel size
   becomes ``p_m · c / c'`` — within ``0.5 / c' < 0.5 / L`` (relative) of ``p``;
3. real-space crop to ``L``.

The effective pixel size of step 2 is returned with the map, so callers can state the small
mismatch; the projector then uses the data set's pixel size ``p``.
"""

from __future__ import annotations

import math
import os

import torch

from cryodiff.errors import CryodiffError
from cryodiff.fourier import fourier_resize


def pad_or_crop(volume: torch.Tensor, box: int) -> torch.Tensor:
    """Zero-pad or crop a cubic ``(L, L, L)`` volume to ``(box,)*3`` keeping index ``L // 2``
    at index ``box // 2``."""
    old = volume.shape[-1]
    if old == box:
        return volume.clone()
    out = volume.new_zeros((box,) * 3)
    keep = min(old, box)
    src = slice(old // 2 - keep // 2, old // 2 - keep // 2 + keep)
    dst = slice(box // 2 - keep // 2, box // 2 - keep // 2 + keep)
    out[dst, dst, dst] = volume[src, src, src]
    return out


def resample_map(volume: torch.Tensor, pixel_size_A: float, box: int,
                 target_pixel_size_A: float) -> tuple[torch.Tensor, float]:
    """``volume`` ``(L, L, L)`` at ``pixel_size_A`` → ``(box,)*3`` at ≈ ``target_pixel_size_A``.

    Returns ``(volume, effective_pixel_size_A)`` (see the module docstring for the steps and
    the size of the mismatch). Intensities follow :func:`fourier_resize` (mean preserved).
    """
    ratio = pixel_size_A / target_pixel_size_A
    cover = math.ceil(box / ratio) + 2
    size = min(range(cover, cover + 16), key=lambda c: abs(c * ratio - round(c * ratio)) / c)
    resized = round(size * ratio)
    volume = fourier_resize(pad_or_crop(volume, size), resized, 3)
    return pad_or_crop(volume, box), pixel_size_A * size / resized


def load_map_for(path: str | os.PathLike, box: int, target_pixel_size_A: float,
                 map_pixel_size_A: float | None = None) -> tuple[torch.Tensor, float]:
    """Read an MRC map and resample it with :func:`resample_map`.

    ``map_pixel_size_A`` overrides the header's; a header without a pixel size (0) needs it.
    Raises :class:`CryodiffError` naming the map when the pixel size is unknown or the map
    is constant.
    """
    from cryodiff.io.mrc import read_map

    volume, header_pixel_size = read_map(path)
    size = map_pixel_size_A if map_pixel_size_A is not None else header_pixel_size
    if not (size > 0 and math.isfinite(size)):
        raise CryodiffError("the map's header has no pixel size: give it with "
                            "--map-pixel-size", path=path)
    if not volume.std() > 0:
        raise CryodiffError("the map is constant", path=path)
    return resample_map(volume, float(size), box, target_pixel_size_A)
