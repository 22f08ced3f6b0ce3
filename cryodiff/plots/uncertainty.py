"""Reliability diagrams for per-pixel uncertainty (see :mod:`cryodiff.uncertainty`).

Two views of the same calibration: RMS error against RMS σ in bins of σ (on the diagonal:
the σ the model reports is the error it makes), and the empirical against the nominal
coverage of Gaussian central intervals (on the diagonal: ±zσ holds the fraction of pixels a
Gaussian would). Both take several labelled series, e.g. the raw σ and the recalibrated s·σ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cryodiff.uncertainty import ReliabilityCurve

Coverage = tuple[torch.Tensor, torch.Tensor]  # (nominal, empirical), as coverage_curve returns


def draw_reliability(ax: Axes, curves: Mapping[str, ReliabilityCurve],
                     title: str = "") -> Axes:
    """RMS error against RMS σ per bin, one line per series, with the ideal diagonal."""
    top = 0.0
    for index, (label, curve) in enumerate(curves.items()):
        ax.plot(curve.rms_sigma.numpy(), curve.rms_error.numpy(), "o-", color=f"C{index}",
                markersize=3, label=f"{label} (ENCE {curve.ence:.2f})")
        top = max(top, float(curve.rms_sigma.max()), float(curve.rms_error.max()))
    ax.plot([0, top * 1.05], [0, top * 1.05], "--", color="gray", linewidth=1, label="ideal")
    ax.set(xlabel="RMS σ in bin", ylabel="RMS error in bin", title=title,
           xlim=(0, top * 1.05), ylim=(0, top * 1.05))
    ax.legend(fontsize=7, loc="upper left")
    return ax


def draw_coverage(ax: Axes, coverages: Mapping[str, Coverage], title: str = "") -> Axes:
    """Empirical against nominal coverage of the ±zσ intervals, with the ideal diagonal."""
    for index, (label, (nominal, empirical)) in enumerate(coverages.items()):
        ax.plot(nominal.numpy(), empirical.numpy(), "o-", color=f"C{index}", markersize=3,
                label=label)
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="ideal")
    ax.set(xlabel="nominal coverage", ylabel="fraction of pixels inside",
           title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")
    return ax


def plot_reliability_diagram(series: Mapping[str, tuple[ReliabilityCurve, Coverage]],
                             title: str = "calibration of the posterior std") -> Figure:
    """One condition: the binned reliability curve and the coverage curve side by side.
    ``series`` maps a label to ``(reliability_curve(...), coverage_curve(...))``."""
    fig = Figure(figsize=(8.5, 3.6))
    left, right = fig.subplots(1, 2)
    draw_reliability(left, {k: v[0] for k, v in series.items()}, "RMS error vs σ")
    draw_coverage(right, {k: v[1] for k, v in series.items()}, "coverage")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_reliability_grid(panels: Mapping[str, Mapping[str, tuple[ReliabilityCurve, Coverage]]],
                          columns: int = 3) -> Figure:
    """Reliability curves of several conditions, one panel each (titled by the key), the
    coverage curves in a second row block below them."""
    n = len(panels)
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(3.6 * columns, 3.3 * 2 * rows))
    axes = fig.subplots(2 * rows, columns, squeeze=False)
    for index, (title, series) in enumerate(panels.items()):
        row, column = divmod(index, columns)
        draw_reliability(axes[row][column], {k: v[0] for k, v in series.items()}, title)
        draw_coverage(axes[rows + row][column], {k: v[1] for k, v in series.items()}, title)
    for index in range(n, rows * columns):
        row, column = divmod(index, columns)
        axes[row][column].set_visible(False)
        axes[rows + row][column].set_visible(False)
    fig.tight_layout()
    return fig
