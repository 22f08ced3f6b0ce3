import pytest
import torch

from baselines_synthetic import make_problem
from cryodiff.baselines import make_baseline
from cryodiff.baselines.bm3d_filter import noise_sigma_outside_disk
from cryodiff.metrics import psnr


def test_noise_sigma_from_the_corners():
    generator = torch.Generator().manual_seed(0)
    noise = 0.3 * torch.randn(20, 32, 32, generator=generator, dtype=torch.float64)
    noise[:, 8:24, 8:24] += 5  # a "particle" inside the disk must not bias the estimate
    assert noise_sigma_outside_disk(noise).mean() == pytest.approx(0.3, rel=0.05)


@pytest.mark.slow
def test_bm3d_improves_psnr():
    pytest.importorskip("bm3d", reason="bm3d not installed (pip install cryodiff[peers])")
    test = make_problem(3, 32, noise_std=0.5, seed=2)
    out = make_baseline("bm3d").denoise(test.noisy)
    gain = (psnr(out, test.clean_ctf) - psnr(test.noisy, test.clean_ctf)).mean()
    assert gain > 6
    assert out.dtype == test.noisy.dtype and out.shape == test.noisy.shape
