"""Argument types for the command line: each checks one kind of value as argparse reads it.

A bad value stops the command before any work, with argparse's usage line and one error line
(``cryodiff simulate: error: argument --snr: must be > 0, got -1``) and exit status 2. The
floats refuse NaN and infinity (Python's ``float`` accepts both).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

# The figure formats matplotlib writes (its ``get_supported_filetypes``); listed here so that
# parsing arguments does not import matplotlib (tests/test_hostile_arguments.py compares).
PLOT_FORMATS = ("eps", "jpeg", "jpg", "pdf", "pgf", "png", "ps", "raw", "rgba", "svg", "svgz",
                "tif", "tiff", "webp")


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        name = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {name}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer ≥ 1 (counts: steps, particles, batch sizes)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer ≥ 0 (seeds)."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def finite_float(text: str) -> float:
    """Any finite number."""
    return _number(text, float)


def positive_float(text: str) -> float:
    """A finite number > 0 (pixel sizes, SNRs, radii)."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number ≥ 0 (regularisation constants; 0 meaning 'none')."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text}")
    return value


def plot_path(text: str) -> Path:
    """A figure path whose suffix is a format matplotlib writes (``.png``, ``.pdf``, …)."""
    path = Path(text)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise argparse.ArgumentTypeError(
            f"unknown figure format {path.suffix or '(no suffix)'!r} in {text!r}; use one of "
            + ", ".join("." + f for f in PLOT_FORMATS))
    return path


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, present on this machine."""
    if text in ("auto", "cpu"):
        return text
    import torch

    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r} (use auto, cpu, cuda, cuda:N or mps)")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r} requested but CUDA is not available "
                                             "on this machine (use cpu or auto)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r} requested but this machine has "
                                             f"{count} CUDA device(s)")
    if parsed.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"{text!r} requested but MPS is not available")
    return text
