"""Baseline denoisers the method is compared against (issue 5, "Methods compared").

Every baseline follows :class:`cryodiff.baselines.base.Baseline`: ``fit(DenoisingData)``
then ``denoise(images (N, L, L), ctf (N, L, L) | None) -> (N, L, L)``. Modules are imported
only when a baseline is made, so optional peers (bm3d, topaz-em, aspire) are needed only by
the baselines that use them; a missing one raises :class:`cryodiff.errors.CryodiffError`
with the install command, which the benchmark reports as "skipped".
"""

from __future__ import annotations

import importlib

from cryodiff.errors import CryodiffError

# name -> (module, class); the order is the order of the results table.
BASELINES: dict[str, tuple[str, str]] = {
    "lowpass": ("cryodiff.baselines.lowpass", "GaussianLowpass"),
    "wiener": ("cryodiff.baselines.wiener", "WienerFilter"),
    "bm3d": ("cryodiff.baselines.bm3d_filter", "BM3DDenoiser"),
    "topaz": ("cryodiff.baselines.topaz", "TopazDenoiser"),
    "noise2noise": ("cryodiff.baselines.noise2noise", "Noise2NoiseDenoiser"),
    "supervised": ("cryodiff.baselines.supervised", "SupervisedUNet"),
    "supervised-l1": ("cryodiff.baselines.supervised", "SupervisedUNetL1"),
    "supervised-large": ("cryodiff.baselines.supervised", "SupervisedUNetLarge"),
    # The supervised U-Net trained for as many optimiser steps as SR3 and a post-processor
    # together (the benchmark doubles its recipe's steps).
    "supervised-2x": ("cryodiff.baselines.supervised", "SupervisedUNetLong"),
    # SR3's network shape at that budget (SR3 + fine-tuning its x̂₀, sr3-x0ft).
    "supervised-large-2x": ("cryodiff.baselines.supervised", "SupervisedUNetLargeLong"),
    # Those two, trained on for the SSIM stage that sr3-x0ft-ssim adds to SR3's fine-tuned
    # readout (the benchmark runs :meth:`~cryodiff.baselines.regression.UNetRegressor.
    # ssim_stage` on the trained network).
    "supervised-2x-ssim": ("cryodiff.baselines.supervised", "SupervisedUNetLong"),
    "supervised-large-2x-ssim": ("cryodiff.baselines.supervised", "SupervisedUNetLargeLong"),
    # The SR3-sized one with a direct output (no input skip), as SR3's one-pass x̂₀ has.
    "supervised-large-direct-2x": ("cryodiff.baselines.supervised",
                                   "SupervisedUNetLargeDirectLong"),
    "supervised-large-direct-2x-ssim": ("cryodiff.baselines.supervised",
                                        "SupervisedUNetLargeDirectLong"),
    "cwf": ("cryodiff.baselines.cwf", "CwfDenoiser"),
    # CWF fitted on the 2D test images alone (its covariance comes from the images it
    # denoises, so the row "cwf" depends on the size of the 3D test set).
    "cwf-2d": ("cryodiff.baselines.cwf", "CwfDenoiser"),
}


def make_baseline(name: str, **options):
    """Construct the baseline called ``name`` (a key of ``BASELINES``) with ``options``."""
    if name not in BASELINES:
        raise CryodiffError(f"unknown baseline {name!r}; expected one of {list(BASELINES)}")
    module, cls = BASELINES[name]
    return getattr(importlib.import_module(module), cls)(**options)
