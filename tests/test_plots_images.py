"""Figures of maps and images: every title renders in the default font, tick labels do not
overlap."""

from __future__ import annotations

import warnings

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from cryodiff.plots.images import plot_power_spectra, show_volume  # noqa: E402


def test_volume_titles_have_no_missing_glyphs():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = show_volume(torch.rand(16, 16, 16), 2.0, "a map")  # lays out the titles
        figure.canvas.draw()
    assert not [str(w.message) for w in caught if "Glyph" in str(w.message)]


@pytest.mark.parametrize("box", [32, 64, 128])
def test_power_spectrum_tick_labels_do_not_overlap(box):
    spectra = {"white": torch.ones(box // 2 + 1), "red": 1 / (1 + torch.arange(box // 2 + 1.0))}
    figure = plot_power_spectra(spectra, box, 192 / box)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    axis = figure.axes[0]
    low, high = axis.get_xlim()
    labels = [label for label in axis.get_xticklabels(minor=False) + axis.get_xticklabels(minor=True)
              if label.get_text() and low <= label.get_position()[0] <= high]
    assert len(labels) >= 2
    boxes = sorted((label.get_window_extent(renderer) for label in labels), key=lambda b: b.x0)
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 <= right.x0, "tick labels overlap"
