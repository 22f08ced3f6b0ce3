"""The reverse-process viewer: a slider over the steps of a trajectory."""

from __future__ import annotations

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
pytest.importorskip("ipywidgets")

from cryodiff.widgets.reverse_process import reverse_process_viewer  # noqa: E402


def test_slider_spans_the_trajectory_and_redraws():
    frames = [{"step": i, "timestep": 100 - 10 * i, "sqrt_gamma": 0.1 * i,
               "y_t": torch.randn(9, 9), "y0": torch.randn(9, 9)} for i in range(5)]
    viewer = reverse_process_viewer(frames, noisy=torch.randn(9, 9), clean=torch.randn(9, 9))
    slider, output = viewer.children
    assert (slider.min, slider.max, slider.value) == (0, 4, 4)
    slider.value = 1  # redraws without error
    assert slider.value == 1
