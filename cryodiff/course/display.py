"""Rounding measured numbers for display in the notebooks (the JSON records keep them whole)."""

from __future__ import annotations

import math
from collections.abc import Mapping


def rounded(value, digits: int = 3):
    """``value`` with every float rounded to ``digits`` significant digits, recursively through
    dicts, lists and tuples; other values are returned unchanged. ``inf``/``nan`` stay."""
    if isinstance(value, bool) or isinstance(value, int):
        return value
    if isinstance(value, float):
        if value == 0 or not math.isfinite(value):
            return value
        return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))
    if isinstance(value, Mapping):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(rounded(item, digits) for item in value)
    return value
