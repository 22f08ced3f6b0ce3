"""The issue's end-to-end check: the `ci` preset, trained on particles simulated from the
phantom, clearly denoises held-out particles.

Measured (seed 0, SNR 0.1, 64 held-out particles, 10 DDIM steps, one sample per particle):
noisy 5.6 dB → 12.3 dB (+6.7 dB); the threshold leaves room for other platforms and thread
counts. SSIM is not asserted: a single posterior *sample* carries plausible but invented
fine detail, and its SSIM (0.05) is no better than the noisy input's (0.06); the
post-processor (not trained here) lifts it to 0.35 (notebook 02).
"""

from __future__ import annotations

import pytest

from cryodiff.denoise import denoise_with, load_denoiser
from cryodiff.metrics import psnr
from cryodiff.training.config import PRESETS, with_overrides
from cryodiff.training.data import SimulatedData
from cryodiff.training.loop import train

MIN_GAIN_DB = 3.0


@pytest.mark.slow
def test_ci_preset_improves_psnr_on_held_out_particles(tmp_path):
    config = with_overrides(PRESETS["ci"], device="cpu")
    data = SimulatedData("phantom", config)
    result = train(config, tmp_path / "run", data, progress=False)
    assert result.metrics[-1]["loss"] < 0.5 * result.metrics[0]["loss"]

    denoiser = load_denoiser(tmp_path / "run")
    noisy, clean = data.val_condition, data.val_target  # simulated from seeds training never used
    denoised = denoise_with(denoiser, noisy, steps=10, sampler="ddim").mean
    before, after = float(psnr(noisy, clean).mean()), float(psnr(denoised, clean).mean())
    assert after > before + MIN_GAIN_DB, f"PSNR {before:.2f} dB -> {after:.2f} dB"
    # The run's own validation (EMA model, same particles and sampler) logged the gain too.
    assert result.metrics[-1]["val_psnr"] > result.metrics[-1]["val_input_psnr"] + MIN_GAIN_DB
