"""Simulated training data matched to a real particle data set (``simulate/train --like``).

From a RELION STAR file of real particles and a map of the same molecule:

* box and pixel size are the STAR's; the map is resampled to them (:mod:`cryodiff.map_resample`);
* each simulated particle's CTF is a row of the STAR drawn at random: defocus, astigmatism
  and its angle, phase shift, B-factor, and its optics group's voltage, Cs and amplitude
  contrast (:func:`cryodiff.simulate.draw_poses` with ``ctf_pool``);
* the noise is Gaussian with the radial power spectrum estimated from the real particles, at
  their SNR (:func:`cryodiff.noise_estimate.estimate_noise`; the SNR definition is the
  simulator's, so the data set's measured SNR reproduces the estimate). All of the noise is
  added after the CTF (there is no separate structural part);
* poses are uniform random and origins within ±``max_shift_px``, as in ``cryodiff simulate``.

The folder is the one ``cryodiff simulate`` writes (``particles.mrcs``, ``clean.mrcs``,
``clean_ctf.mrcs``, ``particles.star``, ``simulation.json``), plus ``noise_estimate.json`` (the
estimate and the STAR it came from), so ``cryodiff train --data`` reads it unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryodiff.errors import CryodiffError
from cryodiff.noise_estimate import DEFAULT_MAX_PARTICLES, NoiseEstimate, estimate_noise

__all__ = ["simulate_like", "like_config", "NOISE_ESTIMATE_FILE"]

NOISE_ESTIMATE_FILE = "noise_estimate.json"


def like_config(particles, estimate: NoiseEstimate, n_particles: int, seed: int = 0,
                chunk_size: int | None = None):
    """The :class:`~cryodiff.simulate.SimulationConfig` matched to ``particles`` (a
    :class:`~cryodiff.io.star.ParticleStack`) and ``estimate``."""
    from cryodiff.simulate import SimulationConfig

    values = dict(box=estimate.box, n_particles=n_particles, snr=estimate.snr,
                  structural_snr=None, use_ctf=particles.ctf is not None,
                  snr_radius_fraction=estimate.radius_fraction,
                  pixel_size_A=estimate.pixel_size_A, seed=seed,
                  noise_spectrum=tuple(float(p) for p in estimate.noise_spectrum))
    if particles.ctf is not None:
        # Only the STAR's optics table for particles without a CTF would use these; the pool
        # carries each particle's own values.
        values.update(voltage_kV=float(particles.ctf.voltage_kV[0]),
                      cs_mm=float(particles.ctf.cs_mm[0]),
                      amplitude_contrast=float(particles.ctf.amplitude_contrast[0]))
    if chunk_size is not None:
        values["chunk_size"] = chunk_size
    config = SimulationConfig(**values)
    config.validate()
    return config


def simulate_like(star_path: str | os.PathLike, map_path: str | os.PathLike,
                  out_dir: str | os.PathLike, n_particles: int, seed: int = 0,
                  particle_diameter_A: float | None = None,
                  map_pixel_size_A: float | None = None, method: str = "auto",
                  estimate: NoiseEstimate | None = None,
                  max_particles: int | None = DEFAULT_MAX_PARTICLES,
                  chunk_size: int | None = None, progress: bool = True) -> Path:
    """Write ``n_particles`` simulated particles matched to ``star_path`` into ``out_dir``.

    See the module docstring. ``particle_diameter_A`` (Å) is needed when the noise comes
    from the background (no poses in the STAR); ``map_pixel_size_A`` overrides the map
    header's pixel size (required when the header has none); ``method`` chooses the
    estimator (``"auto"``, ``"poses"``, ``"background"``); an ``estimate`` already made is
    used as is. Returns ``out_dir`` as a :class:`~pathlib.Path`.
    """
    from cryodiff.io.atomic import write_json_atomic
    from cryodiff.io.star import read_particles
    from cryodiff.map_resample import load_map_for
    from cryodiff.simulate import simulate_dataset

    if n_particles < 1:
        raise CryodiffError(f"the number of particles must be positive, got {n_particles}")
    particles = read_particles(star_path)
    if particles.box is None:
        raise CryodiffError("the box size is unknown (no rlnImageSize and no readable stack)",
                            path=star_path)
    background = method == "background" or (method == "auto" and particles.eulers_deg is None)
    if estimate is None and background and particle_diameter_A is None:
        raise CryodiffError("the STAR has no poses, so the noise comes from the background: "
                            "give --particle-diameter in Å", path=star_path)
    # The map next: a missing pixel size fails before any image is read.
    pixel_size_A = float(particles.pixel_size_A[0])
    volume, map_pixel_A = load_map_for(map_path, particles.box, pixel_size_A, map_pixel_size_A)
    if estimate is None:
        # The resampled map is already at the particles' pixel size.
        estimate = estimate_noise(particles, volume, particle_diameter_A, pixel_size_A,
                                  method=method, max_particles=max_particles, seed=seed)
    if estimate.box != particles.box:
        raise CryodiffError(f"the noise estimate is for {estimate.box}-pixel images, the STAR's "
                            f"are {particles.box}", path=star_path)
    config = like_config(particles, estimate, n_particles, seed, chunk_size)
    out = Path(out_dir)
    summary = simulate_dataset(volume, estimate.pixel_size_A, config, out,
                               map_source=str(map_path), progress=progress,
                               ctf_pool=particles.ctf)
    write_json_atomic(out / NOISE_ESTIMATE_FILE, {
        "star": str(Path(star_path).resolve()), "map": str(Path(map_path).resolve()),
        "map_pixel_size_after_resampling_A": map_pixel_A,
        "measured_snr": summary["measured_snr"], **estimate.to_dict()})
    return out
