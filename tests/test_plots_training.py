"""The live loss plot used as a `train(on_log=…)` callback."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from cryodiff.plots.training import LiveLossPlot, plot_loss_curve  # noqa: E402


def _rows(n: int) -> list[dict]:
    rows = [{"step": 10 * (i + 1), "loss": 1.0 / (i + 1)} for i in range(n)]
    rows[-1] |= {"val_psnr": 12.0, "val_input_psnr": 6.0}
    return rows


def test_loss_curve_draws_loss_and_validation_psnr():
    fig = plot_loss_curve(_rows(5), total_steps=100)
    loss_axis, psnr_axis = fig.axes
    assert list(loss_axis.lines[0].get_ydata()) == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert loss_axis.get_xlim() == (0, 100)
    assert list(psnr_axis.lines[0].get_ydata()) == [12.0]


def test_post_processor_rows_show_the_input_error():
    fig = plot_loss_curve([{"step": 10, "loss": 0.3, "sample_loss": 0.5},
                           {"step": 20, "loss": 0.2, "sample_loss": 0.5}])
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 2


def test_live_plot_collects_rows_outside_a_notebook():
    live = LiveLossPlot(total_steps=30, min_interval_s=1e9)
    for row in _rows(3):
        live(row)
    live.finish()
    assert [r["step"] for r in live.rows] == [10, 20, 30]
    assert live.figure().axes[0].lines[0].get_xdata().tolist() == [10, 20, 30]
