"""Figure of a noise estimate: the radial noise power spectrum of real particles."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from cryodiff.noise_estimate import NoiseEstimate


def plot_noise_spectrum(estimate: NoiseEstimate, title: str | None = None) -> Figure:
    """The noise power spectrum (log scale) against spatial frequency (1/Å), with the SNR.

    The dotted line is the noise variance per pixel: the level of white noise of the same
    variance.
    """
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    frequency, spectrum = estimate.frequency_per_A, estimate.noise_spectrum
    axis.semilogy(frequency, spectrum, label=f"noise ({estimate.method})")
    axis.axhline(estimate.pixel_variance, linestyle=":", color="grey",
                 label="white noise, same variance")
    axis.set_xlabel("spatial frequency (1/Å)")
    axis.set_ylabel("noise power (per-pixel variance density)")
    axis.set_xlim(0, frequency[-1])
    axis.set_title(title or f"SNR {estimate.snr:.3g} ({estimate.n_particles} particles, "
                   f"{estimate.box} px at {estimate.pixel_size_A:.3g} Å)", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
