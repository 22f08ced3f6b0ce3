"""Image formation, SNR calibration and the simulated dataset on disk.

Each particle image is formed as ::

    particles = CTF ⊛ (projection + structural) + shot
    clean     = projection                 (shifted by the particle's origin, no CTF, no noise)
    clean_ctf = CTF ⊛ projection           (equal to clean when use_ctf is False)

``structural`` is coloured Gaussian noise (power spectrum ``∝ f^-noise_exponent``) plus, with
``belt``, a per-particle disordered detergent belt (:mod:`cryodiff.noise`); ``shot`` is white.

**SNR definitions** (all variances are per image, about its mean, inside the disk of radius
``snr_radius_fraction · box`` pixels, averaged over the images before taking ratios):

* total ``snr = var(clean_ctf) / var(particles − clean_ctf)`` — everything that is not the
  CTF-modulated projection counts as noise;
* ``structural_snr = var(clean_ctf) / var(CTF ⊛ structural)`` — the structural part alone
  (``None``: no structural noise). It must exceed ``snr``; the shot noise supplies the rest:
  ``1/snr = 1/structural_snr + 1/shot_snr``.

Noise scales are calibrated from measured variances: :func:`calibrate_noise` simulates a
pilot batch, measures the clean signal variance and the variance that unit-scale structural
noise has after the CTF, and solves for the structural scale and the shot-noise std.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryodiff import ctf as ctf_model
from cryodiff.ctf import CtfParams, apply_ctf
from cryodiff.errors import CryodiffError
from cryodiff.geometry import euler_to_matrix, matrix_to_euler, random_rotations
from cryodiff.noise import (coloured_noise, default_belt_geometry, draw_belt_blobs,
                            power_law_spectrum, project_blobs, radial_spectrum_grid)
from cryodiff.projection import PreparedVolume, relion_shifts_px
from cryodiff.snr import disk_variance, measure_snr, snr_from_sums, snr_sums

__all__ = ["SimulationConfig", "NoiseLevels", "Poses", "SimulatedBatch", "draw_poses",
           "calibrate_noise", "simulate_at_poses", "simulate_batch", "simulate_dataset",
           "load_map_or_phantom", "disk_variance", "measure_snr", "snr_sums", "snr_from_sums"]


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated dataset (saved in ``simulation.json``).

    Units: ``defocus_range_um`` and ``astigmatism_um`` in µm (defocus uniform in the range,
    astigmatism ``defocus_u − defocus_v`` uniform in [0, astigmatism_um], angle uniform in
    [0°, 180°)); ``max_shift_px`` pixels (origins uniform in the square ±max_shift_px);
    ``voltage_kV`` kV, ``cs_mm`` mm, ``bfactor_A2`` Å², ``pixel_size_A`` Å (the map's; None
    until a map is chosen). ``belt_fraction`` is the belt's share of the structural noise
    variance, ``belt_blobs`` the number of blobs per particle. ``pilot_size`` particles
    calibrate the noise scales of a dataset; ``chunk_size`` particles are made at a time.
    ``noise_spectrum`` (rings ``0 … box//2`` in cycles/box, any scale) colours the noise added
    after the CTF (the shot noise; white when None), e.g. a spectrum measured on real
    particles (:mod:`cryodiff.noise_estimate`); its level is still set by ``snr``.
    """

    box: int = 128
    n_particles: int = 1000
    snr: float = 0.1
    structural_snr: float | None = 1.4
    use_ctf: bool = True
    defocus_range_um: tuple[float, float] = (1.0, 2.5)
    astigmatism_um: float = 0.05
    max_shift_px: float = 2.0
    voltage_kV: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    bfactor_A2: float = 0.0
    noise_exponent: float = 1.0
    belt: bool = False
    belt_fraction: float = 0.5
    belt_blobs: int = 150
    snr_radius_fraction: float = 0.4
    pixel_size_A: float | None = None
    seed: int = 0
    chunk_size: int = 1000
    pilot_size: int = 256
    noise_spectrum: tuple[float, ...] | None = None

    def validate(self) -> None:
        """Raise :class:`CryodiffError` for values no simulation can use."""
        if self.box < 8:
            raise CryodiffError(f"box must be at least 8 pixels, got {self.box}")
        if self.n_particles < 1:
            raise CryodiffError(f"the number of particles must be positive, got {self.n_particles}")
        if not (self.snr > 0 and math.isfinite(self.snr)):
            raise CryodiffError(f"--snr must be a positive number, got {self.snr}")
        if self.structural_snr is not None and not self.structural_snr > self.snr:
            raise CryodiffError(f"--structural-snr ({self.structural_snr}) must be larger than "
                                f"--snr ({self.snr}): structural noise is only part of the noise")
        low, high = self.defocus_range_um
        if not 0 < low <= high:
            raise CryodiffError(f"--defocus-range needs 0 < MIN <= MAX µm, got {low} {high}")
        if self.pixel_size_A is not None and not self.pixel_size_A > 0:
            raise CryodiffError(f"pixel size must be positive, got {self.pixel_size_A}")
        if self.chunk_size < 1:
            raise CryodiffError(f"--chunk-size must be positive, got {self.chunk_size}")
        if not 0 <= self.belt_fraction <= 1:
            raise CryodiffError(f"belt_fraction must be in [0, 1], got {self.belt_fraction}")
        if self.noise_spectrum is not None and (
                len(self.noise_spectrum) != self.box // 2 + 1
                or not all(p > 0 and math.isfinite(p) for p in self.noise_spectrum)):
            raise CryodiffError(f"noise_spectrum needs {self.box // 2 + 1} positive values "
                                f"(rings 0…{self.box // 2}), got {len(self.noise_spectrum)}")

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["defocus_range_um"] = list(self.defocus_range_um)
        return values


