"""The dihedral self-ensemble: exact inverses, the 8 distinct views, an equivariant result."""

from __future__ import annotations

import pytest
import torch

from cryodiff.self_ensemble import DIHEDRAL_GROUP, dihedral, self_ensemble, undo_dihedral


SHAPES = pytest.mark.parametrize("size, dtype", [(7, torch.float32), (8, torch.float32),
                                                 (8, torch.float64)])


def _images(n=3, size=8, seed=0, dtype=torch.float32):
    return torch.randn(n, size, size, generator=torch.Generator().manual_seed(seed),
                       dtype=dtype)


@SHAPES
def test_each_view_is_undone_exactly_and_the_eight_views_differ(size, dtype):
    x = _images(size=size, dtype=dtype)
    views = [dihedral(x, flip, turns) for flip, turns in DIHEDRAL_GROUP]
    for (flip, turns), view in zip(DIHEDRAL_GROUP, views):
        torch.testing.assert_close(undo_dihedral(view, flip, turns), x, rtol=0, atol=0)
    assert len(DIHEDRAL_GROUP) == 8
    flat = torch.stack([v.flatten() for v in views])
    assert len(torch.unique(flat, dim=0)) == 8


def test_an_equivariant_denoiser_is_unchanged():
    """A pointwise map commutes with every flip and rotation: the ensemble returns it."""
    x = _images()
    torch.testing.assert_close(self_ensemble(torch.tanh, x), torch.tanh(x))


@SHAPES
def test_the_ensemble_of_a_non_equivariant_map_is_equivariant(size, dtype):
    """A one-pixel shift is not equivariant; averaged over the group it becomes so, and it
    equals the mean of the shift conjugated by the 8 views (in the input's dtype)."""
    x = _images(seed=1, size=size, dtype=dtype)

    def shift(images):
        return torch.roll(images, 1, dims=-1)

    ensemble = self_ensemble(shift, x)
    assert ensemble.dtype == dtype and not torch.allclose(ensemble, shift(x))
    expected = torch.stack([undo_dihedral(shift(dihedral(x, f, k)), f, k)
                            for f, k in DIHEDRAL_GROUP]).mean(0)
    torch.testing.assert_close(ensemble, expected)
    for flip, turns in DIHEDRAL_GROUP:
        torch.testing.assert_close(self_ensemble(shift, dihedral(x, flip, turns)),
                                   dihedral(ensemble, flip, turns), atol=1e-6, rtol=1e-6)


def test_several_inputs_are_transformed_alike():
    """With two aligned stacks (a sample and its particle) each view sees both in the same
    orientation: a map that needs them aligned gives the aligned answer."""
    a, b = _images(seed=2), _images(seed=3)
    seen = []

    def combine(sample, particle):
        seen.append((sample, particle))
        return sample * particle

    torch.testing.assert_close(self_ensemble(combine, a, b), a * b)
    assert len(seen) == 8
    for (flip, turns), (sample, particle) in zip(DIHEDRAL_GROUP, seen):
        torch.testing.assert_close(sample, dihedral(a, flip, turns))
        torch.testing.assert_close(particle, dihedral(b, flip, turns))
