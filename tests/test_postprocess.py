"""The post-processing U-Net: shapes, residual form, unconditional variant, learning."""

from __future__ import annotations

import json

import pytest
import torch

from cryodiff.models.postprocess import PostProcessConfig, PostProcessUNet

TINY = PostProcessConfig(base_channels=8, channel_mults=(1, 2), norm_groups=4)


@pytest.mark.parametrize("size", [31, 32, 33, 48])
def test_shapes_any_size(size):
    model = PostProcessUNet(TINY)
    sample = torch.randn(3, 1, size, size)
    assert model(sample, torch.randn_like(sample)).shape == sample.shape


def test_default_config_shapes():
    sample = torch.randn(1, 1, 33, 33)
    assert PostProcessUNet()(sample, sample).shape == sample.shape


def test_output_is_sample_plus_correction():
    model = PostProcessUNet(TINY)
    torch.nn.init.zeros_(model.backbone.output[-1].weight)
    torch.nn.init.zeros_(model.backbone.output[-1].bias)
    sample = torch.randn(2, 1, 20, 20)
    torch.testing.assert_close(model(sample, torch.randn_like(sample)), sample)


def test_unconditional_variant_and_argument_check():
    model = PostProcessUNet(PostProcessConfig(condition_channels=0, base_channels=8,
                                              channel_mults=(1, 2), norm_groups=4))
    noisy = torch.randn(2, 1, 17, 17)
    assert model(noisy).shape == noisy.shape
    with pytest.raises(ValueError):
        model(noisy, noisy)
    with pytest.raises(ValueError):
        PostProcessUNet(TINY)(noisy)


def test_config_json_round_trip():
    restored = PostProcessConfig.from_dict(json.loads(json.dumps(TINY.to_dict())))
    assert restored == TINY


def test_learns_to_remove_a_bias():
    """The backbone learns a simple correction (a constant offset of the sample)."""
    torch.manual_seed(0)
    model = PostProcessUNet(TINY)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    target = torch.randn(8, 1, 12, 12)
    sample = target + 0.5
    losses = []
    for _ in range(40):
        loss = (model(sample, target) - target).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