@dataclass(frozen=True)
class NoiseLevels:
    """Calibrated noise scales: structural noise before the CTF, shot noise after it.

    ``signal_var`` is the mean disk variance of ``clean_ctf`` they were calibrated on;
    ``coloured_std`` multiplies unit-variance coloured noise, ``belt_scale`` the belt's
    projected blob density, ``shot_std`` is the std of the white shot noise.
    """

    signal_var: float
    coloured_std: float
    belt_scale: float
    shot_std: float


@dataclass(frozen=True)
class Poses:
    """Per-particle pose, origin and CTF of ``n`` particles."""

    rotations: torch.Tensor  # (n, 3, 3) RELION A matrices, float32
    eulers_deg: torch.Tensor  # (n, 3) rot, tilt, psi in degrees, float64
    shifts_A: torch.Tensor  # (n, 2) RELION origins x, y in Å, float64
    ctf: CtfParams | None

    def __len__(self) -> int:
        return self.rotations.shape[0]

    def slice(self, start: int, stop: int) -> Poses:
        ctf = None if self.ctf is None else CtfParams(
            **{f.name: getattr(self.ctf, f.name)[start:stop] for f in dataclasses.fields(CtfParams)})
        return Poses(self.rotations[start:stop], self.eulers_deg[start:stop],
                     self.shifts_A[start:stop], ctf)


@dataclass(frozen=True)
class SimulatedBatch:
    """A batch of simulated particles, each image tensor ``(n, L, L)``.

    ``eulers_deg`` (n, 3) degrees, ``shifts_A`` (n, 2) RELION origins in Å, ``ctf`` the
    per-particle CTF parameters (None without CTF), ``structural`` the structural noise after
    the CTF (so ``particles − clean_ctf − structural`` is the shot noise).
    """

    particles: torch.Tensor
    clean: torch.Tensor
    clean_ctf: torch.Tensor
    eulers_deg: torch.Tensor
    shifts_A: torch.Tensor
    ctf: CtfParams | None
    structural: torch.Tensor
    levels: NoiseLevels


