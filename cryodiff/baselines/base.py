"""The contract every baseline denoiser follows, and the data it is fitted on.

A baseline is an object with ``fit(data) -> self`` (a no-op for methods with nothing to
choose) and ``denoise(images, ctf=None) -> images``. Images are ``(N, L, L)`` real tensors;
``ctf`` is ``(N, L, L)`` on the centred Fourier grid of :func:`cryodiff.ctf.ctf_2d`. The
output has the input's shape, dtype and device. Each baseline states in ``target`` what it
estimates: ``"clean_ctf"`` (the CTF-modulated projection, the pure-denoising target) or
``"clean"`` (the CTF-corrected projection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from cryodiff.errors import CryodiffError

TARGETS = ("clean_ctf", "clean")


@dataclass(frozen=True)
class DenoisingData:
    """Images a baseline is fitted on (a training or validation split).

    ``noisy``: observed images ``(N, L, L)``. ``clean_ctf``/``clean``: noise-free targets
    with/without the CTF (either may be absent). ``ctf``: ``(N, L, L)`` centred CTF or None
    (no CTF). ``noisy_pair``: a second, independent noisy image of each projection (for
    Noise2Noise). ``pixel_size_A``: pixel size in Å.
    """

    noisy: torch.Tensor
    clean_ctf: torch.Tensor | None = None
    clean: torch.Tensor | None = None
    ctf: torch.Tensor | None = None
    noisy_pair: torch.Tensor | None = None
    pixel_size_A: float = 1.0

    def target(self, name: str) -> torch.Tensor:
        """The clean images called ``name`` ("clean_ctf" or "clean"); error if absent."""
        check_target(name)
        value = self.clean_ctf if name == "clean_ctf" else self.clean
        if value is None:
            raise CryodiffError(f"this baseline needs the {name} images of its fitting split")
        return value


class Baseline(Protocol):
    """What the benchmark calls: ``fit`` once on a split, then ``denoise`` test batches."""

    name: str
    target: str

    def fit(self, data: DenoisingData) -> Baseline: ...

    def denoise(self, images: torch.Tensor, ctf: torch.Tensor | None = None) -> torch.Tensor: ...


def check_target(name: str) -> str:
    """Return ``name`` if it is a known target, else raise CryodiffError."""
    if name not in TARGETS:
        raise CryodiffError(f"unknown denoising target {name!r}; expected one of {TARGETS}")
    return name


def check_images(images: torch.Tensor, ctf: torch.Tensor | None = None) -> None:
    """Raise CryodiffError unless ``images`` is ``(N, L, L)`` real and ``ctf`` matches it."""
    if images.ndim != 3 or images.shape[-1] != images.shape[-2]:
        raise CryodiffError(f"expected images of shape (N, L, L), got {tuple(images.shape)}")
    if images.is_complex() or not images.is_floating_point():
        raise CryodiffError(f"expected real floating-point images, got {images.dtype}")
    if ctf is not None and ctf.shape != images.shape:
        raise CryodiffError(
            f"CTF shape {tuple(ctf.shape)} does not match images {tuple(images.shape)}")
