"""The reverse-process viewer: a slider over the steps of a trajectory, counted from 1."""

from __future__ import annotations

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
pytest.importorskip("ipywidgets")

from cryodiff.widgets.reverse_process import reverse_process_viewer  # noqa: E402


def _frames(n: int = 5):
    return [{"step": i, "timestep": 100 - 10 * i, "sqrt_gamma": 0.1 * i,
             "y_t": torch.randn(9, 9), "y0": torch.randn(9, 9)} for i in range(n)]


def test_slider_counts_steps_like_the_title_and_redraws():
    viewer = reverse_process_viewer(_frames(), noisy=torch.randn(9, 9), clean=torch.randn(9, 9))
    slider, picture = viewer.children
    # the title of the last frame says "step 5 of 5": the slider must say 5 too
    assert (slider.min, slider.max, slider.value) == (1, 5, 5)
    before = bytes(picture.value)
    slider.value = 1
    assert bytes(picture.value) != before  # the picture was redrawn for step 1
    assert viewer.static_png == before  # the static copy stays the initial view


def test_first_step_shows_the_first_frame():
    from cryodiff.widgets.reverse_process import reverse_step_figure

    frames = _frames(3)
    figure = reverse_step_figure(frames, 1)
    assert figure._suptitle.get_text().startswith("step 1 of 3")
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["y_t (√γ̄ = 0.000)", "predicted ŷ₀"]
