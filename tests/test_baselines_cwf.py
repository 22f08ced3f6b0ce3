import math

import numpy as np
import pytest
import torch

from baselines_synthetic import make_problem, radial_ctf
from cryodiff.baselines import make_baseline
from cryodiff.metrics import psnr

pytest.importorskip("aspire", reason="aspire not installed (pip install cryodiff[peers])")


def relativistic_wavelength_A(voltage_kV: float) -> float:
    volts = voltage_kV * 1e3
    return 12.2643247 / math.sqrt(volts * (1 + 0.978466e-6 * volts))


@pytest.mark.parametrize("size", [31, 32])
def test_aspire_ctf_filter_matches_relion_convention(size):
    # ASPIRE's CTFFilter (Cs = 0) on its grid equals our RELION-sign radial CTF on ours,
    # which is what lets our CTF grids go to ASPIRE unchanged as ArrayFilters.
    from aspire.operators import CTFFilter
    pixel_size_A, defocus_A, amplitude = 3.0, 12000.0, 0.1
    aspire = CTFFilter(voltage=300, defocus_u=defocus_A, defocus_v=defocus_A, Cs=0.0,
                       alpha=amplitude).evaluate_grid(size, pixel_size=pixel_size_A)
    ours = radial_ctf(torch.tensor([defocus_A], dtype=torch.float64), size, pixel_size_A,
                      amplitude, relativistic_wavelength_A(300))[0]
    np.testing.assert_allclose(aspire, ours.numpy(), atol=2e-3)


def test_aspire_ctf_filter_from_ctf_params_matches_ctf_2d():
    ctf_module = pytest.importorskip("cryodiff.ctf")
    if not hasattr(ctf_module, "ctf_2d"):
        pytest.skip("cryodiff.ctf.ctf_2d has not landed yet")
    from cryodiff.baselines.cwf import aspire_ctf_filter
    params = ctf_module.CtfParams(*(torch.tensor([v], dtype=torch.float64) for v in
                                    (15000.0, 13000.0, 30.0, 300.0, 2.7, 0.1, 40.0, 0.0)))
    ours = ctf_module.ctf_2d(params, 32, 2.5)[0].double().numpy()
    aspire = aspire_ctf_filter(params, 0).evaluate_grid(32, pixel_size=2.5)
    np.testing.assert_allclose(aspire, ours, atol=2e-3)


@pytest.mark.slow
def test_cwf_improves_psnr_with_ctf():
    test = make_problem(48, 32, noise_std=0.5, with_ctf=True, seed=2)
    cwf = make_baseline("cwf").fit(test)
    out = cwf.denoise(test.noisy, test.ctf)
    gain = (psnr(out, test.clean_ctf) - psnr(test.noisy, test.clean_ctf)).mean()
    assert gain > 6
    assert out.dtype == test.noisy.dtype and out.shape == test.noisy.shape
    assert cwf.noise_variance == pytest.approx(0.25, rel=0.1)
