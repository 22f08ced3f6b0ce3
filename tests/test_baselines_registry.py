import dataclasses

import pytest
import torch

from cryodiff.baselines import BASELINES, make_baseline
from cryodiff.baselines.regression import RegressionRecipe
from cryodiff.baselines.supervised import matched_backbone_config
from cryodiff.benchmark.methods import TRAINED_BASELINES, _baseline_options
from cryodiff.errors import CryodiffError
from cryodiff.training.config import get_preset, with_overrides

# Rows that reuse another baseline's class: what differs is the data the benchmark fits
# them on ("cwf-2d": CWF fitted on the 2D test images alone) or how it trains on after
# fitting (the "-ssim" rows: the SSIM stage).
ALIASES = {"cwf-2d": "cwf", "supervised-2x-ssim": "supervised-2x",
           "supervised-large-2x-ssim": "supervised-large-2x",
           "supervised-large-direct-2x-ssim": "supervised-large-direct-2x"}


@pytest.mark.parametrize("name", list(BASELINES))
def test_every_baseline_is_constructible_and_declares_its_target(name):
    # Construction imports no optional peer: they are needed only when fitting/denoising.
    baseline = make_baseline(name)
    assert baseline.name == ALIASES.get(name, name)
    assert baseline.target in ("clean_ctf", "clean")


def test_unknown_baseline_and_target_are_user_errors():
    with pytest.raises(CryodiffError, match="unknown baseline"):
        make_baseline("median")
    with pytest.raises(CryodiffError, match="unknown denoising target"):
        make_baseline("lowpass", target="noisy")


@pytest.mark.parametrize("name", TRAINED_BASELINES)
def test_trained_baselines_get_the_diffusion_models_recipe(name):
    train = with_overrides(get_preset("cpu-small"), seed=2, box=48)
    baseline = make_baseline(name, **_baseline_options(name, train, torch.device("cpu")))
    loss = "l1" if name == "supervised-l1" else "l2"
    # supervised-2x: twice the steps, what SR3 and the sr3-pm post-processor train together
    # (and supervised-large-2x: SR3's size, SR3's and the x̂₀ fine-tuning's steps)
    budget = (dataclasses.replace(train, steps=2 * train.steps)
              if name.removesuffix("-ssim").endswith("-2x") else train)
    assert baseline.recipe == RegressionRecipe.from_train_config(budget, loss)
    assert baseline.recipe.seed == 2 and baseline.recipe.ema_decay == train.ema_decay
    network = baseline.config or baseline.default_config(train.box)
    expected_shape = (matched_backbone_config(train.model)
                      if name.startswith("supervised-large")
                      else train.postprocess)
    assert network.base_channels == expected_shape.base_channels
    assert network.channel_mults == expected_shape.channel_mults
    assert network.condition_channels == 0 and network.image_size == 48


def test_trained_baseline_note_states_the_recipe_and_size():
    from baselines_synthetic import make_problem
    from cryodiff.benchmark.methods import _baseline_note
    from cryodiff.models.unet import UNetConfig

    unet = UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                      attention_resolutions=(), image_size=16, norm_groups=4)
    recipe = RegressionRecipe(steps=2, batch_size=4, warmup_steps=5, grad_clip=1.0,
                              ema_decay=0.9)
    baseline = make_baseline("supervised-large", recipe=recipe, unet=unet).fit(make_problem(4, 16))
    note = _baseline_note("supervised-large", baseline)
    millions = sum(p.numel() for p in baseline.model.parameters()) / 1e6
    assert note.startswith(f"AdamW + warm-up + clip + EMA, L2, fp32, {millions:.2f} M parameters, "
                           "2 steps × 4; final training loss ")


def test_the_direct_network_is_the_residual_one_less_its_input():
    from cryodiff.models.postprocess import DirectUNet, PostProcessConfig, PostProcessUNet

    config = PostProcessConfig(condition_channels=0, base_channels=8, channel_mults=(1, 2),
                               image_size=16, norm_groups=4)
    torch.manual_seed(0)
    residual = PostProcessUNet(config).eval()
    direct = DirectUNet(config).eval()
    direct.load_state_dict(residual.state_dict())
    images = torch.randn(2, 1, 16, 16)
    assert torch.allclose(direct(images), residual(images) - images, atol=1e-6)
    assert not torch.allclose(direct(images), residual(images), atol=1e-2)


def test_the_direct_peer_trains_saves_and_reloads_as_a_direct_network():
    from baselines_synthetic import make_problem
    from cryodiff.models.postprocess import DirectUNet
    from cryodiff.models.unet import UNetConfig

    unet = UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                      attention_resolutions=(), image_size=16, norm_groups=4)
    problem = make_problem(4, 16)
    recipe = RegressionRecipe(steps=2, batch_size=4)
    fitted = make_baseline("supervised-large-direct-2x", recipe=recipe, unet=unet).fit(problem)
    assert type(fitted.model) is DirectUNet
    assert type(make_baseline("supervised-large-2x", recipe=recipe, unet=unet).fit(
        problem).model) is not DirectUNet
    reloaded = make_baseline("supervised-large-direct-2x").load_state(fitted.state())
    assert type(reloaded.model) is DirectUNet
    assert torch.equal(reloaded.denoise(problem.noisy), fitted.denoise(problem.noisy))
