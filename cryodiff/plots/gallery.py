"""Benchmark figures: particle gallery (paper Fig. 3), map slices (Fig. 4), FSC panels
(Fig. 5) and PSNR against sampling steps. Each function returns a matplotlib ``Figure``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from cryodiff.fsc import FscResult
from cryodiff.io.atomic import atomic_path
from cryodiff.plots.fsc import plot_fsc
from cryodiff.plots.maps import map_view


def _image(ax, image: torch.Tensor) -> None:
    ax.imshow(image.detach().cpu().float().numpy(), cmap="gray", origin="lower")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_gallery(columns: Mapping[str, torch.Tensor], n_rows: int = 4,
                 row_labels: Sequence[str] | None = None) -> Figure:
    """Rows: particles; columns: ``{title: images (N, L, L)}`` (noisy, methods…, truth).

    Every image has its own grey scale (min–max): denoisers differ in contrast, and the
    figure compares structure. ``row_labels`` names the rows (default ``#i``).
    """
    titles = list(columns)
    n_rows = min(n_rows, *(len(images) for images in columns.values()))
    fig, grid = plt.subplots(n_rows, len(titles), squeeze=False,
                             figsize=(1.25 * len(titles), 1.3 * n_rows + 0.4))
    for c, title in enumerate(titles):
        for r in range(n_rows):
            _image(grid[r, c], columns[title][r])
        grid[0, c].set_title(title, fontsize=7)
    for r in range(n_rows):
        grid[r, 0].set_ylabel(row_labels[r] if row_labels else f"#{r}", fontsize=7)
    fig.tight_layout(pad=0.3)
    return fig


def plot_map_slices(rows: Mapping[str, Mapping[str, torch.Tensor]], axis: int = 0,
                    kind: str = "slice") -> Figure:
    """One row per condition, one column per map (``{row: {column: volume (L, L, L)}}``):
    the central slice (or projection) across ``axis`` of each map, each in its own scale."""
    columns = list(dict.fromkeys(name for maps in rows.values() for name in maps))
    fig, grid = plt.subplots(len(rows), len(columns), squeeze=False,
                             figsize=(1.4 * len(columns), 1.5 * len(rows) + 0.4))
    for r, (label, maps) in enumerate(rows.items()):
        for c, name in enumerate(columns):
            ax = grid[r, c]
            if name in maps:
                ax.imshow(map_view(maps[name], axis, kind), cmap="gray", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=7)
        grid[r, 0].set_ylabel(label, fontsize=7)
    fig.tight_layout(pad=0.3)
    return fig


def plot_fsc_panels(panels: Mapping[str, Mapping[str, FscResult]],
                    threshold: float = 0.143) -> Figure:
    """One FSC plot per condition (``{title: {method: FscResult}}``), all methods on each,
    the legend giving each curve's resolution at ``threshold`` (0.5 against a true map)."""
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(6 * len(panels), 4.5))
    for ax, (title, curves) in zip(axes[0], panels.items()):
        plot_fsc(curves, threshold=threshold, title=title, ax=ax)
    return fig


def plot_psnr_vs_steps(curves: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """PSNR (dB) against sampling steps per condition: ``{label: {"steps": […], "plain": […],
    "postprocessed": […] (optional), "postprocessed_mse": [(steps, PSNR), …] (optional: the
    L2/EMA post-processor's points), "noisy": float (optional)}}``."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, (label, curve) in enumerate(curves.items()):
        color = f"C{i}"
        ax.plot(curve["steps"], curve["plain"], "o-", color=color, label=f"{label}: SR3")
        if curve.get("postprocessed"):
            ax.plot(curve["steps"], curve["postprocessed"], "s--", color=color,
                    label=f"{label}: SR3 + post-processor")
        if curve.get("postprocessed_mse"):
            steps, values = zip(*curve["postprocessed_mse"])
            ax.plot(steps, values, "^-.", color=color,
                    label=f"{label}: SR3 + L2/EMA post-processor")
        if curve.get("noisy") is not None:
            ax.axhline(curve["noisy"], color=color, linestyle=":", linewidth=1,
                       label=f"{label}: noisy input")
    ax.set_xscale("log")
    ax.set(xlabel="sampling steps", ylabel="PSNR (dB)",
           title="PSNR vs sampling steps (held-out particles)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 130) -> None:
    """Write ``fig`` to ``path`` atomically and close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
