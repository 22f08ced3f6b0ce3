"""FSC figures in the style of the paper's Figure 5: several curves, a dashed 0.143 line,
spatial frequency below and resolution in Å above."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cryodiff.fsc import FscResult
from cryodiff.io.atomic import atomic_path


def _inverse(x):
    """``1/x`` for the secondary axis (clipped so that frequency 0 maps to a finite value)."""
    return 1.0 / np.clip(np.asarray(x, dtype=float), 1e-6, None)


def plot_fsc(curves: Mapping[str, FscResult], threshold: float = 0.143,
             title: str | None = None, ax=None) -> Figure:
    """Plot ``{label: FscResult}`` on one axis; the legend gives each curve's resolution.

    The bottom axis is spatial frequency (1/Å), the top axis labels the same positions as
    resolution (Å); a dashed line marks ``threshold``. Draws into ``ax`` if given.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    for label, result in curves.items():
        resolution = (result.resolution_0143_A if threshold == 0.143
                      else result.resolution_05_A if threshold == 0.5 else None)
        text = f"{label} ({resolution:.1f} Å)" if resolution is not None else label
        ax.plot(result.frequency_A_inv, result.fsc, label=text)
    ax.axhline(threshold, color="k", linestyle="--", linewidth=1, label=f"FSC = {threshold:g}")
    ax.axhline(0, color="0.7", linewidth=0.5)
    top = max(float(result.frequency_A_inv[-1]) for result in curves.values()) if curves else 0.5
    ax.set_xlim(0, top)
    ax.set_ylim(min(-0.1, *(float(np.min(r.fsc)) for r in curves.values())), 1.05)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("Fourier shell correlation")
    secondary = ax.secondary_xaxis("top", functions=(_inverse, _inverse))
    ticks = ax.get_xticks()
    ticks = ticks[(ticks > 0) & (ticks <= top)]
    secondary.set_xticks(1.0 / ticks)
    secondary.set_xticklabels([f"{1.0 / t:.1f}" for t in ticks])
    secondary.set_xlabel("resolution (Å)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_halfmap_vs_truth(panels: Mapping[str, tuple[Mapping[str, FscResult],
                                                    Mapping[str, FscResult]]]) -> Figure:
    """The paper's Figure 5 measured two ways, one row per condition:
    ``{title: (half-map curves, curves against the truth)}``, each ``{method: FscResult}``.

    Left: the gold-standard half-map FSC (threshold 0.143), what a cryo-EM user reports.
    Right: the full map against the true map (threshold 0.5, its matching criterion).
    """
    fig, axes = plt.subplots(len(panels), 2, squeeze=False, figsize=(12, 4.5 * len(panels)))
    for row, (title, (halfmap, truth)) in zip(axes, panels.items()):
        plot_fsc(halfmap, threshold=0.143, title=f"{title}: half map vs half map", ax=row[0])
        plot_fsc(truth, threshold=0.5, title=f"{title}: full map vs true map", ax=row[1])
    fig.tight_layout()
    return fig


def save_fsc_plot(path: str | os.PathLike, curves: Mapping[str, FscResult], **kwargs) -> None:
    """Write :func:`plot_fsc` to ``path`` (format from the suffix), atomically."""
    fig = plot_fsc(curves, **kwargs)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=150)
    finally:
        plt.close(fig)
