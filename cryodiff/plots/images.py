"""Figures of maps and particle images (rows of images side by side)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter


def show_volume(volume: torch.Tensor, pixel_size_A: float, title: str = "") -> plt.Figure:
    """Central slices and projections along z, y and x of a map ``(L, L, L)`` (z, y, x order)."""
    box = volume.shape[-1]
    figure, axes = plt.subplots(2, 3, figsize=(9, 6))
    extent = [-box // 2 * pixel_size_A, (box - box // 2) * pixel_size_A] * 2
    for column, (axis, label) in enumerate([(0, "z"), (1, "y"), (2, "x")]):
        slices = volume.select(axis, box // 2), volume.sum(dim=axis)
        # plain words: DejaVu Sans (matplotlib's default font) has no glyph for "⟂"
        kinds = (f"central slice, {label} = 0", f"projection along {label}")
        for row, (image, kind) in enumerate(zip(slices, kinds)):
            axes[row, column].imshow(image.cpu(), cmap="gray", origin="lower", extent=extent)
            axes[row, column].set_title(kind)
            axes[row, column].set_xlabel("Å")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def show_image_rows(rows: Mapping[str, torch.Tensor], n: int = 6,
                    titles: list[str] | None = None) -> plt.Figure:
    """One row per entry of ``rows`` (name → images ``(N, L, L)``), the first ``n`` columns.

    Each image is shown with its own grey scale (noisy and clean images differ in range).
    """
    n = min(n, *(len(images) for images in rows.values()))
    figure, axes = plt.subplots(len(rows), n, figsize=(1.8 * n, 1.9 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            axes[r, c].imshow(images[c].detach().cpu(), cmap="gray", origin="lower")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0 and titles is not None:
                axes[r, c].set_title(titles[c], fontsize=8)
        axes[r, 0].set_ylabel(name)
    figure.tight_layout()
    return figure


def plot_power_spectra(spectra: Mapping[str, torch.Tensor], box: int,
                       pixel_size_A: float) -> plt.Figure:
    """Radially averaged power spectra (from :func:`cryodiff.noise.radial_power_spectrum`), log-log.

    The frequency axis spans about one decade, where matplotlib would label every minor
    tick (``2×10⁻²``, ``3×10⁻²``, … overlapping); it is labelled at a few plain decimals.
    """
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, spectrum in spectra.items():
        frequency = torch.arange(len(spectrum)) / (box * pixel_size_A)
        axis.loglog(frequency[1:], spectrum[1:].cpu(), label=name)
    axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel("spatial frequency (1/Å)")
    axis.set_ylabel("power")
    axis.legend()
    figure.tight_layout()
    return figure
