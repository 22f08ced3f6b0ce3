"""The slider viewers carry a static picture, so saved notebooks and the site show an image."""

from __future__ import annotations

import base64

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
pytest.importorskip("ipywidgets")

from cryodiff.widgets.particles import particle_browser  # noqa: E402
from cryodiff.widgets.slices import slice_figure, slice_viewer  # noqa: E402
from cryodiff.widgets.viewer import WIDGET_VIEW_MIMETYPE  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_bundle_holds_the_live_view_a_png_and_no_widget_repr():
    viewer = particle_browser({"noisy": torch.randn(4, 8, 8), "clean": torch.randn(4, 8, 8)})
    bundle = viewer._repr_mimebundle_()
    assert WIDGET_VIEW_MIMETYPE in bundle
    assert base64.b64decode(bundle["image/png"]).startswith(PNG_MAGIC)
    assert "VBox" not in bundle["text/plain"] and "IntSlider" not in bundle["text/plain"]


def test_particle_browser_redraws_on_slider_change():
    stacks = {"noisy": torch.randn(3, 8, 8), "clean": torch.randn(3, 8, 8)}
    viewer = particle_browser(stacks, titles=["a", "b", "c"])
    slider, picture = viewer.children
    assert (slider.min, slider.max, slider.value) == (0, 2, 0)
    first = picture.value
    slider.value = 2
    assert bytes(picture.value).startswith(PNG_MAGIC) and bytes(picture.value) != bytes(first)


@pytest.mark.parametrize("box", [8, 9])
def test_slice_viewer_starts_central_and_spans_the_box(box):
    viewer = slice_viewer({"a": torch.randn(box, box, box), "b": torch.randn(box, box, box)})
    slider, _ = viewer.children
    assert (slider.min, slider.max, slider.value) == (0, box - 1, box // 2)


def test_slice_viewer_rejects_maps_of_different_sizes():
    with pytest.raises(ValueError, match="different sizes"):
        slice_viewer({"a": torch.zeros(8, 8, 8), "b": torch.zeros(9, 9, 9)})


def test_slices_share_one_grey_scale_per_map():
    # An empty edge slice must not be stretched to full contrast: the colour limits are the
    # map's own minimum and maximum, the same for every slice.
    volume = torch.zeros(8, 8, 8)
    volume[3:5, 3:5, 3:5] = 1.0
    volume[0] = 1e-3 * torch.randn(8, 8)  # an almost empty edge slice
    edge = slice_figure({"map": volume}, 0)
    centre = slice_figure({"map": volume}, 4)
    for figure in (edge, centre):
        low, high = figure.axes[0].images[0].get_clim()
        assert (low, high) == pytest.approx((float(volume.min()), float(volume.max())))
    shown = np.asarray(edge.axes[0].images[0].get_array())
    assert np.abs(shown).max() < 0.01 * float(volume.max())
