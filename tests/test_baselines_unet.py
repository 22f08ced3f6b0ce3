import pytest
import torch

from baselines_synthetic import make_problem
from cryodiff.baselines import make_baseline
from cryodiff.baselines.base import DenoisingData
from cryodiff.baselines.noise2noise import independent_noisy_copy
from cryodiff.baselines.regression import fit_image_to_image
from cryodiff.errors import CryodiffError
from cryodiff.metrics import psnr
from cryodiff.models.postprocess import PostProcessConfig, PostProcessUNet

SMALL = PostProcessConfig(condition_channels=0, base_channels=8, channel_mults=(1, 2),
                          image_size=32, norm_groups=4)


def test_fit_image_to_image_reduces_the_loss():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(8, 16, 16, generator=generator)
    torch.manual_seed(0)
    model = PostProcessUNet(SMALL)
    losses = fit_image_to_image(model, inputs, -inputs, steps=20, batch_size=4, lr=3e-3)
    assert len(losses) == 20
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["supervised", "noise2noise"])
def test_trained_unet_improves_psnr(name):
    train = make_problem(32, 24, noise_std=0.5, with_ctf=True, seed=1)
    test = make_problem(8, 24, noise_std=0.5, with_ctf=True, seed=2)
    baseline = make_baseline(name, steps=40, batch_size=8, lr=3e-3, config=SMALL)
    out = baseline.fit(train).denoise(test.noisy, test.ctf)
    gain = (psnr(out, test.clean_ctf) - psnr(test.noisy, test.clean_ctf)).mean()
    assert gain > 3
    assert out.dtype == test.noisy.dtype and out.shape == test.noisy.shape


@pytest.mark.parametrize("name", ["supervised", "noise2noise"])
def test_trained_unet_is_seeded(name):
    data = make_problem(8, 16, seed=1)
    run = lambda seed: make_baseline(name, steps=3, batch_size=4, seed=seed,
                                     config=SMALL).fit(data).denoise(data.noisy)
    first = run(3)
    torch.testing.assert_close(run(3), first, rtol=0, atol=0)
    assert not torch.equal(run(4), first)


def test_supervised_trains_on_the_requested_target():
    data = make_problem(4, 16, with_ctf=True)
    inputs, targets = make_baseline("supervised", target="clean").training_pairs(data)
    assert torch.equal(inputs, data.noisy) and torch.equal(targets, data.clean)


def test_noise2noise_needs_pairs():
    data = make_problem(4, 16)
    with pytest.raises(CryodiffError, match="noisy_pair"):
        make_baseline("noise2noise", steps=1).fit(DenoisingData(noisy=data.noisy))
    inputs, targets = make_baseline("noise2noise").training_pairs(data)
    assert torch.equal(inputs[:4], targets[4:]) and torch.equal(inputs[:4], data.noisy)


def test_independent_noisy_copy_matches_noise_level_and_is_independent():
    data = make_problem(64, 32, noise_std=0.5, seed=5)
    copy = independent_noisy_copy(data.noisy, data.clean_ctf, torch.Generator().manual_seed(0))
    new_noise = (copy - data.clean_ctf).double()
    old_noise = (data.noisy - data.clean_ctf).double()
    assert copy.dtype == data.noisy.dtype
    assert new_noise.std() == pytest.approx(0.5, rel=0.05)
    correlation = (new_noise * old_noise).mean() / (new_noise.std() * old_noise.std())
    assert abs(float(correlation)) < 0.02
