import sys

import pytest
import torch

from baselines_synthetic import make_problem
from cryodiff.baselines import make_baseline
from cryodiff.baselines.topaz import load_topaz_model
from cryodiff.errors import CryodiffError
from cryodiff.metrics import psnr


def test_missing_topaz_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "topaz.denoising.models", None)  # import now fails
    with pytest.raises(CryodiffError, match="topaz-em not installed"):
        load_topaz_model("unet")


@pytest.mark.parametrize("size", [31, 32])
def test_topaz_pretrained_unet_improves_psnr(size):
    pytest.importorskip("topaz", reason="topaz-em not installed (pip install cryodiff[peers])")
    test = make_problem(6, size, noise_std=0.5, seed=2)
    out = make_baseline("topaz").fit(test).denoise(test.noisy)
    gain = (psnr(out, test.clean_ctf) - psnr(test.noisy, test.clean_ctf)).mean()
    assert gain > 5
    assert out.dtype == test.noisy.dtype and out.shape == test.noisy.shape
    # Per-image standardisation: a rescaled, offset input gives the same rescaled output.
    scaled = make_baseline("topaz").denoise(3 * test.noisy + 2)
    torch.testing.assert_close(scaled, 3 * out + 2, atol=1e-4, rtol=1e-4)
