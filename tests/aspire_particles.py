"""Particle images made by ASPIRE (a simulator cryodiff did not write), at a known SNR.

ASPIRE projects the map, applies its CTF (``−CTF_RELION``, see :mod:`cryodiff.ctf`), random
origins and amplitudes, then adds white or coloured Gaussian noise. Its ``Simulation.save``
writes ``rlnDefocusAngle`` in radians; :func:`aspire_particles` rewrites the STAR in RELION's
degrees with cryodiff's writer. The true SNR is measured on ASPIRE's own clean and noisy images
with the project's definition (:mod:`cryodiff.snr`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from cryodiff.io.star import ParticleStack, read_particles, write_particles
from cryodiff.snr import disk_variance

PIXEL_A = 3.0
# Coloured noise: P(f) ∝ FLOOR + exp(−f / DECAY), f in cycles/pixel.
FLOOR, DECAY = 0.3, 0.04


@dataclass(frozen=True)
class AspireParticles:
    star: Path  # RELION STAR (degrees), images in the same folder
    particles: ParticleStack
    volume: torch.Tensor
    pixel_size_A: float
    true_snr: float
    noise_var: float  # per pixel
    coloured: bool

    def true_spectrum(self, box: int) -> np.ndarray:
        """The noise power per ring 0…L//2 (cycles/box) on cryodiff's normalisation."""
        f = np.arange(box // 2 + 1) / box
        if not self.coloured:
            return np.full(len(f), self.noise_var)
        shape = FLOOR + np.exp(-f / DECAY)
        return self.noise_var * shape / _grid_mean()


def _grid_mean() -> float:
    """Mean of FLOOR + exp(−f/DECAY) over ASPIRE's evaluation grid (what its noise_var uses)."""
    from aspire.noise import CustomNoiseAdder
    from aspire.operators import FunctionFilter

    return float(CustomNoiseAdder(noise_filter=FunctionFilter(_shape)).noise_var)


def _shape(x, y):
    # ASPIRE evaluates filters at angular frequencies ω = 2π f (radians per pixel).
    return FLOOR + np.exp(-np.hypot(x, y) / (2 * np.pi) / DECAY)


def aspire_particles(folder: Path, box: int, n: int, snr: float, coloured: bool,
                     seed: int = 5) -> AspireParticles:
    """Simulate ``n`` particles with ASPIRE at about ``snr`` and save them as a RELION STAR."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # ASPIRE writes ./logs on import
        pytest.importorskip("aspire")
        from aspire.noise import CustomNoiseAdder, WhiteNoiseAdder
        from aspire.operators import CTFFilter, FunctionFilter
        from aspire.source import Simulation
        from aspire.volume import Volume

        from cryodiff.phantom import make_phantom

        volume = make_phantom(box, seed=1).numpy().astype(np.float32)
        filters = [CTFFilter(voltage=300, defocus_u=d, defocus_v=0.95 * d, defocus_ang=0.3,
                             Cs=2.7, alpha=0.1) for d in np.linspace(8000, 20000, 5)]
        # The phantom's signal level sets the noise level of the requested SNR.
        probe = Simulation(L=box, n=32, vols=Volume(volume, pixel_size=PIXEL_A),
                           unique_filters=filters, seed=seed, pixel_size=PIXEL_A)
        signal = disk_variance(torch.from_numpy(probe.clean_images[:].asnumpy().copy())).mean()
        noise_var = float(signal) / snr
        if coloured:
            scale = noise_var / _grid_mean()
            adder = CustomNoiseAdder(noise_filter=FunctionFilter(
                lambda x, y: scale * _shape(x, y)), seed=seed + 1)
        else:
            adder = WhiteNoiseAdder(var=noise_var, seed=seed + 1)
        sim = Simulation(L=box, n=n, vols=Volume(volume, pixel_size=PIXEL_A),
                         unique_filters=filters, noise_adder=adder, seed=seed,
                         pixel_size=PIXEL_A)
        clean = torch.from_numpy(sim.clean_images[:].asnumpy().copy())
        noisy = torch.from_numpy(sim.images[:].asnumpy().copy())
        true_snr = float(disk_variance(clean).mean() / disk_variance(noisy - clean).mean())
        sim.save(str(folder / "aspire.star"), overwrite=True)
    particles = read_particles(folder / "aspire.star")
    ctf = dataclasses.replace(particles.ctf,
                              defocus_angle_deg=torch.rad2deg(particles.ctf.defocus_angle_deg))
    write_particles(folder / "particles.star", dataclasses.replace(particles, ctf=ctf))
    particles = read_particles(folder / "particles.star")
    return AspireParticles(folder / "particles.star", particles, torch.from_numpy(volume),
                           PIXEL_A, true_snr, noise_var, coloured)
