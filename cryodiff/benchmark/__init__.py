"""The reproduction table (issue 5): cryodiff against every baseline, in 2D and in 3D.

``run_benchmark(get_preset("ci"), out_dir)`` simulates each condition (map × SNR), runs
every method, scores it and writes ``results.json``, ``results.md`` and the figures.
"""

from cryodiff.benchmark.config import PRESETS, BenchmarkConfig, get_preset
from cryodiff.benchmark.run import run_benchmark

__all__ = ["PRESETS", "BenchmarkConfig", "get_preset", "run_benchmark"]
