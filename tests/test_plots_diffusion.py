"""The diffusion figures draw from real schedules and trajectories without error."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cryodiff.diffusion import cosine_schedule, linear_schedule, respace  # noqa: E402
from cryodiff.plots.diffusion import (plot_forward_process, plot_psnr_vs_steps,  # noqa: E402
                                      plot_reverse_process, plot_schedules)
from cryodiff.sampling import sample_progressive  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_forward_and_schedule_plots():
    image = torch.randn(17, 17)
    fig = plot_forward_process(image, linear_schedule(), generator=torch.Generator().manual_seed(0))
    assert len(fig.axes) == 6
    fig = plot_schedules({"linear": linear_schedule(), "cosine": cosine_schedule(1000),
                          "linear, 50 steps": respace(linear_schedule(), 50)})
    assert len(fig.axes[0].lines) == 3


def test_reverse_and_psnr_plots():
    cond = torch.zeros(2, 1, 12, 12)
    frames = list(sample_progressive(lambda y, c, s: 0.5 * y, cond, respace(linear_schedule(), 10)))
    fig = plot_reverse_process(frames, n_columns=4, index=1)
    assert len(fig.axes) == 8
    fig = plot_psnr_vs_steps([1, 10, 100], [10.0, 12.0, 13.0], [12.5, 13.0, 13.2], psnr_noisy=5.0)
    assert len(fig.axes[0].lines) == 3
