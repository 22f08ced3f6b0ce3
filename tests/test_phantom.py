"""The built-in phantom: seeded, any box, positive, asymmetric, one molecule at every sampling."""

from __future__ import annotations

import pytest
import torch

from cryodiff.fourier import fourier_resize, radius_grid
from cryodiff.phantom import FIELD_OF_VIEW_A, make_phantom, phantom_pixel_size_A


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


@pytest.fixture(scope="module")
def phantom48() -> torch.Tensor:
    return make_phantom(48)


@pytest.fixture(scope="module")
def belted48() -> torch.Tensor:
    return make_phantom(48, belt=True)


@pytest.mark.parametrize("box", [33, 48])
def test_shape_dtype_and_positive_density(box, phantom48):
    volume = phantom48 if box == 48 else make_phantom(box)
    assert volume.shape == (box, box, box) and volume.dtype == torch.float32
    assert volume.min() >= 0 and volume.max() > 0.5


def test_same_seed_same_map_other_seed_other_map(phantom48):
    assert torch.equal(make_phantom(48, seed=0), phantom48)
    assert _corr(make_phantom(48, seed=1), phantom48) < 0.7


def test_centred_and_about_sixty_percent_of_the_box(phantom48):
    box = 48
    radius = radius_grid(box, 3)
    mass = phantom48.sum()
    coords = torch.arange(box, dtype=torch.float32) - box // 2
    centre_of_mass = [(phantom48.sum(dim=(1, 2)) * coords).sum() / mass,
                      (phantom48.sum(dim=(0, 2)) * coords).sum() / mass,
                      (phantom48.sum(dim=(0, 1)) * coords).sum() / mass]
    assert max(abs(c) for c in centre_of_mass) < 1.0  # pixels
    # 99 % of the mass lies within 0.2-0.4 of the box: a compact particle that fits the box.
    inside = [phantom48[radius <= f * box].sum() / mass for f in (0.2, 0.4)]
    assert inside[0] < 0.99 < inside[1]


def test_not_symmetric(phantom48):
    for dims in [(0,), (1,), (2,), (0, 1), (1, 2)]:
        assert _corr(phantom48, phantom48.flip(dims)) < 0.8
    assert _corr(phantom48, phantom48.transpose(1, 2)) < 0.8


def test_same_molecule_at_every_box(phantom48):
    assert phantom_pixel_size_A(128) == pytest.approx(1.5)
    assert phantom_pixel_size_A(48) * 48 == pytest.approx(FIELD_OF_VIEW_A)
    # Band-limited: downsampling the finer rendering gives the coarser one.
    assert _corr(fourier_resize(make_phantom(65), 48, 3), phantom48) > 0.95
    assert _corr(fourier_resize(phantom48, 32, 3), make_phantom(32)) > 0.95


def test_has_secondary_structure_detail(phantom48):
    """Rich enough to denoise: helix-packing (~10 Å) detail a smooth globule lacks.

    A super-Gaussian globule of the same size has a power ratio of about 6e-6 here.
    """
    box = 48
    spectrum = torch.fft.fftshift(torch.fft.fftn(phantom48)).abs().square()
    shell = radius_grid(box, 3)
    frequency_A = shell / (box * phantom_pixel_size_A(box))
    high = spectrum[(frequency_A > 1 / 12) & (frequency_A < 1 / 9)].mean()
    low = spectrum[(frequency_A > 1 / 60) & (frequency_A < 1 / 40)].mean()
    assert high / low > 1e-4


def test_belt_adds_an_annulus_around_the_equator(phantom48, belted48):
    box = 48
    extra = belted48 - phantom48
    assert extra.min() > -1e-3 * phantom48.max() and extra.sum() > 0.2 * phantom48.sum()
    coords = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(coords, coords, coords, indexing="ij")
    ring = (x**2 + y**2).sqrt() * phantom_pixel_size_A(box)
    belt_share = extra[(z.abs() * phantom_pixel_size_A(box) < 25) & (ring > 35)].sum() / extra.sum()
    assert belt_share > 0.9


def test_box_out_of_range():
    with pytest.raises(ValueError):
        make_phantom(16)
