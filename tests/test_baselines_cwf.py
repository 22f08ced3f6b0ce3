import numpy as np
import pytest
import torch

from baselines_synthetic import make_problem
from cryodiff.baselines import make_baseline
from cryodiff.ctf import ctf_2d, ctf_params
from cryodiff.metrics import psnr

pytest.importorskip("aspire", reason="aspire not installed (pip install cryodiff[peers])")


@pytest.mark.parametrize("size", [31, 32])
def test_aspire_ctf_filter_matches_ctf_2d(size):
    # ASPIRE's own CTFFilter is -CTF in cryodiff's convention; the converter undoes that and
    # the unit changes (angle in radians, B-factor per nm²).
    from aspire.operators import CTFFilter
    from cryodiff.baselines.cwf import aspire_ctf_filter
    params = ctf_params(15000.0, 13000.0, defocus_angle_deg=30.0, voltage_kV=300.0,
                        cs_mm=2.7, amplitude_contrast=0.1, bfactor_A2=40.0)
    ours = ctf_2d(params, size, 2.5, dtype=torch.float64)[0].numpy()
    converted = aspire_ctf_filter(params, 0).evaluate_grid(size, pixel_size=2.5)
    np.testing.assert_allclose(converted, ours, atol=2e-3)
    raw = CTFFilter(voltage=300.0, defocus_u=15000.0, defocus_v=13000.0,
                    defocus_ang=np.radians(30.0), Cs=2.7, alpha=0.1, B=0.1)
    np.testing.assert_allclose(raw.evaluate_grid(size, pixel_size=2.5), -ours, atol=2e-3)


@pytest.mark.slow
def test_cwf_improves_psnr_with_ctf():
    test = make_problem(32, 32, noise_std=0.5, with_ctf=True, seed=2)
    cwf = make_baseline("cwf").fit(test)
    out = cwf.denoise(test.noisy, test.ctf)
    gain = (psnr(out, test.clean_ctf) - psnr(test.noisy, test.clean_ctf)).mean()
    assert gain > 6
    assert out.dtype == test.noisy.dtype and out.shape == test.noisy.shape
    assert cwf.noise_variance == pytest.approx(0.25, rel=0.1)
    # Target "clean" is the CTF-corrected estimate: closer to the clean projection.
    corrected = make_baseline("cwf", target="clean").fit(test).denoise(test.noisy, test.ctf)
    assert (corrected - test.clean).square().mean() < (out - test.clean).square().mean()


def test_cwf_2d_row_fits_its_covariance_on_the_2d_test_images_alone():
    # Through the benchmark's own entry point, on a tiny condition: "cwf-2d" denoises (and so
    # fits its covariance on) exactly the n_test_2d test images; "cwf" the whole 3D set.
    import dataclasses

    from cryodiff.benchmark import get_preset
    from cryodiff.benchmark.conditions import make_condition
    from cryodiff.benchmark.methods import run_baseline

    config = dataclasses.replace(get_preset("ci"), n_train=8, n_val=16, n_test_2d=24,
                                 n_test_slow=4, n_test_3d=64, methods=("cwf", "cwf-2d"),
                                 methods_3d=("cwf",))
    condition = make_condition("phantom", 0.1, config)
    test, cpu = condition.test, torch.device("cpu")
    two_d = run_baseline("cwf-2d", condition, config, cpu)
    assert two_d.status == "ok", two_d.note
    assert two_d.images.shape == (24, *test.noisy.shape[1:])
    assert "24 images" in two_d.note
    # The same as CWF run directly on those 24 images (noise variance from validation).
    variance = float((condition.val.noisy - condition.val.clean_ctf).double().var())
    direct = make_baseline("cwf", noise_variance=variance, pixel_size_A=condition.pixel_size_A
                           ).denoise(test.noisy[:24], test.ctf_grid[:24])
    torch.testing.assert_close(two_d.images, direct.float(), atol=1e-5, rtol=1e-4)
    three_d = run_baseline("cwf", condition, config, cpu)
    assert three_d.status == "ok" and three_d.images.shape[0] == 64
    assert "64 images" in three_d.note
    # Another covariance (from 64 images), so other estimates of the same 24 particles.
    assert not torch.allclose(three_d.images[:24], two_d.images, atol=1e-4)