def draw_poses(config: SimulationConfig, n: int, generator: torch.Generator | None = None,
               ctf_pool: CtfParams | None = None) -> Poses:
    """Uniform random rotations, origins uniform in ±max_shift_px and random defocus.

    With ``ctf_pool`` (e.g. the CTFs of a real data set's particles) each particle's CTF is a
    row of the pool drawn uniformly with replacement, voltage, Cs and amplitude contrast
    included, instead of the config's ranges.
    """
    pixel_size = _pixel_size(config)
    eulers = matrix_to_euler(random_rotations(n, generator, torch.float64))
    shifts_A = (2 * torch.rand(n, 2, generator=generator, dtype=torch.float64) - 1) \
        * config.max_shift_px * pixel_size
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    ctf = None
    if config.use_ctf:
        low, high = config.defocus_range_um
        defocus_A = 1e4 * (low + (high - low) * u[:, 0])
        astigmatism_A = 1e4 * config.astigmatism_um * u[:, 1]
        constant = torch.ones(n, dtype=torch.float64)
        ctf = CtfParams(
            defocus_u_A=defocus_A + astigmatism_A / 2, defocus_v_A=defocus_A - astigmatism_A / 2,
            defocus_angle_deg=180 * u[:, 2], voltage_kV=config.voltage_kV * constant,
            cs_mm=config.cs_mm * constant, amplitude_contrast=config.amplitude_contrast * constant,
            bfactor_A2=config.bfactor_A2 * constant, phase_shift_deg=0 * constant)
    if config.use_ctf and ctf_pool is not None:
        rows = torch.randint(0, len(ctf_pool.defocus_u_A), (n,), generator=generator)
        ctf = CtfParams(**{f.name: torch.as_tensor(getattr(ctf_pool, f.name)).double()
                           .expand(len(ctf_pool.defocus_u_A))[rows].clone()
                           for f in dataclasses.fields(CtfParams)})
    # Images use the matrices of the stored (rounded-trip) angles, exactly what a reader gets.
    return Poses(euler_to_matrix(eulers).float(), eulers, shifts_A, ctf)


@dataclass(frozen=True)
class _Components:
    """Unit-scale parts of a batch, all after the CTF: levels only multiply them."""

    clean: torch.Tensor
    clean_ctf: torch.Tensor
    coloured: torch.Tensor
    belt: torch.Tensor | None
    shot: torch.Tensor


def _components(prepared: PreparedVolume, config: SimulationConfig, poses: Poses,
                generator: torch.Generator | None) -> _Components:
    """Project, draw unit noise (particle by particle, so chunking cannot change it), apply CTF."""
    from cryodiff.projection import project

    box, n, pixel_size = config.box, len(poses), _pixel_size(config)
    device = prepared.device
    shifts_px = relion_shifts_px(poses.shifts_A, pixel_size, box).to(device)
    clean = project(prepared, poses.rotations.to(device), shifts_px).float()
    white, shot, centres, weights = [], [], [], []
    geometry = default_belt_geometry(box, pixel_size)
    for _ in range(n):
        white.append(torch.randn(box, box, generator=generator))
        shot.append(torch.randn(box, box, generator=generator))
        if config.belt:
            c, w = draw_belt_blobs(1, geometry, config.belt_blobs, generator)
            centres.append(c)
            weights.append(w)
    ctf, clean_ctf = None, clean
    if poses.ctf is not None:
        ctf = ctf_model.ctf_2d(poses.ctf, box, pixel_size, device=device, dtype=clean.dtype)
        clean_ctf = apply_ctf(clean, ctf)
    power = power_law_spectrum(box, config.noise_exponent, device, clean.dtype)
    coloured = coloured_noise(torch.stack(white).to(device), power, transfer=ctf)
    shot = torch.stack(shot).to(device)
    if config.noise_spectrum is not None:
        shot_power = radial_spectrum_grid(config.noise_spectrum, box, normalise=True)
        shot = coloured_noise(shot, shot_power.to(device=device, dtype=clean.dtype))
    belt = None
    if config.belt:
        belt = project_blobs(torch.cat(centres).to(device), torch.cat(weights).to(device),
                             poses.rotations.to(device), box, pixel_size, shifts_px=shifts_px,
                             transfer=ctf)
    return _Components(clean, clean_ctf, coloured, belt, shot)


def _levels_from(components: _Components, config: SimulationConfig) -> NoiseLevels:
    radius = config.snr_radius_fraction
    signal = disk_variance(components.clean_ctf, radius).mean().item()
    if not signal > 0:
        raise CryodiffError("the map projects to empty images (zero signal variance)")
    structural = 0.0 if config.structural_snr is None else signal / config.structural_snr
    belt_share = config.belt_fraction if components.belt is not None else 0.0
    coloured_var = disk_variance(components.coloured, radius).mean().item()
    coloured_std = math.sqrt((1 - belt_share) * structural / coloured_var)
    belt_scale = 0.0
    if belt_share > 0:
        belt_scale = math.sqrt(belt_share * structural / disk_variance(components.belt, radius).mean().item())
    shot_std = math.sqrt(signal / config.snr - structural)
    if config.noise_spectrum is not None:
        # Coloured noise of unit variance per pixel has a smaller disk variance (the disk
        # mean takes its low frequencies), so calibrate on what the SNR measures.
        shot_std /= math.sqrt(disk_variance(components.shot, radius).mean().item())
    return NoiseLevels(signal, coloured_std, belt_scale, shot_std)


