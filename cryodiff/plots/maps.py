"""Map figures: central slices or projections of several maps side by side (truth first)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

_AXIS_NAMES = {0: "xy (along z)", 1: "xz (along y)", 2: "yz (along x)"}


def map_view(volume: torch.Tensor, axis: int = 0, kind: str = "slice",
             index: int | None = None) -> np.ndarray:
    """A 2D view ``(L, L)`` of ``volume`` ``(L, L, L)`` (indexed z, y, x) across ``axis``.

    ``kind="slice"``: the plane ``index`` (default the central one, ``L // 2``);
    ``kind="projection"``: the sum along ``axis``.
    """
    volume = volume.detach().cpu().float()
    if kind == "projection":
        return volume.sum(dim=axis).numpy()
    if kind != "slice":
        raise ValueError(f"kind must be 'slice' or 'projection', got {kind!r}")
    index = volume.shape[axis] // 2 if index is None else index
    return volume.select(axis, index).numpy()


def plot_maps(maps: Mapping[str, torch.Tensor], kind: str = "slice",
              axes: tuple[int, ...] = (0, 1, 2)) -> Figure:
    """One row per view axis, one column per map (e.g. truth, clean, noisy, denoised).

    Each map is shown with its own grey scale (min–max), so maps of different intensity
    scale remain comparable by structure.
    """
    names = list(maps)
    fig, grid = plt.subplots(len(axes), len(names), figsize=(2.2 * len(names), 2.3 * len(axes)),
                             squeeze=False)
    for column, name in enumerate(names):
        for row, axis in enumerate(axes):
            ax = grid[row, column]
            ax.imshow(map_view(maps[name], axis, kind), cmap="gray", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if column == 0:
                ax.set_ylabel(_AXIS_NAMES[axis], fontsize=8)
    fig.suptitle("central slices" if kind == "slice" else "projections")
    fig.tight_layout()
    return fig
