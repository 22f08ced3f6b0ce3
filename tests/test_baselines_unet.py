import dataclasses

import pytest
import torch

from baselines_synthetic import make_problem
from cryodiff.baselines import make_baseline
from cryodiff.baselines.base import DenoisingData
from cryodiff.baselines.noise2noise import independent_noisy_copy
from cryodiff.baselines.regression import RegressionRecipe, fit_image_to_image
from cryodiff.baselines.supervised import matched_backbone_config
from cryodiff.errors import CryodiffError
from cryodiff.metrics import psnr
from cryodiff.models.postprocess import PostProcessConfig, PostProcessUNet
from cryodiff.models.unet import SR3UNet, UNetConfig
from cryodiff.training.config import get_preset
from cryodiff.training.loop import ema_decay_at

SMALL = PostProcessConfig(condition_channels=0, base_channels=8, channel_mults=(1, 2),
                          image_size=32, norm_groups=4)


def test_fit_image_to_image_reduces_the_loss():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(8, 16, 16, generator=generator)
    torch.manual_seed(0)
    model = PostProcessUNet(SMALL)
    losses = fit_image_to_image(model, inputs, -inputs,
                                RegressionRecipe(steps=20, batch_size=4, lr=3e-3)).losses
    assert len(losses) == 20
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def _scale_and_offset() -> torch.nn.Conv2d:
    """A 1×1 convolution: ``y = w·x + b``, two parameters, seeded."""
    torch.manual_seed(0)
    return torch.nn.Conv2d(1, 1, 1)


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_ema_is_the_ramped_average_of_the_raw_weights():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(16, 8, 8, generator=generator)
    targets = 3 * inputs + 1
    recipe = RegressionRecipe(steps=6, batch_size=4, lr=0.1, ema_decay=0.9)
    # Runs are deterministic, so the run of s steps gives the raw weights after step s.
    trajectory = []
    for steps in range(recipe.steps + 1):
        model = _scale_and_offset()
        fit = fit_image_to_image(model, inputs, targets, dataclasses.replace(recipe, steps=steps))
        trajectory.append(_flat(model))
    expected = trajectory[0]
    for step in range(recipe.steps):
        decay = ema_decay_at(step, recipe.ema_decay)
        expected = decay * expected + (1 - decay) * trajectory[step + 1]
    torch.testing.assert_close(_flat(fit.ema), expected)
    assert not torch.allclose(_flat(fit.ema), trajectory[-1])
    # ema_decay 0: the EMA network is the raw one.
    model = _scale_and_offset()
    plain = fit_image_to_image(model, inputs, targets, dataclasses.replace(recipe, ema_decay=0))
    torch.testing.assert_close(_flat(plain.ema), _flat(model), rtol=0, atol=0)


def test_warm_up_scales_the_first_steps():
    inputs = torch.randn(16, 8, 8, generator=torch.Generator().manual_seed(1))
    recipe = RegressionRecipe(steps=1, batch_size=4, lr=0.01, warmup_steps=10)
    moved = {}
    for warmup in (0, 10):
        model = _scale_and_offset()
        start = _flat(model)
        fit = fit_image_to_image(model, inputs, 2 * inputs,
                                 dataclasses.replace(recipe, warmup_steps=warmup))
        moved[warmup] = (_flat(model) - start).abs()
    # Adam's first step moves each weight by ≈ lr: with warm-up, by lr / warmup_steps.
    torch.testing.assert_close(moved[10], moved[0] / 10, rtol=1e-3, atol=0)
    assert fit.lrs == [pytest.approx(0.001)]
    ramp = dataclasses.replace(recipe, steps=15)
    assert [ramp.lr_at(s) for s in (0, 4, 9, 14)] == pytest.approx([0.001, 0.005, 0.01, 0.01])


def test_weight_decay_is_decoupled():
    # Targets = inputs and an identity start: zero gradient, so AdamW only decays the weight.
    model = torch.nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    inputs = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(2))
    fit_image_to_image(model, inputs, inputs.clone(),
                       RegressionRecipe(steps=1, batch_size=4, lr=0.1, weight_decay=0.5))
    assert float(model.weight.detach()) == pytest.approx(1 - 0.1 * 0.5)


def test_gradient_clipping_uses_the_recipe_norm(monkeypatch):
    norms = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, max_norm: norms.append(max_norm) or real(params, max_norm))
    inputs = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(3))
    recipe = RegressionRecipe(steps=3, batch_size=2, grad_clip=0.25)
    fit_image_to_image(_scale_and_offset(), inputs, -inputs, recipe)
    fit_image_to_image(_scale_and_offset(), inputs, -inputs,
                       dataclasses.replace(recipe, grad_clip=0))
    assert norms == [0.25] * 3


