"""Fourier-slice projector: RELION's own projections, analytic Gaussians, shifts, symmetry."""

from __future__ import annotations

import math

import pytest
import torch

from cryodiff.fourier import coordinate_grid, fft2_centered, shift_images
from cryodiff.geometry import euler_to_matrix, random_rotations
from cryodiff.projection import (prepare_volume, project, project_fourier, relion_shifts_px)

RELION_STACKS = {  # stack -> map it projects
    "rln_proj_65": "ribosome70S_65.mrc",
    "rln_proj_65_centered": "ribosome70S_65.mrc",
    "rln_proj_65_shifted": "ribosome70S_65.mrc",
    "rln_proj_64_centered": "ribosome70S_64_fourier_cropped.mrc",
    "rln_proj_64_shifted": "ribosome70S_64_fourier_cropped.mrc",
}


def _standardise_stack(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / x.std()


def _standardise_images(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean((-1, -2), keepdim=True)) / x.std((-1, -2), keepdim=True)


def _relative_errors(ours: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return (ours - reference).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)


def _relion_case(reference_data, name, odd_box_offset=True, dtype=torch.float32):
    from cryodiff.io.mrc import read_map, read_stack
    from cryodiff.io.star import read_particles

    folder = reference_data / "relion_reference"
    particles = read_particles(folder / f"{name}.star")
    volume, _ = read_map(folder / RELION_STACKS[name])
    rotations = euler_to_matrix(torch.as_tensor(particles.eulers_deg, dtype=torch.float64))
    shifts = relion_shifts_px(torch.as_tensor(particles.shifts_A, dtype=torch.float64),
                              torch.tensor(particles.pixel_size_A), particles.box,
                              odd_box_offset=odd_box_offset)
    ours = project(volume.to(dtype), rotations, shifts).double()
    return ours, read_stack(folder / f"{name}.mrcs").double()


@pytest.mark.reference
@pytest.mark.filterwarnings("ignore:.*no pixel size")
@pytest.mark.parametrize("name,dtype", [(name, torch.float32) for name in RELION_STACKS]
                         + [("rln_proj_65_shifted", torch.float64),
                            ("rln_proj_64_shifted", torch.float64)])
def test_matches_relion_project(reference_data, name, dtype):
    ours, relion = _relion_case(reference_data, name, dtype=dtype)
    per_stack = _relative_errors(_standardise_stack(ours), _standardise_stack(relion))
    per_image = _relative_errors(_standardise_images(ours), _standardise_images(relion))
    # Same algorithm as relion_project: measured ≤ 0.06 %; the project's bar is 2 %.
    assert per_stack.max() < 0.005, per_stack
    assert per_image.max() < 0.005, per_image


@pytest.mark.reference
@pytest.mark.filterwarnings("ignore:.*no pixel size")
def test_relion_odd_boxes_are_one_pixel_off_centre(reference_data):
    # relion_project centres odd images at L//2 + 1: without that pixel the match is lost,
    # while cryodiff's own convention (centre L//2) is fixed by the Gaussian test below.
    ours, relion = _relion_case(reference_data, "rln_proj_65_shifted", odd_box_offset=False)
    assert _relative_errors(_standardise_stack(ours), _standardise_stack(relion)).min() > 0.2


def _gaussian_map(box: int, centre, sigma: float, dtype=torch.float64) -> torch.Tensor:
    r = coordinate_grid(box, 3, dtype=dtype) - torch.as_tensor(centre, dtype=dtype)
    return torch.exp(-(r * r).sum(-1) / (2 * sigma ** 2))


def _gaussian_image(box: int, centre_xy, sigma: float, dtype=torch.float64) -> torch.Tensor:
    r = coordinate_grid(box, 2, dtype=dtype) - torch.as_tensor(centre_xy, dtype=dtype)
    return math.sqrt(2 * math.pi) * sigma * torch.exp(-(r * r).sum(-1) / (2 * sigma ** 2))


@pytest.mark.parametrize("box", [48, 49])
def test_gaussian_blob_projects_to_analytic_gaussian(box):
    # A blob at r0 lands at (A r0)_xy with the line integral sqrt(2π)σ·exp(-ρ²/2σ²). The
    # residual (≤ 1.5 % here, worst at the identity pose, where no interpolation offsets it)
    # is the gridding pre-correction's gain 1/sinc²(r / 2L) that RELION's recipe has too.
    sigma, centre = 2.0, torch.tensor([4.0, -3.0, 2.0], dtype=torch.float64)
    volume = _gaussian_map(box, centre, sigma)
    rotations = euler_to_matrix(torch.tensor([[0.0, 0.0, 0.0], [30.0, 70.0, -20.0],
                                              [200.0, 135.0, 80.0]], dtype=torch.float64))
    images = project(volume, rotations)
    for image, a in zip(images, rotations):
        expected = _gaussian_image(box, (a @ centre)[:2], sigma)
        assert _relative_errors(image[None], expected[None]).item() < 0.02
        assert image.flatten().argmax().item() == expected.flatten().argmax().item()


@pytest.mark.parametrize("box", [32, 33])
def test_centred_blob_peaks_at_box_origin(box):
    image = project(_gaussian_map(box, (0.0, 0.0, 0.0), 1.5),
                    euler_to_matrix(torch.tensor([[40.0, 60.0, 10.0]], dtype=torch.float64)))[0]
    assert divmod(image.argmax().item(), box) == (box // 2, box // 2)


@pytest.mark.parametrize("box", [32, 33])
def test_shifting_projection_equals_projecting_with_shift(box):
    volume = _gaussian_map(box, (3.0, -2.0, 1.0), 2.0) + 0.5 * _gaussian_map(box, (-4, 3, 0), 1.5)
    rotations = random_rotations(4, torch.Generator().manual_seed(0), dtype=torch.float64)
    shifts = torch.tensor([[0.5, -1.25], [3.0, 2.0], [-2.7, 0.3], [0.0, 0.0]], dtype=torch.float64)
    shifted = project(volume, rotations, shifts)
    expected = shift_images(project(volume, rotations), shifts)
    torch.testing.assert_close(shifted, expected, atol=1e-6 * expected.abs().max().item(), rtol=0)


def _rot90_about_origin(x: torch.Tensor, dims=(-2, -1)) -> torch.Tensor:
    """Turn ``(..., y, x)`` content by +90° ((x, y) → (−y, x)) about index L//2."""
    box = x.shape[-1]
    flipped = torch.flip(x.transpose(*dims), dims=(dims[-1],))  # new[y, x] = old[x, -y]
    return torch.roll(flipped, shifts=1 - box % 2, dims=dims[-1])


@pytest.mark.parametrize("box", [32, 33])
def test_map_rotated_about_z_gives_rotated_image(box):
    volume = (_gaussian_map(box, (5.0, -2.0, 3.0), 2.0) + _gaussian_map(box, (-3, 4, -1), 1.5)
              + 0.5 * _gaussian_map(box, (0, -6, 2), 2.5))
    rotated_volume = _rot90_about_origin(volume)
    rotations = euler_to_matrix(torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(project(rotated_volume, rotations),
                               _rot90_about_origin(project(volume, rotations)),
                               atol=1e-9, rtol=0)
    # In-plane: psi + 90 turns the image by -90 degrees (RELION's R_z(psi) is passive).
    pose = torch.tensor([[20.0, 50.0, 10.0], [20.0, 50.0, 100.0]], dtype=torch.float64)
    first, second = project(volume, euler_to_matrix(pose))
    torch.testing.assert_close(_rot90_about_origin(second), first, atol=1e-6, rtol=0)


@pytest.mark.parametrize("box", [16, 17])
def test_dtypes_prepared_volume_and_chunks(box):
    volume = torch.randn(box, box, box, generator=torch.Generator().manual_seed(0))
    rotations = random_rotations(7, torch.Generator().manual_seed(1))
    shifts = torch.randn(7, 2, generator=torch.Generator().manual_seed(2))
    single = project(volume, rotations, shifts)
    double = project(volume.double(), rotations, shifts)
    assert single.dtype == torch.float32 and double.dtype == torch.float64
    assert single.shape == (7, box, box)
    torch.testing.assert_close(single.double(), double, atol=1e-4 * double.abs().max().item(),
                               rtol=0)
    prepared = prepare_volume(volume.double())
    torch.testing.assert_close(project(prepared, rotations, shifts, chunk_size=3), double)
    spectra = project_fourier(prepared, rotations, shifts)
    assert spectra.is_complex()
    torch.testing.assert_close(spectra, fft2_centered(double))


def test_identity_projection_is_line_integral():
    # Unit-sum projector: for a smooth centred map the image is volume.sum(z) (up to the
    # gridding pre-correction, which is ≈ 1 near the centre).
    volume = _gaussian_map(33, (1.0, -1.0, 0.0), 2.0)
    image = project(volume, torch.eye(3, dtype=torch.float64)[None])[0]
    expected = volume.sum(0)
    assert _relative_errors(image[None], expected[None]).item() < 0.015


def test_rejects_non_cubic_volume():
    with pytest.raises(ValueError, match="cubic"):
        prepare_volume(torch.zeros(8, 8, 9))
