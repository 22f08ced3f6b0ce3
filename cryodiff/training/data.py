"""Training pairs (noisy particle → clean target) from disk or simulated on the fly.

Both sources give the training loop the same thing: a held-out validation set, normalisation
statistics measured on training data, and ``train_batch(step, batch_size, rank, world)``.
Batches are a pure function of ``(seed, step, rank)`` — never of how many batches were drawn
before — so a resumed run sees exactly the batches an uninterrupted run would have seen, and
DDP ranks see disjoint shards of each global batch (the role of a ``DistributedSampler``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryodiff.errors import CryodiffError
from cryodiff.training.config import TrainConfig

PARTICLES = "particles.mrcs"
TARGET_FILES = {"clean_ctf": "clean_ctf.mrcs", "clean": "clean.mrcs"}


def stream_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (seed, step, rank, purpose…), stable across runs."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def generator_for(*parts: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`stream_seed` of ``parts``."""
    return torch.Generator(device=device).manual_seed(stream_seed(*parts))


# Purposes mixed into stream seeds, so the streams of one step are independent.
(PURPOSE_BATCH, PURPOSE_AUGMENT, PURPOSE_NOISE, PURPOSE_DROPOUT, PURPOSE_VALIDATION,
 PURPOSE_INIT) = range(6)


