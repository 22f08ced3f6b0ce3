"""Argument types of the CLI: each refuses what it must, with a message naming the value."""

from __future__ import annotations

import argparse

import pytest

from cryodiff.cli import arguments


@pytest.mark.parametrize("function, good, bad", [
    (arguments.positive_int, [("1", 1), ("40", 40)], ["0", "-1", "1.5", "abc", "", "nan"]),
    (arguments.nonnegative_int, [("0", 0), ("7", 7)], ["-1", "x", "2.0"]),
    (arguments.positive_float, [("0.5", 0.5), ("1e3", 1000.0)],
     ["0", "-0", "-1e-9", "nan", "inf", "-inf", "1e309", "abc"]),
    (arguments.nonnegative_float, [("0", 0.0), ("2.5", 2.5)], ["-0.1", "nan", "inf"]),
    (arguments.finite_float, [("-3", -3.0)], ["nan", "-inf", "1e999"]),
])
def test_numeric_types(function, good, bad):
    for text, value in good:
        assert function(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="must be"):
            function(text)


def test_plot_formats_are_ones_matplotlib_writes():
    from matplotlib.figure import Figure

    supported = set(Figure().canvas.get_supported_filetypes())
    assert set(arguments.PLOT_FORMATS) <= supported
    assert arguments.plot_path("fsc.PDF").name == "fsc.PDF"
    for text in ("out.xyz", "noext", "a.png.bak"):
        with pytest.raises(argparse.ArgumentTypeError, match="unknown figure format"):
            arguments.plot_path(text)


def test_devices():
    import torch

    assert arguments.device("auto") == "auto" and arguments.device("cpu") == "cpu"
    for text in ("tpu", "gpu", "cuda:x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="unknown device"):
            arguments.device(text)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(argparse.ArgumentTypeError, match="CUDA"):
        arguments.device(f"cuda:{count}")
