"""Particle browser: noisy / CTF-modulated / clean images side by side, a slider over index."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch


def particle_browser(stacks: Mapping[str, torch.Tensor], titles: list[str] | None = None):
    """An ipywidgets slider over particle index showing one image of each stack side by side.

    ``stacks`` maps a name to images ``(N, L, L)`` (e.g. ``{"noisy": …, "clean_ctf": …,
    "clean": …}``); ``titles[i]`` (optional) describes particle i. Returns the widget.
    """
    import ipywidgets as widgets

    n = min(len(images) for images in stacks.values())
    output = widgets.Output()

    def show(index: int) -> None:
        with output:
            output.clear_output(wait=True)
            figure, axes = plt.subplots(1, len(stacks), figsize=(3.2 * len(stacks), 3.3))
            for axis, (name, images) in zip(axes, stacks.items()):
                axis.imshow(images[index].detach().cpu(), cmap="gray", origin="lower")
                axis.set_title(name)
                axis.set_xticks([])
                axis.set_yticks([])
            if titles is not None:
                figure.suptitle(titles[index], fontsize=9)
            plt.show(figure)

    slider = widgets.IntSlider(value=0, min=0, max=n - 1, description="particle")
    slider.observe(lambda change: show(change["new"]), names="value")
    show(0)
    return widgets.VBox([slider, output])