@pytest.mark.parametrize("loss", ["l2", "l1"])
def test_l2_learns_the_mean_and_l1_the_median(loss):
    # A constant predictor (zero inputs: only the bias matters) of skewed targets: the
    # exponential distribution has mean 1 and median ln 2, far apart.
    targets = torch.empty(64, 8, 8).exponential_(generator=torch.Generator().manual_seed(4))
    model = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    recipe = RegressionRecipe(steps=400, batch_size=16, lr=0.02, ema_decay=0.98, loss=loss)
    fit = fit_image_to_image(model, torch.zeros_like(targets), targets, recipe)
    learnt = float(fit.ema.bias)
    expected = float(targets.mean() if loss == "l2" else targets.median())
    other = float(targets.median() if loss == "l2" else targets.mean())
    assert abs(learnt - expected) < 0.05 < abs(learnt - other) - 0.2


def test_recipe_comes_from_the_training_config_and_is_checked():
    train = get_preset("cpu-small")
    recipe = RegressionRecipe.from_train_config(train, "l1")
    assert (recipe.steps, recipe.batch_size, recipe.lr, recipe.weight_decay,
            recipe.warmup_steps, recipe.grad_clip, recipe.ema_decay, recipe.amp, recipe.seed) == (
        train.steps, train.batch_size, train.lr, train.weight_decay, train.warmup_steps,
        train.grad_clip, train.ema_decay, train.amp, train.seed)
    assert recipe.loss == "l1"
    assert recipe.describe("cpu") == "AdamW + warm-up + clip + EMA, L1, fp32"
    assert RegressionRecipe().describe() == "AdamW, L2, fp32"
    for bad in ({"loss": "huber"}, {"amp": "fp8"}, {"ema_decay": 1.0}, {"lr": 0.0}):
        with pytest.raises(CryodiffError):
            RegressionRecipe(**bad)
    with pytest.raises(CryodiffError, match="unknown option"):
        make_baseline("supervised", learning_rate=1e-3)


def test_supervised_l1_trains_with_l1_only():
    assert make_baseline("supervised-l1").recipe.loss == "l1"
    assert make_baseline("supervised").recipe.loss == "l2"
    with pytest.raises(CryodiffError, match="L1"):
        make_baseline("supervised-l1", loss="l2")


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset", ["ci", "cpu-small"])
def test_large_supervised_unet_is_sr3_without_noise_and_condition_inputs(preset):
    unet = get_preset(preset).model
    sr3 = SR3UNet(unet)
    large = PostProcessUNet(matched_backbone_config(unet))
    # Exactly SR3 less its noise-level MLP, the FiLM layer of every block and the input
    # convolution's weights for the condition channel.
    film = sum(_parameters(m.film) for m in sr3.modules() if getattr(m, "film", None) is not None)
    condition_weights = unet.base_channels * 3 * 3
    assert _parameters(large) == (_parameters(sr3) - _parameters(sr3.noise_mlp) - film
                                  - condition_weights)
    assert not any(getattr(m, "film", None) is not None for m in large.modules())
    assert large.backbone.input_conv.in_channels == 1
    if preset == "cpu-small":  # the benchmark's scale: 1.04 M against SR3's 1.13 M
        assert 0.9 < _parameters(large) / _parameters(sr3) < 1


def test_large_supervised_unet_trains_saves_and_reloads():
    unet = UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                      attention_resolutions=(8,), image_size=16, dropout=0.1, norm_groups=4)
    data = make_problem(8, 16, seed=1)
    baseline = make_baseline("supervised-large", unet=unet, steps=3, batch_size=4,
                             ema_decay=0.9).fit(data)
    assert baseline.model.config == matched_backbone_config(unet)
    assert baseline.parameter_count() == _parameters(PostProcessUNet(matched_backbone_config(unet)))
    out = baseline.denoise(data.noisy)
    assert out.shape == data.noisy.shape and out.dtype == data.noisy.dtype
    again = make_baseline("supervised-large").load_state(baseline.state())
    torch.testing.assert_close(again.denoise(data.noisy), out, rtol=0, atol=0)
    assert again.recipe == baseline.recipe
    with pytest.raises(CryodiffError, match="not both"):
        make_baseline("supervised-large", unet=unet, config=SMALL)


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


@pytest.mark.parametrize("name", ["supervised", "noise2noise", "supervised-l1"])
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
