"""Reverse-process viewer: a slider over the sampling steps of one particle's trajectory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch

from cryodiff.widgets.viewer import SliderViewer


def reverse_step_figure(frames: Sequence[Mapping[str, Any]], step: int,
                        noisy: torch.Tensor | None = None,
                        clean: torch.Tensor | None = None) -> plt.Figure:
    """Step ``step`` (1-based, as the slider and the title count) of a trajectory: the state
    ``y_t`` and the prediction ``ŷ₀``, beside the noisy input and clean target when given."""
    frame = frames[step - 1]
    panels = {"noisy input": noisy,
              f"y_t (√γ̄ = {frame['sqrt_gamma']:.3f})": frame["y_t"],
              "predicted ŷ₀": frame["y0"], "clean target": clean}
    panels = {name: image for name, image in panels.items() if image is not None}
    figure, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels), 3.0), squeeze=False)
    for axis, (name, image) in zip(axes[0], panels.items()):
        pixels = image.detach().cpu().reshape(image.shape[-2:]).numpy()
        axis.imshow(pixels, cmap="gray")
        axis.set_title(name, fontsize=9)
        axis.set_axis_off()
    figure.suptitle(f"step {frame['step'] + 1} of {len(frames)} "
                    f"(timestep {frame['timestep']} of the training schedule)", fontsize=9)
    return figure


def reverse_process_viewer(frames: Sequence[Mapping[str, Any]],
                           noisy: torch.Tensor | None = None,
                           clean: torch.Tensor | None = None) -> SliderViewer:
    """A slider over the steps of a trajectory (from
    :func:`cryodiff.training.evaluate.reverse_trajectory` or
    :func:`cryodiff.sampling.sample_progressive`), showing the state ``y_t`` and the
    prediction ``ŷ₀`` at that step, next to the ``noisy (L, L)`` input and the ``clean
    (L, L)`` target when given. The slider counts steps from 1 to ``len(frames)``, as the
    figure's title does, and starts at the last step. Returns the viewer."""
    import ipywidgets as widgets

    slider = widgets.IntSlider(value=len(frames), min=1, max=len(frames), description="step")
    return SliderViewer(slider, lambda step: reverse_step_figure(frames, step, noisy, clean),
                        f"reverse-process viewer over {len(frames)} sampling steps")
