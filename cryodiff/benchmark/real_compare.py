"""Denoising real particles with several methods side by side, with or without ground truth.

:func:`denoise_real` applies SR3 and baselines fitted on a matched simulation (a folder of
:mod:`cryodiff.simulate_like`) to real particles: each particle is put on the simulation's
grey-level scale (:func:`cryodiff.denoise.match_training_scale`), denoised with its own CTF,
and mapped back to its own units. Topaz-Denoise is used as shipped (trained on real
micrographs), so the simulation does not touch it.

Without references (particles without poses, like the bundled ones) the outputs can only be
looked at and described: :func:`background_ratio` is the std of the background outside the
particle after denoising relative to before (how much noise a method removed where there is
no particle; it says nothing about what it did to the particle itself).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from cryodiff.errors import CryodiffError


def background_ratio(denoised: torch.Tensor, noisy: torch.Tensor, radius_px: float,
                     ) -> float:
    """``std(denoised outside the disk) / std(noisy outside the disk)`` over all images.

    ``denoised``, ``noisy`` ``(N, L, L)``; the disk of ``radius_px`` pixels is centred at
    ``L // 2``; each image's own background mean is removed first.
    """
    from cryodiff.masks import disk_mask

    outside = ~disk_mask(noisy.shape[-1], radius_px, noisy.device)

    def spread(images: torch.Tensor) -> float:
        values = images[..., outside].double()
        return float((values - values.mean(dim=-1, keepdim=True)).std())

    return spread(denoised) / spread(noisy)


def denoise_real(star: str | os.PathLike, training_dir: str | os.PathLike,
                 methods: Sequence[str] = ("wiener", "topaz"), denoiser=None, steps: int = 10,
                 n_particles: int | None = None, n_validation: int = 64, seed: int = 0,
                 ) -> dict[str, torch.Tensor]:
    """``{"noisy": images, method: denoised, …, "sr3": …}`` for the first ``n_particles``
    particles of ``star`` (all if None), each ``(N, L, L)`` in the particles' units.

    ``methods`` are baseline names (:data:`cryodiff.baselines.BASELINES`) fitted on the last
    ``n_validation`` particles of ``training_dir`` (trained ones — Noise2Noise, supervised —
    are not offered here: use the benchmark); ``denoiser`` a loaded
    :class:`cryodiff.denoise.Denoiser` (its post-processor used if present) sampled with
    ``steps`` steps. The particles' box must be the simulation's.
    """
    from cryodiff.baselines import make_baseline
    from cryodiff.baselines.base import DenoisingData
    from cryodiff.benchmark.real import read_simulated_split
    from cryodiff.ctf import ctf_2d
    from cryodiff.denoise import check_particles_fit, denoise_with, match_training_scale
    from cryodiff.io.images import load_images
    from cryodiff.io.star import read_particles
    from cryodiff.training.data import Normalisation

    particles = read_particles(star)
    n = len(particles) if n_particles is None else min(n_particles, len(particles))
    rows = np.arange(n)
    noisy = load_images(particles, rows).float()
    pixel_size_A = float(particles.pixel_size_A[0])
    simulated = read_simulated_split(training_dir, slice(-n_validation, None))
    if simulated.noisy.shape[-1] != noisy.shape[-1]:
        raise CryodiffError(f"the particles are {noisy.shape[-1]} px, the simulation "
                            f"{simulated.noisy.shape[-1]} px", path=star)
    ctf = None
    if particles.ctf is not None:
        subset = particles.subset(rows)
        ctf = ctf_2d(subset.ctf, noisy.shape[-1], pixel_size_A).float()
    like = simulated.noisy.double()
    scaled, a, b = match_training_scale(noisy, Normalisation(float(like.mean()),
                                                             float(like.std()), 0.0, 1.0))
    outputs = {"noisy": noisy}
    fit_data = DenoisingData(noisy=simulated.noisy, clean_ctf=simulated.clean_ctf,
                             clean=simulated.clean, ctf=simulated.ctf_grid,
                             pixel_size_A=pixel_size_A)
    for name in methods:
        if name in ("noise2noise", "supervised"):
            raise CryodiffError(f"{name} is trained; compare it with `cryodiff benchmark "
                                "--particles`")
        baseline = make_baseline(name).fit(fit_data)
        out = baseline.denoise(scaled, ctf)
        outputs[name] = ((out.double() - b) / a).float()
    if denoiser is not None:
        check_particles_fit(denoiser, noisy.shape[-1], pixel_size_A, star)
        result = denoise_with(denoiser, noisy, steps=steps, seed=seed, match_scale=True,
                              batch_size=64)
        outputs["sr3"] = result.mean.float()
    return outputs