@dataclass(frozen=True)
class Normalisation:
    """Scalar mean/std of conditions and targets on the training set (no clamping).

    The networks see ``(x - mean) / std``; outputs are mapped back with :meth:`denormalise`.
    """

    condition_mean: float
    condition_std: float
    target_mean: float
    target_std: float

    @classmethod
    def measure(cls, condition: torch.Tensor, target: torch.Tensor) -> Normalisation:
        c, t = condition.double(), target.double()
        return cls(float(c.mean()), float(c.std()), float(t.mean()), float(t.std()))

    def condition(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.condition_mean) / self.condition_std

    def target(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.target_mean) / self.target_std

    def denormalise(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised target-space images back to the target's units."""
        return y * self.target_std + self.target_mean

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> Normalisation:
        return cls(**{k: float(v) for k, v in data.items()})


def augment_pairs(condition: torch.Tensor, target: torch.Tensor, generator: torch.Generator,
                  shard: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one random element of the dihedral group (flips, 90° rotations) per pair.

    ``condition``, ``target``: ``(B, L, L)``; the same transform hits both images of a pair.
    ``shard = (rank, world)``: draw for the global batch of ``world · B`` pairs and keep rows
    ``rank, rank + world, …`` (this rank's share, see :meth:`PairedStackData.batch_indices`).
    """
    rank, world = shard
    ops = torch.randint(0, 8, (condition.shape[0] * world,), generator=generator)[rank::world]
    # The rows of each element are found on the CPU and sent in one asynchronous copy, so a
    # batch on a GPU is transformed without the host ever waiting for the device.
    ops = ops.cpu()
    order, counts = torch.argsort(ops, stable=True), torch.bincount(ops, minlength=8).tolist()
    groups = order.to(condition.device, non_blocking=True).split(counts)
    out_c, out_t = condition.clone(), target.clone()
    for op, rows in enumerate(groups):
        if op == 0 or len(rows) == 0:  # element 0 is the identity
            continue
        c, t = condition[rows], target[rows]
        if op >= 4:
            c, t = c.flip(-1), t.flip(-1)
        k = op % 4
        out_c[rows], out_t[rows] = torch.rot90(c, k, (-2, -1)), torch.rot90(t, k, (-2, -1))
    return out_c, out_t


class PairedStackData:
    """In-memory pairs ``condition (N, L, L)`` → ``target (N, L, L)`` with a validation split.

    A seeded permutation sets aside ``config.n_val`` pairs (at most a fifth) for validation,
    or ``validation`` gives the validation pairs ``(condition, target)`` and every given pair
    trains (the benchmark's fixed splits); normalisation statistics use the training pairs.
    :meth:`from_folder` reads a ``cryodiff simulate`` folder (``particles.mrcs`` and ``clean_ctf.mrcs`` or ``clean.mrcs``). ``pixel_size_A``
    (Å, None if unknown) is recorded in the checkpoints, so a model is applied only to
    particles at its pixel size.
    """

    def __init__(self, condition: torch.Tensor, target: torch.Tensor, config: TrainConfig,
                 source: str | os.PathLike | None = None, pixel_size_A: float | None = None,
                 validation: tuple[torch.Tensor, torch.Tensor] | None = None):
        if condition.shape != target.shape or condition.ndim != 3:
            raise CryodiffError(f"conditions {tuple(condition.shape)} and targets "
                                f"{tuple(target.shape)} must both be (N, L, L)", path=source)
        n = condition.shape[0]
        n_val = min(config.n_val, n // 5) if validation is None else 0
        if n - n_val < 2:
            raise CryodiffError(f"only {n} particles: too few to train", path=source)
        if validation is None:
            order = torch.randperm(n, generator=generator_for(config.seed, PURPOSE_VALIDATION))
            val, train = order[:n_val], order[n_val:]
        else:  # given apart: every pair trains, in the given order
            train, val = torch.arange(n), torch.arange(n, n + validation[0].shape[0])
            condition = torch.cat([condition, validation[0]])
            target = torch.cat([target, validation[1]])
        self.box = int(condition.shape[-1])
        self.pixel_size_A = pixel_size_A
        self.seed = config.seed
        self.augment = config.augment
        self.train_condition, self.train_target = condition[train].float(), target[train].float()
        self.val_condition, self.val_target = condition[val].float(), target[val].float()
        self.normalisation = Normalisation.measure(self.train_condition, self.train_target)
        self._orders: dict[int, torch.Tensor] = {}

    @classmethod
    def from_folder(cls, data_dir: str | os.PathLike, config: TrainConfig) -> PairedStackData:
        from cryodiff.io.mrc import read_stack, stack_info

        folder = Path(data_dir)
        if not folder.is_dir():
            raise CryodiffError("training data folder not found", path=folder)
        files = [folder / PARTICLES, folder / TARGET_FILES[config.target]]
        for file in files:
            if not file.is_file():
                raise CryodiffError(f"missing {file.name} (expected the output of "
                                    f"`cryodiff simulate`)", path=folder)
        from cryodiff.io.dataset import check_dataset

        check_dataset(folder, [file.name for file in files])  # interrupted or mixed runs
        header_pixel_size_A = stack_info(files[0])[2]
        return cls(read_stack(files[0]), read_stack(files[1]), config, source=folder,
                   pixel_size_A=header_pixel_size_A if header_pixel_size_A > 0 else None)

    def fixed_pairs(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` training pairs of a seeded order (no augmentation)."""
        idx = self._epoch_order(0)[:n]
        return self.train_condition[idx], self.train_target[idx]

    def __len__(self) -> int:
        return self.train_condition.shape[0]

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        """The seeded permutation of training pairs read during ``epoch`` (two are cached:
        a global batch straddles at most one epoch boundary)."""
        if epoch not in self._orders:
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = torch.randperm(
                len(self), generator=generator_for(self.seed, PURPOSE_BATCH, epoch))
        return self._orders[epoch]

    def batch_indices(self, step: int, batch_size: int, rank: int = 0, world: int = 1
                      ) -> torch.Tensor:
        """Indices of this rank's share of global batch ``step``: epochs are seeded
        permutations read in order; rank ``r`` takes positions ``r, r+world, …``."""
        n, global_size = len(self), batch_size * world
        positions = step * global_size + torch.arange(rank, global_size, world)
        epochs, offsets = positions // n, positions % n
        return torch.stack([self._epoch_order(int(e))[int(o)] for e, o in zip(epochs, offsets)])

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(condition, target)``, each ``(batch_size, L, L)``, in raw (un-normalised) units."""
        idx = self.batch_indices(step, batch_size, rank, world)
        condition, target = self.train_condition[idx], self.train_target[idx]
        if self.augment:
            # Drawn for the global batch (rank 0's stream): DDP ranks together transform
            # the pairs exactly as one process with the global batch would.
            condition, target = augment_pairs(
                condition, target, generator_for(self.seed, PURPOSE_AUGMENT, step, 0),
                shard=(rank, world))
        return condition, target


class SimulatedData:
    """Infinite pairs simulated from a map with new random poses, CTFs and noise every batch.

    Validation particles and the normalisation sample are simulated once from seeds that no
    training batch uses.
    """

    def __init__(self, map_spec: str, config: TrainConfig, n_normalisation: int = 512):
        from cryodiff.projection import prepare_volume
        from cryodiff.simulate import SimulationConfig, calibrate_noise, load_map_or_phantom

        volume, pixel_size_A = load_map_or_phantom(map_spec, config.box)
        self.box = config.box
        self.pixel_size_A = float(pixel_size_A)
        self.seed = config.seed
        self.target = config.target
        self.augment = config.augment
        self.prepared = prepare_volume(volume)
        self.simulation = SimulationConfig(box=config.box, snr=config.snr, use_ctf=config.use_ctf,
                                           seed=config.seed, pixel_size_A=pixel_size_A)
        # Noise scales are calibrated once, so every batch has the same noise level.
        self.levels = calibrate_noise(self.prepared, self.simulation,
                                      generator=generator_for(config.seed, PURPOSE_VALIDATION, 3))
        self.val_condition, self.val_target = self._simulate(
            config.n_val, generator_for(config.seed, PURPOSE_VALIDATION, 0))
        norm_c, norm_t = self._simulate(
            n_normalisation, generator_for(config.seed, PURPOSE_VALIDATION, 1))
        self.normalisation = Normalisation.measure(norm_c, norm_t)
        self.batch_volume = self.prepared  # training batches are projected from this copy

    def use_device(self, device: str | torch.device) -> None:
        """Simulate training batches on ``device`` (projection, CTF and noise colouring run
        there; the random draws stay on the CPU, so batches match the CPU's up to rounding).
        Validation, normalisation and fixed pairs stay on the CPU."""
        self.batch_volume = dataclasses.replace(self.prepared, data=self.prepared.data.to(device))

    def _simulate(self, n: int, generator: torch.Generator, volume=None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        from cryodiff.simulate import simulate_batch

        volume = self.prepared if volume is None else volume
        batch = simulate_batch(volume, self.simulation, n, generator, levels=self.levels)
        target = batch.clean_ctf if self.target == "clean_ctf" else batch.clean
        return batch.particles.float(), target.float()

    def fixed_pairs(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` training pairs simulated from a seed no training batch uses."""
        return self._simulate(n, generator_for(self.seed, PURPOSE_VALIDATION, 2))

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh ``(condition, target)`` pairs for ``(step, rank)``; ``world`` is unused
        because each rank's stream is already distinct."""
        return self._simulate(batch_size, generator_for(self.seed, PURPOSE_BATCH, step, rank),
                              self.batch_volume)


TrainingData = PairedStackData | SimulatedData


def open_training_data(config: TrainConfig, data_dir: str | os.PathLike | None = None,
                       map_spec: str | None = None) -> TrainingData:
    """The training data named by exactly one of ``data_dir`` and ``map_spec``."""
    if (data_dir is None) == (map_spec is None):
        raise CryodiffError("give exactly one of --data DIR and --map PATH|phantom")
    if data_dir is not None:
        return PairedStackData.from_folder(data_dir, config)
    return SimulatedData(map_spec, config)
