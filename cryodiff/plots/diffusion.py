"""Figures for the diffusion notebook: forward process, schedules, reverse process, PSNR vs steps.

Every function returns a matplotlib ``Figure`` and computes nothing beyond what it draws
(the forward strip applies :func:`cryodiff.diffusion.q_sample`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from cryodiff.diffusion import NoiseSchedule, q_sample


def _show(ax, image: torch.Tensor | np.ndarray, title: str) -> None:
    image = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else image
    ax.imshow(np.squeeze(image), cmap="gray")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def plot_forward_process(image: torch.Tensor, schedule: NoiseSchedule,
                         timesteps: Sequence[int] | None = None,
                         generator: torch.Generator | None = None) -> Figure:
    """One clean image ``(L, L)`` diffused to several steps ``t`` (1-based; default 6 evenly
    spaced including 0 = clean), titled with ``t``, ``√γ̄`` and the SNR ``γ̄/(1−γ̄)`` in dB."""
    n = schedule.n_steps
    if timesteps is None:
        timesteps = np.linspace(0, n, 6).round().astype(int).tolist()
    image = image.reshape(1, *image.shape[-2:]).float()
    noise = torch.randn(image.shape, generator=generator)
    fig, axes = plt.subplots(1, len(timesteps), figsize=(2 * len(timesteps), 2.3), squeeze=False)
    for ax, t in zip(axes[0], timesteps):
        if t == 0:
            _show(ax, image[0], "t = 0 (clean)")
            continue
        sqrt_gamma = schedule.sqrt_gammas[t - 1].reshape(1)
        snr_db = 10 * torch.log10(schedule.snr()[t - 1]).item()
        _show(ax, q_sample(image, sqrt_gamma, noise)[0],
              f"t = {t}\n√γ̄ = {sqrt_gamma.item():.3f}, SNR {snr_db:.0f} dB")
    fig.suptitle("forward process q(y_t | y_0)")
    fig.tight_layout()
    return fig


def plot_schedules(schedules: Mapping[str, NoiseSchedule]) -> Figure:
    """``γ̄`` and SNR ``γ̄/(1−γ̄)`` (log scale) against the relative step ``t/T``."""
    fig, (ax_gamma, ax_snr) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, schedule in schedules.items():
        rel = schedule.timesteps.float().numpy() / schedule.timesteps.max().item()
        ax_gamma.plot(rel, schedule.gammas.numpy(), label=f"{name} (T={schedule.n_steps})")
        ax_snr.semilogy(rel, schedule.snr().numpy(), label=name)
    ax_gamma.set(xlabel="t / T", ylabel="γ̄_t", title="signal fraction γ̄")
    ax_snr.set(xlabel="t / T", ylabel="γ̄ / (1 − γ̄)", title="signal-to-noise ratio")
    ax_gamma.legend()
    fig.tight_layout()
    return fig


def plot_reverse_process(frames: Sequence[Mapping[str, Any]], n_columns: int = 6,
                         index: int = 0) -> Figure:
    """States ``y_t`` (top) and predictions ``ŷ₀`` (bottom) at ``n_columns`` evenly spaced
    steps of a trajectory from :func:`cryodiff.sampling.sample_progressive` (image ``index``
    of the batch)."""
    picks = np.unique(np.linspace(0, len(frames) - 1, n_columns).round().astype(int))
    fig, axes = plt.subplots(2, len(picks), figsize=(2 * len(picks), 4.6), squeeze=False)
    for column, pick in enumerate(picks):
        frame = frames[pick]
        title = f"step {frame['step'] + 1} of {len(frames)}\n√γ̄ = {frame['sqrt_gamma']:.3f}"
        _show(axes[0, column], frame["y_t"][index], title)
        _show(axes[1, column], frame["y0"][index], "")
    # Row labels at the left, not titles above the lower row (which sat on the row above).
    for row, label in enumerate(("state y_t", "predicted ŷ₀")):
        axes[row, 0].text(-0.08, 0.5, label, rotation=90, ha="right", va="center",
                          transform=axes[row, 0].transAxes, fontsize=10)
    fig.suptitle("reverse process")
    fig.tight_layout()
    return fig


def plot_psnr_vs_steps(steps: Sequence[int], psnr_plain: Sequence[float],
                       psnr_postprocessed: Sequence[float] | None = None,
                       psnr_noisy: float | None = None) -> Figure:
    """Mean PSNR (dB) against the number of sampling steps, with and without post-processing;
    ``psnr_noisy`` draws the noisy input's PSNR as a reference line."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(steps, psnr_plain, "o-", label="sampler")
    if psnr_postprocessed is not None:
        ax.plot(steps, psnr_postprocessed, "s-", label="sampler + post-processor")
    if psnr_noisy is not None:
        ax.axhline(psnr_noisy, color="gray", linestyle="--", label="noisy input")
    ax.set_xscale("log")
    ax.set(xlabel="sampling steps", ylabel="PSNR (dB)", title="quality vs sampling steps")
    ax.legend()
    fig.tight_layout()
    return fig
