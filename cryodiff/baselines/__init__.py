"""Baseline denoisers the method is compared against."""
