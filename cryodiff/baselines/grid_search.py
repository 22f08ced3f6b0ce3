"""A geometric parameter grid that grows while its best value sits at an edge.

The classical baselines set one positive parameter (BM3D's noise scale, the low-pass width)
by the validation error on a grid. A fixed grid can put the optimum at its edge without
saying so; :func:`geometric_search` extends the grid past that edge, one ratio step at a
time, until the best value is interior or ``max_extensions`` steps were added, and reports
which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class GridSearch:
    """Values tried (ascending), their losses, the best value, how many values the grid
    gained past its first edges, and whether the best still sits at an edge."""

    values: tuple[float, ...]
    losses: tuple[float, ...]
    best: float
    n_extensions: int
    at_edge: bool


def geometric_search(loss: Callable[[float], float], low: float, high: float, n: int,
                     max_extensions: int = 8) -> GridSearch:
    """Minimise ``loss`` over ``n`` log-spaced values in ``[low, high]`` (``0 < low < high``,
    ``n >= 2``), extended by the grid ratio past whichever edge holds the best value, at most
    ``max_extensions`` times in all."""
    ratio = (high / low) ** (1 / (n - 1))
    values = [low * ratio**k for k in range(n)]
    losses = [loss(v) for v in values]
    extensions = 0
    while extensions < max_extensions:
        best = min(range(len(values)), key=losses.__getitem__)
        if best == len(values) - 1:
            values.append(values[-1] * ratio)
            losses.append(loss(values[-1]))
        elif best == 0:
            values.insert(0, values[0] / ratio)
            losses.insert(0, loss(values[0]))
        else:
            break
        extensions += 1
    best = min(range(len(values)), key=losses.__getitem__)
    return GridSearch(tuple(values), tuple(losses), values[best], extensions,
                      best in (0, len(values) - 1))
