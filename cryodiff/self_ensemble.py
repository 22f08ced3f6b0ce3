"""Dihedral self-ensemble: a denoiser applied to the 8 flips and 90° rotations of its input.

Every network here trains on randomly flipped and rotated pairs (the dihedral group D4 of the
pixel grid commutes with isotropic noise), yet a trained network is only approximately
equivariant. Applying it to each transformed input, undoing the transform on the output and
averaging the 8 results makes the estimate exactly equivariant and averages out part of the
network's error, at 8 network passes per image and no training. (The test-time counterpart
of the training augmentation; "self-ensemble", Lim et al. 2017, EDSR.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# (flip the last axis first?, quarter turns) for the 8 elements of the dihedral group D4.
DIHEDRAL_GROUP: tuple[tuple[bool, int], ...] = tuple(
    (flip, quarter_turns) for flip in (False, True) for quarter_turns in range(4))


def dihedral(images: torch.Tensor, flip: bool, quarter_turns: int) -> torch.Tensor:
    """``images (..., L, L)`` flipped along the last axis (if ``flip``), then rotated by
    ``quarter_turns`` × 90° in the last two axes."""
    return torch.rot90(images.flip(-1) if flip else images, quarter_turns, (-2, -1))


def undo_dihedral(images: torch.Tensor, flip: bool, quarter_turns: int) -> torch.Tensor:
    """The inverse of :func:`dihedral` with the same arguments."""
    images = torch.rot90(images, -quarter_turns, (-2, -1))
    return images.flip(-1) if flip else images


def self_ensemble(denoise: Callable[..., torch.Tensor], *images: torch.Tensor) -> torch.Tensor:
    """Mean over :data:`DIHEDRAL_GROUP` of ``undo(denoise(*transformed images))``.

    ``images``: one or more aligned ``(N, L, L)`` stacks (e.g. a sample and its noisy
    particle), all transformed alike; ``denoise`` returns ``(N, L, L)``.
    """
    total = None
    for flip, turns in DIHEDRAL_GROUP:
        out = undo_dihedral(denoise(*(dihedral(x, flip, turns) for x in images)), flip, turns)
        total = out.double() if total is None else total + out
    return (total / len(DIHEDRAL_GROUP)).to(images[0].dtype)
