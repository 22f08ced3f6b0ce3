import math

import pytest
import torch

from baselines_synthetic import blobs, make_problem
from cryodiff.baselines import make_baseline
from cryodiff.baselines.base import DenoisingData
from cryodiff.baselines.bm3d_filter import (bm3d_denoise, bm3d_denoise_psd,
                                            noise_power_spectrum, noise_sigma_outside_disk)
from cryodiff.baselines.grid_search import geometric_search
from cryodiff.errors import CryodiffError
from cryodiff.fourier import radius_grid
from cryodiff.metrics import psnr
from cryodiff.noise import coloured_noise, radial_spectrum_grid, ring_average


def test_noise_sigma_from_the_corners():
    generator = torch.Generator().manual_seed(0)
    noise = 0.3 * torch.randn(20, 32, 32, generator=generator, dtype=torch.float64)
    noise[:, 8:24, 8:24] += 5  # a "particle" inside the disk must not bias the estimate
    assert noise_sigma_outside_disk(noise).mean() == pytest.approx(0.3, rel=0.05)


def test_geometric_search_extends_past_the_edge_until_the_best_is_inside():
    # Loss (log x - log 7)²: the best of a 0.25–4 grid is at its top edge; extended by the
    # grid ratio (2) it reaches 8, whose neighbour 16 is worse, so 8 is interior.
    search = geometric_search(lambda x: (math.log(x) - math.log(7)) ** 2, 0.25, 4, 5)
    assert search.best == pytest.approx(8) and not search.at_edge
    assert search.n_extensions == 2 and search.values[-1] == pytest.approx(16)
    low = geometric_search(lambda x: (math.log(x) - math.log(0.05)) ** 2, 0.25, 4, 5)
    assert low.best == pytest.approx(1 / 16) and not low.at_edge
    # A loss that keeps falling: the extensions stop at the bound and say so.
    bounded = geometric_search(lambda x: -x, 1, 2, 2, max_extensions=3)
    assert bounded.best == pytest.approx(16) and bounded.at_edge and bounded.n_extensions == 3
    assert list(bounded.values) == sorted(bounded.values)


def _coloured_problem(n: int, size: int, seed: int, std: float = 0.5):
    """Blobs + noise whose spectrum is a ring (as CTF-modulated structural noise) on a white
    floor (as shot noise): far from white. Returns the data and the true spectrum."""
    generator = torch.Generator().manual_seed(seed)
    clean = blobs(n, size, generator)
    f = radius_grid(size, 2, dtype=torch.float64) / size  # cycles/pixel
    shape = 0.2 + 5 * torch.exp(-((f - 0.25) / 0.05) ** 2)
    shape = shape / shape.mean()
    noise = coloured_noise(torch.randn(n, size, size, generator=generator,
                                       dtype=torch.float64), shape) * std
    return DenoisingData(noisy=clean + noise, clean_ctf=clean, clean=clean), shape * std**2


def test_noise_power_spectrum_matches_the_known_spectrum():
    val, power = _coloured_problem(64, 32, seed=1)
    measured = noise_power_spectrum(val.noisy - val.clean_ctf)
    assert measured.shape == (32, 32)
    # Against the truth's own ring averages laid on the grid the same way (the narrow ring
    # is smeared over integer radii alike in both); the innermost rings hold few independent
    # Fourier coefficients, hence their wider margin.
    expected = radial_spectrum_grid(ring_average(power), 32)
    error = (measured - expected).abs() / expected
    inner = radius_grid(32, 2) < 2.5
    assert float(error.mean()) < 0.05 and float(error[~inner].max()) < 0.15
    assert float(error[inner].max()) < 0.5
    # Its mean over the grid is the noise variance per pixel.
    assert float(measured.mean()) == pytest.approx(float(power.mean()), rel=0.05)


def test_bm3d_with_the_noise_spectrum_beats_white_noise_bm3d_on_coloured_noise():
    pytest.importorskip("bm3d", reason="bm3d not installed (pip install cryodiff[peers])")
    val, _ = _coloured_problem(4, 32, seed=1)
    test, _ = _coloured_problem(1, 32, seed=2)
    bm3d = make_baseline("bm3d", scale_range=(0.5, 2.0), n_scales=3, n_fit_images=1).fit(val)
    # "auto" fitted both noise models; the spectrum won on validation.
    assert bm3d.noise == "auto" and bm3d.noise_model == "psd" and not bm3d.at_edge
    assert min(bm3d.searches["psd"].losses) < min(bm3d.searches["white"].losses)
    assert bm3d.describe().startswith("noise power spectrum measured on validation")
    assert "noise model chosen on validation" in bm3d.describe()
    out = bm3d.denoise(test.noisy)
    assert out.dtype == test.noisy.dtype and out.shape == test.noisy.shape
    with_psd = float(psnr(out, test.clean_ctf).mean())
    # White-noise BM3D at its best std scale, chosen on the test images themselves (an
    # oracle in its favour; 2 is its best here): still worse, as one threshold for every
    # frequency either leaves the ring's noise or wipes the signal off the floor.
    sigma = noise_sigma_outside_disk(test.noisy)
    white = max(float(psnr(bm3d_denoise(test.noisy, sigma * s), test.clean_ctf).mean())
                for s in (1.0, 2.0, 4.0))
    assert with_psd > white + 1
    assert with_psd > float(psnr(test.noisy, test.clean_ctf).mean()) + 3


def test_bm3d_options_are_checked():
    with pytest.raises(CryodiffError, match="noise model"):
        make_baseline("bm3d", noise="pink")
    for noise in ("auto", "psd"):
        with pytest.raises(RuntimeError, match="fit"):
            make_baseline("bm3d", noise=noise).denoise(torch.zeros(1, 8, 8))


@pytest.mark.slow
def test_white_noise_bm3d_improves_psnr():
    pytest.importorskip("bm3d", reason="bm3d not installed (pip install cryodiff[peers])")
    test = make_problem(3, 32, noise_std=0.5, seed=2)
    out = make_baseline("bm3d", noise="white").denoise(test.noisy)
    gain = (psnr(out, test.clean_ctf) - psnr(test.noisy, test.clean_ctf)).mean()
    assert gain > 6
    assert out.dtype == test.noisy.dtype and out.shape == test.noisy.shape


def test_a_flat_noise_spectrum_is_white_noise_of_the_same_std():
    # Pins the spectrum's units (per-pixel |FFT|²/L², shifted and scaled for bm3d): a wrong
    # constant factor would be hidden by the scale search in the benchmark, not here.
    pytest.importorskip("bm3d")
    images = torch.randn(2, 24, 24, generator=torch.Generator().manual_seed(3)).double()
    sigma = 0.7
    flat = torch.full((24, 24), sigma**2, dtype=torch.float64)
    white = bm3d_denoise(images, torch.full((2,), sigma))
    coloured = bm3d_denoise_psd(images, flat)
    assert (coloured - white).abs().max() < 1e-5 * images.abs().max()
