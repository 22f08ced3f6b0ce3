import sys

import pytest
import torch

from baselines_synthetic import make_problem
from cryodiff.baselines import make_baseline
from cryodiff.baselines.topaz import load_topaz_model, pretrained_2d_models, topaz_denoise
from cryodiff.errors import CryodiffError
from cryodiff.metrics import psnr


def test_missing_topaz_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "topaz.denoising.models", None)  # import now fails
    with pytest.raises(CryodiffError, match="topaz-em not installed"):
        load_topaz_model("unet")
    with pytest.raises(CryodiffError, match="topaz-em not installed"):
        make_baseline("topaz").fit(make_problem(2, 16))


def test_every_shipped_2d_model_is_offered():
    pytest.importorskip("topaz", reason="topaz-em not installed (pip install cryodiff[peers])")
    from topaz.denoising.models import model_name_dict
    names = pretrained_2d_models()
    # One name per 2D weight file the package ships; no 3D (tomogram) model.
    assert {model_name_dict[n] for n in names} == \
        {f for f in model_name_dict.values() if "3d" not in f}
    assert len(names) == len({model_name_dict[n] for n in names})
    assert {"unet", "fcnn", "affine"} <= set(names)
    with pytest.raises(CryodiffError, match="unknown Topaz model"):
        load_topaz_model("unet-3d")


@pytest.mark.parametrize("size", [31, 32])
def test_topaz_pretrained_unet_improves_psnr(size):
    pytest.importorskip("topaz", reason="topaz-em not installed (pip install cryodiff[peers])")
    test = make_problem(6, size, noise_std=0.5, seed=2)
    out = make_baseline("topaz", model="unet").fit(test).denoise(test.noisy)
    gain = (psnr(out, test.clean_ctf) - psnr(test.noisy, test.clean_ctf)).mean()
    assert gain > 5
    assert out.dtype == test.noisy.dtype and out.shape == test.noisy.shape
    # Per-image standardisation: a rescaled, offset input gives the same rescaled output.
    scaled = make_baseline("topaz", model="unet").denoise(3 * test.noisy + 2)
    torch.testing.assert_close(scaled, 3 * out + 2, atol=1e-4, rtol=1e-4)


def test_topaz_model_is_chosen_by_validation_psnr():
    pytest.importorskip("topaz", reason="topaz-em not installed (pip install cryodiff[peers])")
    val = make_problem(4, 24, noise_std=0.5, seed=1)
    topaz = make_baseline("topaz").fit(val)
    assert set(topaz.validation_psnr) == set(pretrained_2d_models())
    assert topaz.model_name == max(topaz.validation_psnr, key=topaz.validation_psnr.get)
    # The recorded score is that model's PSNR on the split, recomputed independently.
    chosen = topaz_denoise(load_topaz_model(topaz.model_name), val.noisy)
    assert topaz.validation_psnr[topaz.model_name] == pytest.approx(
        float(psnr(chosen.double(), val.clean_ctf.double()).mean()), abs=1e-6)
    assert f"'{topaz.model_name}' model chosen by validation PSNR" in topaz.describe()
    scores = sorted(topaz.validation_psnr.values())
    assert scores[-1] > scores[0]  # the choice matters: the models differ on these data
    with pytest.raises(RuntimeError, match="before fit"):
        make_baseline("topaz").denoise(val.noisy)