def calibrate_noise(prepared: PreparedVolume, config: SimulationConfig, n: int | None = None,
                    generator: torch.Generator | None = None,
                    ctf_pool: CtfParams | None = None) -> NoiseLevels:
    """Noise scales that give ``config.snr`` and ``config.structural_snr`` on ``n`` pilot particles
    (CTFs drawn from ``ctf_pool`` when given, see :func:`draw_poses`)."""
    n = config.pilot_size if n is None else n
    poses = draw_poses(config, n, generator, ctf_pool)
    return _levels_from(_components(prepared, config, poses, generator), config)


def _assemble(components: _Components, poses: Poses, levels: NoiseLevels) -> SimulatedBatch:
    structural = levels.coloured_std * components.coloured
    if components.belt is not None:
        structural = structural + levels.belt_scale * components.belt
    particles = components.clean_ctf + structural + levels.shot_std * components.shot
    return SimulatedBatch(particles, components.clean, components.clean_ctf, poses.eulers_deg,
                          poses.shifts_A, poses.ctf, structural, levels)


def simulate_at_poses(prepared_volume: PreparedVolume, config: SimulationConfig, poses: Poses,
                      levels: NoiseLevels, generator: torch.Generator | None = None,
                      ) -> SimulatedBatch:
    """Particles at the given ``poses`` (and their CTFs) with fresh noise at fixed ``levels``.

    Calling it twice with the same poses gives two independent noisy images of each
    projection (Noise2Noise pairs)."""
    return _assemble(_components(prepared_volume, config, poses, generator), poses, levels)


def simulate_batch(prepared_volume: PreparedVolume, config: SimulationConfig, n: int,
                   generator: torch.Generator | None = None,
                   levels: NoiseLevels | None = None) -> SimulatedBatch:
    """Simulate ``n`` particles with new random poses, CTFs and noise (seeded by ``generator``).

    ``config.pixel_size_A`` must be set (see :func:`load_map_or_phantom`). Without
    ``levels`` the noise is calibrated on the batch itself, so its SNRs hit the targets up to
    the random cross terms; pass :func:`calibrate_noise`'s levels to keep them fixed.
    """
    config.validate()
    if prepared_volume.box != config.box:
        raise CryodiffError(f"the map's box ({prepared_volume.box}) does not match the "
                            f"simulation box ({config.box})")
    poses = draw_poses(config, n, generator)
    components = _components(prepared_volume, config, poses, generator)
    return _assemble(components, poses, levels or _levels_from(components, config))


def _pixel_size(config: SimulationConfig) -> float:
    if config.pixel_size_A is None:
        raise CryodiffError("the simulation needs the map's pixel size (pixel_size_A)")
    return float(config.pixel_size_A)


def load_map_or_phantom(spec: str, box: int, pixel_size_A: float | None = None,
                        belt: bool = False, seed: int = 0) -> tuple[torch.Tensor, float]:
    """The map to simulate from, at ``box`` pixels: ``(volume (L, L, L), pixel_size_A)``.

    ``spec`` is ``"phantom"`` (the built-in map, :func:`cryodiff.phantom.make_phantom` with
    ``seed`` and ``belt``, at its own pixel size) or the path of an MRC map, resampled to ``box``
    by Fourier cropping/padding (the pixel size scales by ``old_box / box``). ``pixel_size_A``
    overrides the header's; a header without one (0) requires it.
    """
    from cryodiff.fourier import fourier_resize

    if spec == "phantom":
        from cryodiff.phantom import make_phantom, phantom_pixel_size_A

        if not 32 <= box <= 256:
            raise CryodiffError(f"the phantom is made for boxes 32–256, got --box {box}")
        return make_phantom(box, seed=seed, belt=belt), phantom_pixel_size_A(box)
    from cryodiff.io.mrc import read_map

    volume, header_pixel_size = read_map(spec)
    size = pixel_size_A if pixel_size_A is not None else header_pixel_size
    if not size > 0:
        raise CryodiffError("the map's header has no pixel size: give it with --pixel-size", path=spec)
    if not volume.std() > 0:
        raise CryodiffError("the map is constant", path=spec)
    if box < 8:
        raise CryodiffError(f"box must be at least 8 pixels, got {box}", path=spec)
    return fourier_resize(volume, box, 3), float(size) * volume.shape[-1] / box


