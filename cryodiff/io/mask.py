"""Reading a mask (or support) map: a real map of values in [0, 1] with the data's box."""

from __future__ import annotations

import os

import torch

from cryodiff.errors import CryodiffError
from cryodiff.io.mrc import read_map

# Interpolated or low-pass-filtered masks overshoot [0, 1] slightly; more is not a mask.
_TOLERANCE = 0.05


def read_mask(path: str | os.PathLike, box: int) -> torch.Tensor:
    """The mask at ``path`` as a float32 ``(box, box, box)`` tensor clipped to [0, 1].

    Raises :class:`CryodiffError` if the file is not a cubic map of side ``box``, has values
    outside [0, 1] beyond a 0.05 tolerance, or is zero everywhere.
    """
    mask, _ = read_map(path)
    if mask.shape[-1] != box:
        raise CryodiffError(f"mask box {mask.shape[-1]} differs from the data's box {box}",
                            path=path)
    low, high = float(mask.min()), float(mask.max())
    if low < -_TOLERANCE or high > 1 + _TOLERANCE:
        raise CryodiffError(f"a mask holds values in [0, 1]; this map spans [{low:.3g}, "
                            f"{high:.3g}]", path=path)
    if high <= 0:
        raise CryodiffError("the mask is zero everywhere", path=path)
    return mask.clamp(0, 1)
