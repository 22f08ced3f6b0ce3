"""Figures of the contrast transfer function: the 2D CTF and its radial profile with zeros."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch

from cryodiff.ctf import CtfParams, ctf_2d, electron_wavelength_A


def ctf_zeros_A_inv(defocus_A: float, voltage_kV: float, cs_mm: float,
                    amplitude_contrast: float, max_frequency_A_inv: float) -> list[float]:
    """Spatial frequencies (1/Å) of the zeros of a non-astigmatic CTF up to a limit.

    With ``CTF = sin(χ + φ_A)``, ``φ_A = asin(A)`` (see :mod:`cryodiff.ctf`), zeros are at
    ``χ(k) = nπ − φ_A``, i.e. ``π λ Δf k² − (π/2) Cs λ³ k⁴ = nπ − φ_A``: a quadratic in ``k²``
    (the smaller root: the zeros before spherical aberration turns the phase back).
    """
    wavelength = float(electron_wavelength_A(voltage_kV))
    a = math.pi / 2 * cs_mm * 1e7 * wavelength**3
    b = math.pi * wavelength * defocus_A
    phase = math.asin(amplitude_contrast)
    zeros = []
    for n in range(1, 10_000):
        target = n * math.pi - phase
        disc = b * b - 4 * a * target
        if disc < 0:
            break
        k = math.sqrt((b - math.sqrt(disc)) / (2 * a)) if a > 0 else math.sqrt(target / b)
        if k > max_frequency_A_inv:
            break
        zeros.append(k)
    return zeros


def plot_ctf(params: CtfParams, box: int, pixel_size_A: float, index: int = 0) -> plt.Figure:
    """The 2D CTF of particle ``index`` and its 1D profile along x with the analytic zeros."""
    ctf = ctf_2d(params, box, pixel_size_A)[index]
    nyquist = 1 / (2 * pixel_size_A)
    value = {f: float(getattr(params, f)[index]) for f in
             ("defocus_u_A", "defocus_v_A", "voltage_kV", "cs_mm", "amplitude_contrast")}
    fine = 1024
    profile_params = CtfParams(**{f: getattr(params, f)[index:index + 1] for f in
                                  params.__dataclass_fields__})
    # A fine 1D profile: the same CTF on a box 1024 wide at the same Nyquist frequency.
    fine_ctf = ctf_2d(profile_params, fine, pixel_size_A)[0, fine // 2, fine // 2:]
    frequency = torch.arange(fine_ctf.shape[0]) / (fine * pixel_size_A)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), width_ratios=[1, 1.6])
    left.imshow(ctf.cpu(), cmap="RdBu_r", vmin=-1, vmax=1, origin="lower",
                extent=[-nyquist, nyquist, -nyquist, nyquist])
    left.set_title(f"2D CTF (ΔU {value['defocus_u_A']:.0f} Å, ΔV {value['defocus_v_A']:.0f} Å)")
    left.set_xlabel("kx (1/Å)")
    left.set_ylabel("ky (1/Å)")
    right.plot(frequency, fine_ctf.cpu(), lw=1, label="CTF along kx")
    # The profile along kx sees the defocus at azimuth θ = 0.
    angle = math.radians(float(params.defocus_angle_deg[index]))
    defocus_x = 0.5 * (value["defocus_u_A"] + value["defocus_v_A"]
                       + (value["defocus_u_A"] - value["defocus_v_A"]) * math.cos(2 * angle))
    for i, k in enumerate(ctf_zeros_A_inv(defocus_x, value["voltage_kV"], value["cs_mm"],
                                         value["amplitude_contrast"], nyquist)):
        right.axvline(k, color="red", lw=0.5, alpha=0.6, label="analytic zeros" if i == 0 else None)
    right.axhline(0, color="black", lw=0.5)
    right.set_xlabel("spatial frequency (1/Å)")
    right.set_ylabel("CTF")
    right.set_xlim(0, nyquist)
    right.legend(loc="lower right")
    figure.tight_layout()
    return figure