def _seed_streams(seed: int) -> tuple[torch.Generator, torch.Generator, torch.Generator]:
    """Independent generators for the pilot, the poses and the noise of a dataset."""
    states = [int(s.generate_state(1, np.uint64)[0] >> 1) for s in np.random.SeedSequence(seed).spawn(3)]
    return tuple(torch.Generator().manual_seed(s) for s in states)


def simulate_dataset(volume: torch.Tensor, pixel_size_A: float, config: SimulationConfig,
                     out_dir, map_source: str = "phantom", progress: bool = True,
                     ctf_pool: CtfParams | None = None) -> dict:
    """Simulate ``config.n_particles`` particles from ``volume`` into the folder ``out_dir``.

    Writes ``particles.mrcs`` (noisy), ``clean.mrcs`` (projection, no CTF, no noise),
    ``clean_ctf.mrcs``, ``particles.star`` (RELION 3.1: optics, poses, origins, CTF, pixel
    size, image names) and ``simulation.json`` (config, version, map source, noise levels and
    measured SNRs), each atomically; ``simulation.json`` comes last, after a marker that
    readers refuse (:mod:`cryodiff.io.dataset`), so a killed run never passes for a complete
    data set. Particles are made ``chunk_size`` at a time (memory is
    bounded by one chunk) and are identical for any chunk size: the noise scales come from a
    pilot batch, the poses are drawn up front and the noise particle by particle. Returns
    the summary stored in ``simulation.json``. ``ctf_pool``: draw each particle's CTF from
    these rows (:func:`draw_poses`), e.g. a real data set's.
    """
    from tqdm.auto import tqdm

    from cryodiff import __version__
    from cryodiff.io.dataset import begin_dataset, finish_dataset
    from cryodiff.io.mrc import StackWriter
    from cryodiff.io.star import particles_from_arrays, write_particles
    from cryodiff.projection import prepare_volume

    config = dataclasses.replace(config, pixel_size_A=float(pixel_size_A))
    config.validate()
    if tuple(volume.shape) != (config.box,) * 3:
        raise CryodiffError(f"the map's shape {tuple(volume.shape)} does not match the box "
                            f"{config.box} (resample it with load_map_or_phantom)", path=map_source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare_volume(volume)
    pilot_gen, pose_gen, noise_gen = _seed_streams(config.seed)
    levels = calibrate_noise(prepared, config, config.pilot_size, pilot_gen, ctf_pool)
    poses = draw_poses(config, config.n_particles, pose_gen, ctf_pool)
    sums = np.zeros(3)
    names = ("particles", "clean", "clean_ctf")
    with ExitStack() as files:
        writers = [files.enter_context(StackWriter(out / f"{name}.mrcs", config.box, pixel_size_A))
                   for name in names]
        bar = files.enter_context(tqdm(total=config.n_particles, desc="simulating",
                                       unit="particle", disable=not progress))
        for start in range(0, config.n_particles, config.chunk_size):
            chunk = poses.slice(start, min(start + config.chunk_size, config.n_particles))
            batch = simulate_at_poses(prepared, config, chunk, levels, noise_gen)
            for writer, images in zip(writers, (batch.particles, batch.clean, batch.clean_ctf)):
                writer.write(images)
            sums += snr_sums(batch, config.snr_radius_fraction)
            bar.update(len(chunk))
        # The stacks replace the old ones when this block closes: from here until
        # finish_dataset, readers refuse the folder (an earlier failure leaves it untouched).
        begin_dataset(out)
    stack = particles_from_arrays("particles.mrcs", poses.eulers_deg, poses.shifts_A, poses.ctf,
                                  pixel_size_A, config.box, config.voltage_kV, config.cs_mm,
                                  config.amplitude_contrast, base_dir=out)
    write_particles(out / "particles.star", stack)
    measured = snr_from_sums(sums)
    summary = {
        "cryodiff_version": __version__,
        "map_source": str(map_source),
        "n_particles": config.n_particles,
        "box": config.box,
        "pixel_size_A": float(pixel_size_A),
        "snr": config.snr,
        "structural_snr": config.structural_snr,
        "measured_snr": measured["snr"],
        "measured_structural_snr": measured["structural_snr"],
        "noise_levels": dataclasses.asdict(levels),
        "files": {name: f"{name}.mrcs" for name in names} | {"star": "particles.star"},
        "config": config.to_dict(),
    }
    finish_dataset(out, summary)
    return summary
