"""A slider over the slices of several maps shown side by side (ipywidgets)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from cryodiff.plots.maps import map_view


def slice_viewer(maps: Mapping[str, torch.Tensor], axis: int = 0):
    """An ipywidgets box: an ``IntSlider`` over slice index along ``axis`` and the maps'
    slices at that index, redrawn on change. All maps must share the box size."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    names = list(maps)
    sizes = {maps[name].shape[axis] for name in names}
    if len(sizes) != 1:
        raise ValueError(f"maps have different sizes along axis {axis}: {sorted(sizes)}")
    size = sizes.pop()
    slider = widgets.IntSlider(value=size // 2, min=0, max=size - 1, description="slice",
                               continuous_update=False)
    output = widgets.Output()

    def draw(index: int) -> None:
        with output:
            output.clear_output(wait=True)
            fig, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names), 2.4),
                                     squeeze=False)
            for ax, name in zip(axes[0], names):
                ax.imshow(map_view(maps[name], axis, "slice", index), cmap="gray",
                          origin="lower")
                ax.set_title(name, fontsize=9)
                ax.set_axis_off()
            plt.show()

    slider.observe(lambda change: draw(change["new"]), names="value")
    draw(slider.value)
    return widgets.VBox([slider, output])
