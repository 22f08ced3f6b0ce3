"""A slider over the slices of several maps shown side by side (ipywidgets)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch

from cryodiff.plots.maps import map_view
from cryodiff.widgets.viewer import SliderViewer


def slice_figure(maps: Mapping[str, torch.Tensor], index: int, axis: int = 0) -> plt.Figure:
    """Slice ``index`` along ``axis`` of each map, side by side.

    Each map keeps one grey scale for all its slices (its own minimum and maximum over the
    whole volume), so a nearly empty edge slice looks empty instead of being stretched into
    apparent structure.
    """
    names = list(maps)
    figure, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names), 2.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        volume = maps[name].detach().cpu().float()
        ax.imshow(map_view(volume, axis, "slice", index), cmap="gray", origin="lower",
                  vmin=float(volume.min()), vmax=float(volume.max()))
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    figure.suptitle(f"slice {index} of {maps[names[0]].shape[axis]} along axis "
                    f"{'zyx'[axis]}", fontsize=9)
    return figure


def slice_viewer(maps: Mapping[str, torch.Tensor], axis: int = 0) -> SliderViewer:
    """A slider over slice index along ``axis`` (0 = z, 1 = y, 2 = x) and the maps' slices at
    that index, redrawn on change; starts at the central slice. All maps must share the box
    size."""
    import ipywidgets as widgets

    names = list(maps)
    sizes = {maps[name].shape[axis] for name in names}
    if len(sizes) != 1:
        raise ValueError(f"maps have different sizes along axis {axis}: {sorted(sizes)}")
    size = sizes.pop()
    slider = widgets.IntSlider(value=size // 2, min=0, max=size - 1, description="slice",
                               continuous_update=False)
    return SliderViewer(slider, lambda index: slice_figure(maps, index, axis),
                        f"slice viewer over {size} slices of {len(names)} maps")
