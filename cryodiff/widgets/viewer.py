"""The slider viewer the notebooks' widgets share: a slider, a picture, and a static copy.

A live notebook shows the slider and redraws the picture when it moves. A saved notebook,
the rendered site and a notebook opened without its kernel cannot run the slider; there the
viewer's display bundle also carries a PNG of its initial picture (and a plain-text line
saying what it is), which is what they show instead of ``VBox(children=(IntSlider(…``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes; the figure is closed (pyplot must not show it again)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


class SliderViewer(widgets.VBox):
    """``VBox([slider, picture])``: ``draw(value)`` makes the figure for a slider value.

    ``static_png`` is the picture of the initial value; ``description`` names the viewer in
    the bundle's ``text/plain``. Its display bundle holds the live widget view, that PNG and
    that text: front ends that can run the widget show it, the others the picture.
    """

    def __init__(self, slider: widgets.IntSlider, draw: Callable[[int], Figure],
                 description: str):
        self._draw = draw
        self.description = description
        self.picture = widgets.Image(format="png", layout=widgets.Layout(width="auto"))
        self.static_png = self._render(slider.value)
        self.picture.value = self.static_png
        slider.observe(lambda change: self._show(change["new"]), names="value")
        super().__init__([slider, self.picture])

    def _render(self, value: int) -> bytes:
        return figure_png(self._draw(value))

    def _show(self, value: int) -> None:
        self.picture.value = self._render(value)

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["image/png"] = base64.b64encode(self.static_png).decode("ascii")
        bundle["text/plain"] = (f"[{self.description}: a static picture of the initial view; "
                                "run the notebook to move the slider]")
        return bundle
