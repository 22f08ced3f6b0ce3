"""The data of one benchmark condition (map × SNR): disjoint train / validation / test splits.

Every split is simulated with the same calibrated noise levels (so all splits have the same
SNR) from its own seeded stream, hence its own random poses: poses are continuous uniform
rotations, so no test pose is a training pose. Training particles also get a second,
independent noisy image of the same projection (same pose, CTF and shift; new structural and
shot noise) for Noise2Noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.ctf import CtfParams, ctf_2d
from cryodiff.projection import PreparedVolume, prepare_volume, relion_shifts_px
from cryodiff.simulate import (NoiseLevels, SimulationConfig, calibrate_noise, draw_poses,
                               load_map_or_phantom, simulate_at_poses)

# Stream numbers mixed into the seed: one per split, so the splits never share draws.
_PILOT, _TRAIN, _VAL, _TEST = range(4)


@dataclass(frozen=True)
class Split:
    """Simulated particles ``(N, L, L)`` with their ground truth and acquisition parameters.

    ``clean`` is the projection, ``clean_ctf`` the projection with CTF (the default
    denoising target); ``ctf`` the CTF parameters and ``ctf_grid`` ``(N, L, L)`` the CTF on
    the centred Fourier grid (None without CTF); ``rotations`` ``(N, 3, 3)``, ``shifts_px``
    ``(N, 2)`` the shifts the images carry (as :func:`cryodiff.projection.project` takes
    them), ``eulers_deg`` / ``shifts_A`` the same for a STAR file; ``noisy_pair`` a second
    independent noisy image of each projection (training split only).
    """

    noisy: torch.Tensor
    clean: torch.Tensor
    clean_ctf: torch.Tensor
    ctf: CtfParams | None
    ctf_grid: torch.Tensor | None
    rotations: torch.Tensor
    shifts_px: torch.Tensor
    eulers_deg: torch.Tensor
    shifts_A: torch.Tensor
    noisy_pair: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.noisy.shape[0]


@dataclass(frozen=True)
class Condition:
    """One map at one SNR: the true ``volume`` (L, L, L), its ``pixel_size_A`` and the splits."""

    map_name: str
    map_spec: str
    snr: float
    volume: torch.Tensor
    pixel_size_A: float
    simulation: SimulationConfig
    levels: NoiseLevels
    train: Split
    val: Split
    test: Split

    @property
    def tag(self) -> str:
        """A short file-name-safe label, e.g. ``phantom_snr0.1``."""
        return f"{self.map_name}_snr{self.snr:g}"


def map_name(spec: str) -> str:
    """``"phantom"`` or the map file's stem (e.g. ``ribosome70S_65``)."""
    return "phantom" if spec == "phantom" else Path(spec).stem


def _generator(*parts: int) -> torch.Generator:
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


def simulate_split(prepared: PreparedVolume, simulation: SimulationConfig, levels: NoiseLevels,
                   n: int, generator: torch.Generator, with_pair: bool = False) -> Split:
    """``n`` particles with new poses from ``generator`` at the calibrated ``levels``."""
    poses = draw_poses(simulation, n, generator)
    batch = simulate_at_poses(prepared, simulation, poses, levels, generator)
    pair = None
    if with_pair:  # a second, independent noise draw of the same projections
        pair = simulate_at_poses(prepared, simulation, poses, levels, generator).particles.float()
    pixel_size_A = float(simulation.pixel_size_A)
    grid = None if poses.ctf is None else ctf_2d(poses.ctf, simulation.box, pixel_size_A).float()
    return Split(batch.particles.float(), batch.clean.float(), batch.clean_ctf.float(), poses.ctf,
                 grid, poses.rotations.float(),
                 relion_shifts_px(poses.shifts_A, pixel_size_A, simulation.box).float(),
                 poses.eulers_deg, poses.shifts_A, pair)


def make_condition(map_spec: str, snr: float, config: BenchmarkConfig) -> Condition:
    """Load (or make) the map at ``config.box`` and simulate the three splits at ``snr``."""
    volume, pixel_size_A = load_map_or_phantom(map_spec, config.box, config.pixel_size_A,
                                               seed=config.seed)
    simulation = SimulationConfig(box=config.box, n_particles=config.n_test_3d, snr=snr,
                                  structural_snr=config.structural_snr, use_ctf=True,
                                  pixel_size_A=pixel_size_A, seed=config.seed)
    simulation.validate()
    prepared = prepare_volume(volume)
    seed = (config.seed, round(snr * 1e6))
    levels = calibrate_noise(prepared, simulation, generator=_generator(*seed, _PILOT))
    train = simulate_split(prepared, simulation, levels, config.n_train,
                           _generator(*seed, _TRAIN), with_pair=True)
    val = simulate_split(prepared, simulation, levels, config.n_val, _generator(*seed, _VAL))
    test = simulate_split(prepared, simulation, levels, config.n_test_3d,
                          _generator(*seed, _TEST))
    return Condition(map_name(map_spec), map_spec, snr, volume.float(), pixel_size_A, simulation,
                     levels, train, val, test)
