"""Contrast transfer function in RELION's convention.

For spatial frequency ``k`` (1/Å) at azimuth ``θ = atan2(ky, kx)`` (x = image columns,
y = rows, counter-clockwise from +x towards +y)::

    Δf(θ) = (U + V)/2 + (U − V)/2 · cos(2(θ − θ_ast))          (Å, positive = underfocus)
    χ(k)  = π λ Δf(θ) |k|² − (π/2) Cs λ³ |k|⁴ + φ
    CTF(k) = [ sqrt(1 − A²) sin χ(k) + A cos χ(k) ] · exp(−B |k|² / 4)

with U, V = DefocusU/V, θ_ast = DefocusAngle, λ the relativistic electron wavelength (Å),
Cs in Å (mm · 10⁷), A the amplitude contrast, φ the phase shift and B the B-factor (Å²). This is
RELION's ``CTF::getCTF`` (``-sin(K1·Δf'·u² + K2·u⁴ − K5 − K3)`` with its ``Δf' = −Δf``,
``K3 = atan(A/sqrt(1−A²))``), so CTF(0) = +A and the first lobe is positive: images formed
as ``CTF · projection`` keep the sign of the map (RELION's "white particles" convention).
Defocus U lies along θ_ast; V is perpendicular to it.

Other conventions (checked in ``tests/test_ctf.py``):

* ``torch-ctf`` (``torch_ctf.calculate_ctf_2d(..., rfft=False, fftshift=True)``) gives the
  same values and sign on the same centred grid (its array axes are [y, x] too) when called
  with ``defocus = (U+V)/2`` and ``astigmatism = (U−V)/2`` in µm, ``astigmatism_angle = θ_ast``;
  it has no B-factor.
* ASPIRE (``aspire.operators.CTFFilter(voltage, defocus_u, defocus_v, defocus_ang, Cs,
  alpha, B)``, evaluated with ``evaluate_grid(L, pixel_size=…)`` on the same grid) returns
  ``−CTF``. Its ``defocus_ang`` is θ_ast in radians, ``alpha`` is A, and its envelope is
  ``exp(−B_aspire s²)`` with ``s`` in 1/nm, so ``B_aspire = B / 400`` (``B`` in Å²). It has no
  phase shift; its wavelength constants differ from RELION's in the fifth digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from cryodiff.fourier import apply_centrosymmetric_filter, frequency_grid

# CODATA 2018: Planck constant (J s), electron mass (kg), elementary charge (C), light (m/s).
_H, _M_E, _E, _C = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0


@dataclass(frozen=True)
class CtfParams:
    """Per-particle CTF parameters, each a tensor of shape ``(N,)`` (or broadcastable).

    Units follow RELION's STAR columns: defocus in Å (positive = underfocus), astigmatism
    angle in degrees, voltage in kV, spherical aberration in mm, B-factor in Å², phase
    shift in degrees.
    """

    defocus_u_A: torch.Tensor
    defocus_v_A: torch.Tensor
    defocus_angle_deg: torch.Tensor
    voltage_kV: torch.Tensor
    cs_mm: torch.Tensor
    amplitude_contrast: torch.Tensor
    bfactor_A2: torch.Tensor
    phase_shift_deg: torch.Tensor


def ctf_params(defocus_u_A, defocus_v_A=None, defocus_angle_deg=0.0, voltage_kV=300.0,
               cs_mm=2.7, amplitude_contrast=0.1, bfactor_A2=0.0, phase_shift_deg=0.0,
               dtype: torch.dtype = torch.float64, device=None) -> CtfParams:
    """Build :class:`CtfParams` from floats, arrays or tensors, broadcast to a common ``(N,)``.

    ``defocus_v_A`` defaults to ``defocus_u_A`` (no astigmatism).
    """
    values = dict(defocus_u_A=defocus_u_A,
                  defocus_v_A=defocus_u_A if defocus_v_A is None else defocus_v_A,
                  defocus_angle_deg=defocus_angle_deg, voltage_kV=voltage_kV, cs_mm=cs_mm,
                  amplitude_contrast=amplitude_contrast, bfactor_A2=bfactor_A2,
                  phase_shift_deg=phase_shift_deg)
    tensors = {k: torch.as_tensor(v, dtype=dtype, device=device).reshape(-1)
               for k, v in values.items()}
    shape = torch.broadcast_shapes(*(t.shape for t in tensors.values()))
    return CtfParams(**{k: t.expand(shape).clone() for k, t in tensors.items()})


def electron_wavelength_A(voltage_kV: float | torch.Tensor) -> torch.Tensor:
    """Relativistic electron wavelength in Å: ``λ = h / sqrt(2 m e V (1 + e V / (2 m c²)))``.

    300 kV → 0.019687 Å, 200 kV → 0.025079 Å.
    """
    volts = torch.as_tensor(voltage_kV, dtype=torch.float64) * 1e3
    momentum = torch.sqrt(2 * _M_E * _E * volts * (1 + _E * volts / (2 * _M_E * _C ** 2)))
    return _H / momentum * 1e10


def ctf_at_frequencies(params: CtfParams, freqs_A_inv: torch.Tensor) -> torch.Tensor:
    """RELION CTF ``(N, M)`` of particles ``params`` at frequencies ``(M, 2)`` (kx, ky) in 1/Å.

    The formula of the module docstring, written so that only a matmul and a sine run per
    point: ``χ + asin(A) = c · [s², s² cos 2θ, s² sin 2θ, s⁴, 1]`` with per-particle
    coefficients ``c`` (float64), then ``CTF = sin(χ + asin A) · exp(-B s² / 4)`` (since
    ``sqrt(1-A²) sin χ + A cos χ = sin(χ + asin A)``). Per-point work is in the dtype of
    ``freqs_A_inv`` on its device.
    """
    device, dtype = freqs_A_inv.device, freqs_A_inv.dtype
    p = {f.name: torch.as_tensor(getattr(params, f.name), dtype=torch.float64,
                                 device=device).reshape(-1) for f in fields(params)}
    wavelength = electron_wavelength_A(p["voltage_kV"]).to(device)
    mean = (p["defocus_u_A"] + p["defocus_v_A"]) / 2
    half_diff = (p["defocus_u_A"] - p["defocus_v_A"]) / 2
    angle = 2 * torch.deg2rad(p["defocus_angle_deg"])
    offset = torch.deg2rad(p["phase_shift_deg"]) + torch.asin(p["amplitude_contrast"])
    coefficients = torch.broadcast_tensors(
        math.pi * wavelength * mean, math.pi * wavelength * half_diff * torch.cos(angle),
        math.pi * wavelength * half_diff * torch.sin(angle),
        -math.pi / 2 * p["cs_mm"] * 1e7 * wavelength ** 3, offset)
    coefficients = torch.stack(coefficients, dim=-1).to(dtype)  # (N, 5)

    kx, ky = freqs_A_inv.unbind(-1)
    s2 = kx * kx + ky * ky
    basis = torch.stack([s2, kx * kx - ky * ky, 2 * kx * ky, s2 * s2, torch.ones_like(s2)])
    ctf = torch.sin(coefficients @ basis)
    bfactor = p["bfactor_A2"]
    if bool((bfactor != 0).any()):
        ctf = ctf * torch.exp(-bfactor.to(dtype)[:, None] / 4 * s2)
    return ctf


def ctf_2d(params: CtfParams, box: int, pixel_size_A: float | torch.Tensor,
           device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """CTF ``(N, L, L)`` on the centred Fourier grid of :func:`cryodiff.fourier.fft2_centered`.

    ``pixel_size_A`` is a float or ``(N,)``. Computed in float64 (by
    :func:`ctf_at_frequencies`, once per distinct pixel size) and returned as ``dtype`` on
    ``device`` (default: the device of ``params``).
    """
    if device is None:
        device = params.defocus_u_A.device
    n = max(torch.as_tensor(getattr(params, f.name)).numel() for f in fields(params))
    pixel = torch.as_tensor(pixel_size_A, dtype=torch.float64, device=device).reshape(-1)
    pixel = pixel.expand(n) if pixel.numel() == 1 else pixel
    grid = frequency_grid(box, 2, 1.0, device, torch.float64).reshape(-1, 2)  # cycles/box
    out = torch.empty(n, box * box, dtype=torch.float64, device=device)
    for size in torch.unique(pixel):
        chosen = (pixel == size).nonzero().squeeze(1)
        subset = CtfParams(*(torch.as_tensor(getattr(params, f.name), dtype=torch.float64,
                                             device=device).reshape(-1).expand(n)[chosen]
                             for f in fields(params)))
        out[chosen] = ctf_at_frequencies(subset, grid / size)
    return out.reshape(n, box, box).to(dtype)


def apply_ctf(images: torch.Tensor, ctf: torch.Tensor) -> torch.Tensor:
    """Multiply images ``(..., L, L)`` by a centred-grid CTF ``(..., L, L)`` in Fourier space."""
    return apply_centrosymmetric_filter(images, ctf)
