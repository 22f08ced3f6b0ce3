"""Tiny data sets for the hostile-input tests (a few particles at box 16: each run is fast)."""

from __future__ import annotations

import numpy as np
import torch

from cryodiff.ctf import ctf_params
from cryodiff.geometry import random_rotations, matrix_to_euler
from cryodiff.io.mrc import write_map, write_stack
from cryodiff.io.star import particles_from_arrays, write_particles
from cryodiff.projection import project

BOX, N, PIXEL_A = 16, 12, 3.0


def tiny_dataset(folder, n: int = N, nan_image: int | None = None):
    """``folder/map.mrc`` (a blob), ``folder/particles.star`` + ``particles.mrcs`` (its
    projections at random poses with a CTF); ``nan_image`` puts a NaN pixel in that image."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    grid = torch.arange(BOX) - BOX // 2
    z, y, x = torch.meshgrid(grid, grid, grid, indexing="ij")
    volume = torch.exp(-((x - 2) ** 2 + y ** 2 + (z + 1) ** 2) / 8.0).float()
    write_map(folder / "map.mrc", volume, PIXEL_A)
    rotations = random_rotations(n, generator=g, dtype=torch.float64)
    images = project(volume.double(), rotations).float()
    images += 0.05 * torch.randn(images.shape, generator=g)
    if nan_image is not None:
        images[nan_image, 3, 4] = float("nan")
    write_stack(folder / "particles.mrcs", images, PIXEL_A)
    ctf = ctf_params(np.full(n, 15000.0), dtype=torch.float32)
    particles = particles_from_arrays("particles.mrcs", matrix_to_euler(rotations).numpy(),
                                      None, ctf, PIXEL_A, BOX, n=n, base_dir=folder)
    write_particles(folder / "particles.star", particles)
    return folder
