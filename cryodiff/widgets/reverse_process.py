"""Reverse-process viewer: a slider over the sampling steps of one particle's trajectory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch


def reverse_process_viewer(frames: Sequence[Mapping[str, Any]],
                           noisy: torch.Tensor | None = None,
                           clean: torch.Tensor | None = None):
    """An ipywidgets slider over the steps of a trajectory (from
    :func:`cryodiff.training.evaluate.reverse_trajectory` or
    :func:`cryodiff.sampling.sample_progressive`), showing the state ``y_t`` and the
    prediction ``ŷ₀`` at that step, next to the ``noisy (L, L)`` input and the ``clean
    (L, L)`` target when given. Returns the widget."""
    import ipywidgets as widgets
    from IPython.display import display

    output = widgets.Output()
    fixed = {name: image for name, image in (("noisy input", noisy), ("clean target", clean))
             if image is not None}

    def show(step: int) -> None:
        frame = frames[step]
        panels = {"noisy input": fixed.get("noisy input"),
                  f"y_t (√γ̄ = {frame['sqrt_gamma']:.3f})": frame["y_t"],
                  "predicted ŷ₀": frame["y0"], "clean target": fixed.get("clean target")}
        panels = {name: image for name, image in panels.items() if image is not None}
        with output:
            output.clear_output(wait=True)
            figure, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels), 3.0))
            for axis, (name, image) in zip(axes, panels.items()):
                pixels = image.detach().cpu().reshape(image.shape[-2:]).numpy()
                axis.imshow(pixels, cmap="gray")
                axis.set_title(name, fontsize=9)
                axis.set_axis_off()
            figure.suptitle(f"step {frame['step'] + 1} of {len(frames)} "
                            f"(timestep {frame['timestep']} of the training schedule)",
                            fontsize=9)
            display(figure)
        plt.close(figure)  # displayed once; pyplot must not show it again at the cell's end

    slider = widgets.IntSlider(value=len(frames) - 1, min=0, max=len(frames) - 1,
                               description="step")
    slider.observe(lambda change: show(change["new"]), names="value")
    show(slider.value)
    return widgets.VBox([slider, output])
