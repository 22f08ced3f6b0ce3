"""Figures for training runs: the loss curve, redrawn live while :func:`train` runs.

:class:`LiveLossPlot` is a callback for ``train(..., on_log=…)`` and
``train_postprocessor(..., on_log=…)``. Inside a notebook it keeps one display slot and
replaces its PNG when it redraws (IPython's ``display_id`` mechanism), so it works the same in
Jupyter and headless under papermill; outside IPython it only collects the rows.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure


def plot_loss_curve(rows: Sequence[Mapping[str, Any]], title: str = "training loss",
                    total_steps: int | None = None) -> Figure:
    """Loss against step from metrics rows (``step``, ``loss``; optional ``sample_loss``,
    the post-processor's input error, and ``val_psnr``/``val_input_psnr`` in dB on a second
    axis). ``total_steps`` fixes the x range so a live curve does not rescale."""
    fig = Figure(figsize=(6.5, 3.2))
    ax = fig.add_subplot()
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["loss"] for r in rows], color="C0", label="loss")
    if rows and "sample_loss" in rows[0]:
        ax.plot(steps, [r["sample_loss"] for r in rows], color="C2", linestyle=":",
                label="loss of the sampler output (input)")
    ax.set(xlabel="step", ylabel="loss", title=title)
    if total_steps:
        ax.set_xlim(0, total_steps)
    handles, labels = ax.get_legend_handles_labels()
    validated = [r for r in rows if r.get("val_psnr") is not None]
    if validated:
        ax_psnr = ax.twinx()
        ax_psnr.plot([r["step"] for r in validated], [r["val_psnr"] for r in validated], "o-",
                     color="C1", label="validation PSNR (dB)")
        ax_psnr.plot([r["step"] for r in validated], [r["val_input_psnr"] for r in validated],
                     "--", color="gray", label="noisy input PSNR (dB)")
        ax_psnr.set_ylabel("PSNR (dB)")
        more = ax_psnr.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if rows:
        ax.legend(handles, labels, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


class LiveLossPlot:
    """Collects metrics rows and redraws the loss curve in the notebook as they arrive.

    Redraws at most every ``min_interval_s`` seconds (rendering a PNG costs more than a
    training step of the ``ci`` preset) and always at ``total_steps``; call :meth:`finish` to
    draw the last rows of a run that stopped early. ``rows`` holds everything received.
    """

    def __init__(self, title: str = "training loss", total_steps: int | None = None,
                 min_interval_s: float = 3.0):
        self.title = title
        self.total_steps = total_steps
        self.min_interval_s = min_interval_s
        self.rows: list[dict[str, Any]] = []
        self._handle = None
        self._last_draw = float("-inf")
        self._drawn = 0

    def __call__(self, row: Mapping[str, Any]) -> None:
        self.rows.append(dict(row))
        final = self.total_steps is not None and row.get("step") == self.total_steps
        if final or time.monotonic() - self._last_draw >= self.min_interval_s:
            self.draw()

    def figure(self) -> Figure:
        return plot_loss_curve(self.rows, self.title, self.total_steps)

    def draw(self) -> None:
        """Render the current curve into the notebook's display slot (no-op outside IPython)."""
        self._last_draw = time.monotonic()
        self._drawn = len(self.rows)
        try:
            from IPython import get_ipython
            from IPython.display import Image, display
        except ImportError:
            return
        if get_ipython() is None:
            return
        image = Image(data=_png(self.figure()), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)

    def finish(self) -> None:
        """Draw any rows received since the last redraw."""
        if self._drawn != len(self.rows):
            self.draw()
