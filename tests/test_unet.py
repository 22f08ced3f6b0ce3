"""The SR3 U-Net: shapes for odd/even sizes, noise-level conditioning, config round trip,
and that it learns a tiny denoising task."""

from __future__ import annotations

import json

import pytest
import torch

from cryodiff.diffusion import diffusion_loss, linear_schedule
from cryodiff.errors import CryodiffError
from cryodiff.models.layers import crop_padding, group_norm, pad_to_multiple
from cryodiff.models.unet import SR3UNet, UNetConfig

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1,
                  attention_resolutions=(8,), image_size=32, norm_groups=4, dropout=0.0)


@pytest.mark.parametrize("size", [31, 32, 33, 48, 7])
def test_shapes_any_size(size):
    torch.manual_seed(0)
    model = SR3UNet(TINY)
    y_t = torch.randn(2, 1, size, size)
    out = model(y_t, torch.randn_like(y_t), torch.tensor([0.3, 0.9]))
    assert out.shape == y_t.shape
    assert torch.isfinite(out).all()


def test_padding_round_trip_and_group_norm_clamp():
    x = torch.randn(2, 3, 33, 30)
    padded, pads = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (40, 32)
    assert torch.equal(crop_padding(padded, pads), x)
    assert group_norm(24, 32).num_groups == 24
    assert group_norm(48, 32).num_groups == 24


def test_attention_levels_follow_resolutions():
    assert UNetConfig().attention_levels() == (2,)  # 64 → 64, 32, 16, 8
    assert TINY.attention_levels() == (2,)
    n_attention = sum(type(m).__name__ == "SelfAttention" for m in SR3UNet(TINY).modules())
    # level 2: one down block + two up blocks, plus the middle block
    assert n_attention == 4


def test_noise_level_changes_output():
    torch.manual_seed(0)
    model = SR3UNet(TINY).eval()
    y_t = torch.randn(1, 1, 16, 16)
    cond = torch.randn_like(y_t)
    low = model(y_t, cond, torch.tensor([0.1]))
    high = model(y_t, cond, torch.tensor([0.99]))
    assert (low - high).abs().max() > 1e-3
    # the batch elements are conditioned independently on their own level
    both = model(y_t.repeat(2, 1, 1, 1), cond.repeat(2, 1, 1, 1), torch.tensor([0.1, 0.99]))
    torch.testing.assert_close(both[0], low[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(both[1], high[0], rtol=1e-4, atol=1e-5)


def test_condition_changes_output():
    torch.manual_seed(0)
    model = SR3UNet(TINY).eval()
    y_t = torch.randn(1, 1, 16, 16)
    level = torch.tensor([0.5])
    a = model(y_t, torch.zeros_like(y_t), level)
    b = model(y_t, torch.randn_like(y_t), level)
    assert (a - b).abs().max() > 1e-3


def test_config_json_round_trip():
    config = UNetConfig(channel_mults=(1, 2), attention_resolutions=(8, 4), noise_embedding_dim=48)
    restored = UNetConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    with pytest.raises(CryodiffError, match="bogus"):
        UNetConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_loss_falls_on_tiny_problem():
    """A tiny U-Net learns to predict ε for smooth blobs conditioned on their noisy copies,
    ending well below the trivial predictor ε̂ = y_t (which is right only at high noise)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    size = 12
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    centres = torch.rand(64, 2, generator=gen) * size / 2 + size / 4
    clean = torch.exp(-((xx - centres[:, 0, None, None]) ** 2
                        + (yy - centres[:, 1, None, None]) ** 2) / 8.0)[:, None]
    clean = (clean - clean.mean()) / clean.std()
    noisy = clean + 0.5 * torch.randn(clean.shape, generator=gen)
    schedule = linear_schedule(200, 1e-4, 0.05)
    trivial = sum(diffusion_loss(lambda y_t, cond, level: y_t, clean, noisy, schedule, "l2",
                                 generator=gen).item() for _ in range(10)) / 10

    model = SR3UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                               attention_resolutions=(), norm_groups=4, dropout=0.0))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        batch = torch.randint(0, clean.shape[0], (16,), generator=gen)
        loss = diffusion_loss(model, clean[batch], noisy[batch], schedule, "l2", generator=gen)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.3 * first, (first, last)
    assert last < 0.5 * trivial, (trivial, last)
