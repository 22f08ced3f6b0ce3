"""Loading the particle images a STAR file points to, all at once or in batches.

Each stack is memory-mapped and only the requested images are read, so iterating over a large
dataset holds one batch in memory. The images' box is checked against the STAR's, and an
image with a NaN or infinite pixel is refused (:func:`nonfinite_particles` finds them all, for
callers that offer to skip them).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from cryodiff.errors import CryodiffError
from cryodiff.io.mrc import StackFile, nonfinite_images
from cryodiff.io.star import ParticleStack

# RELION data sets may spread particles over thousands of per-micrograph stacks; keeping a
# bounded number open avoids running out of file handles.
_MAX_OPEN_STACKS = 64


class _OpenStacks:
    """A small least-recently-used cache of open stacks, validated against the particles."""

    def __init__(self, particles: ParticleStack):
        self._particles = particles
        self._open: OrderedDict[Path, StackFile] = OrderedDict()

    def get(self, path: Path) -> StackFile:
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        stack = StackFile(path)
        expected = self._particles.box
        if expected is not None and stack.box != expected:
            stack.close()
            where = self._particles.star_path or "the particle table"
            raise CryodiffError(f"images are {stack.box}x{stack.box} but {where} says the box "
                                f"is {expected}", path=path)
        self._open[path] = stack
        if len(self._open) > _MAX_OPEN_STACKS:
            self._open.popitem(last=False)[1].close()
        return stack

    def close(self) -> None:
        for stack in self._open.values():
            stack.close()
        self._open.clear()

    def load(self, indices: np.ndarray, check_finite: bool = True) -> torch.Tensor:
        """Images of the particles at ``indices`` as ``(n, L, L)`` float32, in that order."""
        particles = self._particles
        paths = [particles.image_paths[i] for i in indices]
        groups: dict[Path, list[int]] = {}
        for position, path in enumerate(paths):
            groups.setdefault(path, []).append(position)
        out = None
        for path, positions in groups.items():
            stack = self.get(path)
            images = stack.read(particles.image_indices[indices[positions]], check_finite)
            if out is None:
                out = images.new_empty((len(indices), stack.box, stack.box))
            out[positions] = images
        if out is None:
            box = particles.box or 0
            out = torch.empty((0, box, box))
        return out


def _positions(particles: ParticleStack, indices) -> np.ndarray:
    if indices is None:
        return np.arange(len(particles))
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    bad = indices[(indices < -len(particles)) | (indices >= len(particles))]
    if bad.size:
        raise IndexError(f"particle index {int(bad[0])} out of range for {len(particles)} "
                         "particles")
    return indices % max(len(particles), 1)


def load_images(particles: ParticleStack,
                indices: np.ndarray | Sequence[int] | None = None) -> torch.Tensor:
    """Images of the particles at ``indices`` (all if None) as ``(n, L, L)`` float32.

    Raises CryodiffError naming the stack if it is missing, not an MRC file, truncated, shorter
    than an image number asks for, or of a box other than the STAR's.
    """
    stacks = _OpenStacks(particles)
    try:
        return stacks.load(_positions(particles, indices))
    finally:
        stacks.close()


def iter_image_batches(particles: ParticleStack, batch_size: int,
                       indices: np.ndarray | Sequence[int] | None = None,
                       ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(particle_indices, images (n, L, L))`` batches of at most ``batch_size``.

    Covers ``indices`` (all particles if None) in order; stacks stay open between batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    positions = _positions(particles, indices)
    stacks = _OpenStacks(particles)
    try:
        for start in range(0, len(positions), batch_size):
            batch = positions[start:start + batch_size]
            yield batch, stacks.load(batch)
    finally:
        stacks.close()


def nonfinite_particles(particles: ParticleStack, batch_size: int = 256) -> np.ndarray:
    """Positions of the particles whose image has a NaN or infinite pixel (reads them all)."""
    positions = _positions(particles, None)
    stacks = _OpenStacks(particles)
    bad = []
    try:
        for start in range(0, len(positions), batch_size):
            batch = positions[start:start + batch_size]
            bad.append(batch[nonfinite_images(stacks.load(batch, check_finite=False))])
    finally:
        stacks.close()
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def check_stacks(particles: ParticleStack) -> list[Path]:
    """Check every existing stack's header against the particles; return the missing stacks.

    Raises CryodiffError if a stack is not a readable MRC file, has a box other than the STAR's,
    or has fewer images than an ``N@stack`` name asks for. Reads headers only.
    """
    highest: dict[Path, int] = {}
    for path, index in zip(particles.image_paths, particles.image_indices.tolist()):
        highest[path] = max(highest.get(path, -1), index)
    missing = [path for path in highest if not path.exists()]
    stacks = _OpenStacks(particles)
    try:
        for path, index in highest.items():
            if path.exists():
                if index >= stacks.get(path).n_images:
                    raise CryodiffError(f"image {index + 1} requested but the stack has only "
                                        f"{stacks.get(path).n_images} images", path=path)
    finally:
        stacks.close()
    return missing
