"""Loading the images a STAR points to: order, batches, stack checks, bad stacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryodiff.errors import CryodiffError
from cryodiff.io.images import check_stacks, iter_image_batches, load_images
from cryodiff.io.mrc import read_stack, write_stack
from cryodiff.io.star import particles_from_arrays, read_particles, write_particles

# README of ../shared/data: particles, box, pixel size (Å)
REAL = {"empiar_10076_7": (7, 320, 1.31), "relion31": (5, 256, 2.806), "sample": (17, 200, 1.4)}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_particles_load(reference_data, name):
    n, box, pixel_size_A = REAL[name]
    particles = read_particles(reference_data / "real_particles" / f"{name}.star")
    assert (len(particles), particles.box) == (n, box)
    np.testing.assert_allclose(particles.pixel_size_A, pixel_size_A)
    assert check_stacks(particles) == []
    images = load_images(particles)
    assert images.shape == (n, box, box) and images.dtype == torch.float32
    stack = read_stack(reference_data / "real_particles" / f"{name}.mrcs")
    order = torch.from_numpy(particles.image_indices)
    assert torch.equal(images, stack[order])
    assert images.std() > 0


def _two_stacks(tmp_path, box=9):
    """Six particles interleaved over two stacks, written as a STAR file."""
    a = torch.randn(4, box, box)
    b = torch.randn(3, box, box)
    write_stack(tmp_path / "a.mrcs", a, 1.0)
    (tmp_path / "sub").mkdir()
    write_stack(tmp_path / "sub" / "b.mrcs", b, 1.0)
    names = ["2@a.mrcs", "1@sub/b.mrcs", "4@a.mrcs", "3@sub/b.mrcs", "1@a.mrcs", "2@sub/b.mrcs"]
    expected = torch.stack([a[1], b[0], a[3], b[2], a[0], b[1]])
    particles = particles_from_arrays(names, np.zeros((6, 3)), None, None, 1.0, box,
                                      base_dir=tmp_path)
    write_particles(tmp_path / "p.star", particles)
    return read_particles(tmp_path / "p.star"), expected


def test_interleaved_stacks_keep_star_order(tmp_path):
    particles, expected = _two_stacks(tmp_path)
    assert torch.equal(load_images(particles), expected)
    assert torch.equal(load_images(particles, [5, 0, 5]), expected[[5, 0, 5]])
    assert torch.equal(load_images(particles.subset([3, 2])), expected[[3, 2]])


@pytest.mark.parametrize("batch_size", [1, 4, 6, 10])
def test_batches_cover_everything_in_order(tmp_path, batch_size):
    particles, expected = _two_stacks(tmp_path)
    batches = list(iter_image_batches(particles, batch_size))
    assert all(len(idx) <= batch_size for idx, _ in batches)
    np.testing.assert_array_equal(np.concatenate([idx for idx, _ in batches]), np.arange(6))
    assert torch.equal(torch.cat([images for _, images in batches]), expected)


def test_missing_stack_is_an_error_only_when_loading(tmp_path):
    particles, _ = _two_stacks(tmp_path)
    (tmp_path / "sub" / "b.mrcs").unlink()
    assert check_stacks(particles) == [tmp_path / "sub" / "b.mrcs"]
    assert load_images(particles, [0, 2]).shape == (2, 9, 9)
    with pytest.raises(CryodiffError, match="file not found") as error:
        load_images(particles)
    assert error.value.path == str(tmp_path / "sub" / "b.mrcs")


def test_box_mismatch_and_index_past_end(tmp_path):
    write_stack(tmp_path / "s.mrcs", torch.zeros(3, 8, 8), 1.0)
    wrong_box = particles_from_arrays(tmp_path / "s.mrcs", None, None, None, 1.0, 10, n=3)
    with pytest.raises(CryodiffError, match="images are 8x8 but .* box is 10"):
        load_images(wrong_box)
    with pytest.raises(CryodiffError, match="box is 10"):
        check_stacks(wrong_box)
    too_many = particles_from_arrays(tmp_path / "s.mrcs", None, None, None, 1.0, 8, n=4)
    with pytest.raises(CryodiffError, match="image 4 requested"):
        check_stacks(too_many)
    with pytest.raises(CryodiffError, match="image 4 requested"):
        load_images(too_many, [3])
