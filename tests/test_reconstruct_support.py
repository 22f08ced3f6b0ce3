"""The real-space support of a reconstruction: default sphere, full map only, noise removed."""

from __future__ import annotations

import pytest
import torch

from cryodiff.fourier import radius_grid
from cryodiff.fsc import fsc
from cryodiff.masks import default_support_px
from cryodiff.reconstruct import reconstruct, spherical_support
from tests.test_reconstruct import _projections, make_blobs


@pytest.mark.parametrize("box", [24, 25, 64])
def test_default_support_is_a_soft_ball_ending_on_the_inscribed_sphere(box):
    radius, edge = default_support_px(box)
    assert radius + edge == pytest.approx(box / 2)
    support = spherical_support(box)
    r = radius_grid(box, 3)
    assert support.shape == (box,) * 3
    assert bool((support[r <= radius] == 1).all())
    assert bool((support[r >= box / 2] < 1e-6).all())
    assert 0 < float(support[(r > radius + 0.3 * edge) & (r < radius + 0.7 * edge)].mean()) < 1


def test_support_multiplies_the_full_map_and_leaves_the_half_maps_alone():
    volume = make_blobs(20, seed=2)
    images, rotations, _ = _projections(volume, 400, seed=7)
    support = spherical_support(20)
    plain = reconstruct(images, rotations, 1.5, half_maps=True, seed=1)
    masked = reconstruct(images, rotations, 1.5, half_maps=True, seed=1, support=support)
    torch.testing.assert_close(masked.volume, plain.volume * support)
    torch.testing.assert_close(masked.half1, plain.half1)
    torch.testing.assert_close(masked.half2, plain.half2)
    assert masked.support is not None and plain.support is None
    corrected = masked.masked_half_map_fsc()
    assert corrected.corrected.fsc[1:6].min() > 0.9
    with pytest.raises(ValueError, match="support"):
        plain.masked_half_map_fsc()


def test_support_removes_noise_outside_the_particle():
    # Blobs within radius box/3; noisy CTF-free projections: the corners of an unmasked map
    # hold only noise, so confining the map raises its unmasked FSC against the truth.
    box = 32
    volume = make_blobs(box, seed=4)
    images, rotations, _ = _projections(volume, 1500, seed=5)
    gen = torch.Generator().manual_seed(6)
    images = images + 2.0 * images.std() * torch.randn(images.shape, generator=gen)
    plain = reconstruct(images, rotations, 2.0).volume
    confined = reconstruct(images, rotations, 2.0, support=spherical_support(box)).volume
    r = radius_grid(box, 3)
    assert float(confined[r >= box / 2].abs().max()) < 1e-6
    mine, theirs = fsc(confined, volume, 2.0), fsc(plain, volume, 2.0)
    assert (mine.fsc[1:] >= theirs.fsc[1:] - 5e-3).all()  # the soft edge costs ≤ 0.005 at low k
    assert mine.fsc[4:].mean() > theirs.fsc[4:].mean() + 0.02
    assert mine.resolution_0143_A <= theirs.resolution_0143_A
