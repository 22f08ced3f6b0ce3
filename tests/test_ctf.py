"""RELION CTF: analytic zeros, astigmatism direction, envelope, torch-ctf and ASPIRE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryodiff.ctf import apply_ctf, ctf_2d, ctf_params, electron_wavelength_A
from cryodiff.fourier import fft2_centered


def test_wavelength_relativistic():
    # RELION's fit 12.2643247 / sqrt(V (1 + 0.978466e-6 V)) Å (V in volts) agrees to 1e-5.
    for kv in (100.0, 200.0, 300.0):
        volts = kv * 1e3
        expected = 12.2643247 / math.sqrt(volts * (1 + 0.978466e-6 * volts))
        assert electron_wavelength_A(kv).item() == pytest.approx(expected, rel=1e-5)
    assert electron_wavelength_A(300.0).item() == pytest.approx(0.019687, abs=1e-6)


def test_ctf_params_broadcasts():
    p = ctf_params(np.array([10000.0, 20000.0, 30000.0]), voltage_kV=200.0)
    assert p.defocus_u_A.shape == (3,) and p.voltage_kV.shape == (3,)
    torch.testing.assert_close(p.defocus_v_A, p.defocus_u_A)
    assert float(p.voltage_kV[2]) == 200.0


@pytest.mark.parametrize("box", [128, 129])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zeros_at_analytic_positions(box, dtype):
    # A = 0, Cs = 0, no astigmatism: CTF = sin(π λ Δf k²), zeros at k_n = sqrt(n / (λ Δf)).
    pixel, defocus = 1.0, 20000.0
    ctf = ctf_2d(ctf_params(defocus, cs_mm=0.0, amplitude_contrast=0.0), box, pixel,
                 dtype=dtype)[0]
    assert ctf.dtype == dtype and ctf.shape == (box, box)
    wavelength = electron_wavelength_A(300.0).item()
    row = ctf[box // 2, box // 2:].double()  # along +x, k = j / (box · pixel)
    k = torch.arange(row.numel(), dtype=torch.float64) / (box * pixel)
    torch.testing.assert_close(row, torch.sin(math.pi * wavelength * defocus * k ** 2),
                               atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=0)
    # Sign changes lie between the samples bracketing each analytic zero.
    zeros = [math.sqrt(n / (wavelength * defocus)) for n in range(1, 6)]
    changes = torch.nonzero(row[1:] * row[:-1] < 0).flatten()
    assert len(changes) >= len(zeros)
    for kz, j in zip(zeros, changes.tolist()):
        assert k[j] <= kz <= k[j + 1]


def test_low_frequency_sign_and_phase_shift():
    centre = 32
    ctf = ctf_2d(ctf_params(15000.0, amplitude_contrast=0.07), 64, 1.0)[0]
    assert ctf[centre, centre].item() == pytest.approx(0.07, abs=1e-6)  # CTF(0) = +A
    assert ctf[centre, centre + 2].item() > 0.07  # first lobe rises positively
    shifted = ctf_2d(ctf_params(15000.0, amplitude_contrast=0.0, phase_shift_deg=90.0), 64, 1.0)
    assert shifted[0, centre, centre].item() == pytest.approx(1.0, abs=1e-6)


def test_astigmatism_angle_direction():
    # DefocusU lies along the angle (counter-clockwise from +x towards +y = rows).
    box, pixel, u, v, angle = 201, 1.0, 25000.0, 12000.0, 30.0
    ctf = ctf_2d(ctf_params(u, v, angle, cs_mm=0.0, amplitude_contrast=0.0), box, pixel,
                 dtype=torch.float64)[0]
    wavelength = electron_wavelength_A(300.0).item()
    for direction, defocus in ((angle, u), (angle + 90.0, v)):
        k = 0.7 / math.sqrt(wavelength * defocus)  # cycles/Å, inside the first lobe
        x = k * math.cos(math.radians(direction)) * box * pixel
        y = k * math.sin(math.radians(direction)) * box * pixel
        j, i = round(x) + box // 2, round(y) + box // 2
        kx, ky = (j - box // 2) / (box * pixel), (i - box // 2) / (box * pixel)
        theta = math.atan2(ky, kx) - math.radians(angle)
        df = (u + v) / 2 + (u - v) / 2 * math.cos(2 * theta)
        expected = math.sin(math.pi * wavelength * df * (kx * kx + ky * ky))
        assert ctf[i, j].item() == pytest.approx(expected, abs=1e-12)
        assert abs(df - defocus) < 0.05 * (u - v)


def test_bfactor_envelope():
    box, pixel = 64, 1.5
    plain = ctf_2d(ctf_params(15000.0), box, pixel, dtype=torch.float64)
    damped = ctf_2d(ctf_params(15000.0, bfactor_A2=120.0), box, pixel, dtype=torch.float64)
    k = torch.arange(box, dtype=torch.float64) - box // 2
    k2 = (k[:, None] ** 2 + k[None, :] ** 2) / (box * pixel) ** 2
    torch.testing.assert_close(damped[0], plain[0] * torch.exp(-120.0 * k2 / 4))


@pytest.mark.parametrize("box", [64, 65])
@pytest.mark.parametrize("angle", [0.0, 30.0, 75.0, -40.0])
def test_matches_torch_ctf(box, angle):
    torch_ctf = pytest.importorskip("torch_ctf")
    u, v, pixel = 15000.0, 12000.0, 1.2
    ours = ctf_2d(ctf_params(u, v, angle, 300.0, 2.7, 0.07, 0.0, 20.0), box, pixel,
                  dtype=torch.float64)[0]
    theirs = torch_ctf.calculate_ctf_2d(
        defocus=(u + v) / 2e4, astigmatism=(u - v) / 2e4, astigmatism_angle=angle,
        voltage=300.0, spherical_aberration=2.7, amplitude_contrast=0.07, phase_shift=20.0,
        pixel_size=pixel, image_shape=(box, box), rfft=False, fftshift=True)
    torch.testing.assert_close(ours, theirs.reshape(box, box).double(), atol=2e-4, rtol=0)


@pytest.mark.parametrize("box", [64, 65])
def test_aspire_conversion(box, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ASPIRE writes ./logs when imported
    operators = pytest.importorskip("aspire.operators")
    u, v, angle, bfactor, pixel = 15000.0, 12000.0, 30.0, 100.0, 1.5
    aspire_ctf = operators.CTFFilter(voltage=300, defocus_u=u, defocus_v=v,
                                     defocus_ang=math.radians(angle), Cs=2.7, alpha=0.1,
                                     B=bfactor / 400).evaluate_grid(box, pixel_size=pixel)
    ours = ctf_2d(ctf_params(u, v, angle, 300.0, 2.7, 0.1, bfactor), box, pixel,
                  dtype=torch.float64)[0]
    # ASPIRE's sign is opposite; its wavelength constants differ slightly from RELION's.
    np.testing.assert_allclose(ours.numpy(), -aspire_ctf, atol=1e-3)


@pytest.mark.parametrize("box", [32, 33])
def test_apply_ctf_multiplies_in_fourier_space(box):
    images = torch.randn(3, box, box, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0))
    ctf = ctf_2d(ctf_params([10000.0, 15000.0, 20000.0]), box, 1.0, dtype=torch.float64)
    out = apply_ctf(images, ctf)
    assert out.shape == images.shape and out.dtype == images.dtype
    spectrum = fft2_centered(out)
    expected = fft2_centered(images) * ctf
    # Equal away from the even box's unpaired Nyquist row/column.
    inner = slice(1, None) if box % 2 == 0 else slice(None)
    torch.testing.assert_close(spectrum[..., inner, inner], expected[..., inner, inner])
