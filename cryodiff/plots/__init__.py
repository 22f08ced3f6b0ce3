"""Figures for the notebooks and benchmarks, one module per topic."""
