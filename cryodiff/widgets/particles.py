"""Particle browser: noisy / CTF-modulated / clean images side by side, a slider over index."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch

from cryodiff.widgets.viewer import SliderViewer


def particle_figure(stacks: Mapping[str, torch.Tensor], index: int,
                    title: str | None = None) -> plt.Figure:
    """Image ``index`` of each stack ``(N, L, L)`` side by side, each with its own grey scale."""
    figure, axes = plt.subplots(1, len(stacks), figsize=(3.2 * len(stacks), 3.3), squeeze=False)
    for axis, (name, images) in zip(axes[0], stacks.items()):
        axis.imshow(images[index].detach().cpu().numpy(), cmap="gray", origin="lower")
        axis.set_title(name)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"particle {index}" + (f": {title}" if title else ""), fontsize=9)
    return figure


def particle_browser(stacks: Mapping[str, torch.Tensor],
                     titles: list[str] | None = None) -> SliderViewer:
    """A slider over particle index showing one image of each stack side by side.

    ``stacks`` maps a name to images ``(N, L, L)`` (e.g. ``{"noisy": …, "clean_ctf": …,
    "clean": …}``); ``titles[i]`` (optional) describes particle i. Returns the viewer (a
    :class:`~cryodiff.widgets.viewer.SliderViewer`, with a static picture of particle 0).
    """
    import ipywidgets as widgets

    n = min(len(images) for images in stacks.values())
    slider = widgets.IntSlider(value=0, min=0, max=n - 1, description="particle")
    return SliderViewer(
        slider, lambda index: particle_figure(stacks, index, titles[index] if titles else None),
        f"particle browser over {n} particles")
