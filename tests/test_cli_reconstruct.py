"""``cryodiff reconstruct``: STAR in, maps with pixel size out, half maps, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryodiff.cli import main
from cryodiff.ctf import apply_ctf, ctf_2d, ctf_params
from cryodiff.fsc import fsc
from cryodiff.geometry import matrix_to_euler, random_rotations
from cryodiff.io.mrc import read_map, write_stack
from cryodiff.io.star import particles_from_arrays, write_particles
from cryodiff.projection import project, relion_shifts_px

PIXEL_A = 2.5


def _blobs(box: int) -> torch.Tensor:
    axis = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    centres = [(3, 0, -2), (-4, 3, 1), (0, -5, 4), (2, 4, 5)]
    return sum(torch.exp(-((x - a) ** 2 + (y - b) ** 2 + (z - c) ** 2) / 4.0)
               for a, b, c in centres)


@pytest.fixture()
def dataset(tmp_path):
    box, n = 24, 600
    volume = _blobs(box)
    gen = torch.Generator().manual_seed(0)
    rotations = random_rotations(n, gen, dtype=torch.float64)
    eulers = matrix_to_euler(rotations)
    origins_A = (torch.rand(n, 2, generator=gen, dtype=torch.float64) - 0.5) * 4 * PIXEL_A
    ctf = ctf_params(10000 + 10000 * torch.rand(n, generator=gen, dtype=torch.float64))
    from cryodiff.geometry import euler_to_matrix

    images = project(volume, euler_to_matrix(eulers).float(),
                     relion_shifts_px(origins_A, PIXEL_A, box).float())
    images = apply_ctf(images, ctf_2d(ctf, box, PIXEL_A))
    write_stack(tmp_path / "particles.mrcs", images, PIXEL_A)
    stack = particles_from_arrays("particles.mrcs", eulers, origins_A, ctf, PIXEL_A, box,
                                  base_dir=tmp_path)
    write_particles(tmp_path / "particles.star", stack)
    return tmp_path, volume


def test_reconstruct_writes_map_and_half_maps(dataset, capsys):
    folder, volume = dataset
    out = folder / "map.mrc"
    code = main(["reconstruct", str(folder / "particles.star"), "--out", str(out),
                 "--half-maps", "--batch-size", "64", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "gold-standard resolution" in printed and "Å" in printed
    reconstructed, pixel = read_map(out)
    assert pixel == pytest.approx(PIXEL_A)
    assert fsc(reconstructed, volume, PIXEL_A).fsc[1:9].min() > 0.95
    half1, _ = read_map(folder / "map_half1.mrc")
    half2, _ = read_map(folder / "map_half2.mrc")
    assert fsc(half1, half2, PIXEL_A).fsc[1:8].min() > 0.9


def test_no_ctf_flag_ignores_the_ctf(dataset):
    folder, volume = dataset
    out = folder / "plain.mrc"
    assert main(["reconstruct", str(folder / "particles.star"), "--out", str(out),
                 "--no-ctf", "--quiet"]) == 0
    reconstructed, _ = read_map(out)
    assert fsc(reconstructed, volume, PIXEL_A).fsc[1:10].min() < 0.9
    assert not (folder / "plain_half1.mrc").exists()


def test_missing_star_is_a_one_line_error(tmp_path, capsys):
    code = main(["reconstruct", str(tmp_path / "nope.star"), "--out", str(tmp_path / "m.mrc")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cryodiff: error:") and "nope.star" in err and "\n" not in err
    assert not (tmp_path / "m.mrc").exists()


def test_star_without_poses_is_refused(dataset, capsys):
    folder, _ = dataset
    stack = particles_from_arrays("particles.mrcs", None, np.zeros((600, 2)), None, PIXEL_A, 24,
                                  base_dir=folder)
    write_particles(folder / "noposes.star", stack)
    code = main(["reconstruct", str(folder / "noposes.star"), "--out", str(folder / "m.mrc")])
    assert code == 2
    assert "poses" in capsys.readouterr().err


def test_map_is_confined_to_a_soft_sphere_unless_asked_otherwise(dataset, capsys):
    from cryodiff.fourier import radius_grid
    from cryodiff.reconstruct import spherical_support

    folder, volume = dataset
    star = str(folder / "particles.star")
    assert main(["reconstruct", star, "--out", str(folder / "ball.mrc"), "--quiet"]) == 0
    assert main(["reconstruct", star, "--out", str(folder / "box.mrc"), "--quiet",
                 "--no-mask"]) == 0
    assert main(["reconstruct", star, "--out", str(folder / "r8.mrc"), "--quiet",
                 "--mask-radius", "8", "--mask-edge", "2"]) == 0
    ball, _ = read_map(folder / "ball.mrc")
    box, _ = read_map(folder / "box.mrc")
    r8, _ = read_map(folder / "r8.mrc")
    torch.testing.assert_close(ball, box * spherical_support(24), atol=1e-6, rtol=1e-5)
    corners = radius_grid(24, 3) >= 12
    assert float(ball[corners].abs().max()) < 1e-6 < float(box[corners].abs().max())
    assert float(r8[radius_grid(24, 3) >= 10].abs().max()) < 1e-6
    support = spherical_support(24, 6.0, 3.0)
    from cryodiff.io.mrc import write_map

    write_map(folder / "support.mrc", support, PIXEL_A)
    assert main(["reconstruct", star, "--out", str(folder / "own.mrc"), "--quiet",
                 "--mask", str(folder / "support.mrc"), "--half-maps"]) == 0
    own, _ = read_map(folder / "own.mrc")
    torch.testing.assert_close(own, box * support, atol=1e-6, rtol=1e-5)
    assert "mask-corrected" in capsys.readouterr().out
    half1, _ = read_map(folder / "own_half1.mrc")
    assert float(half1[corners].abs().max()) > 0  # half maps stay unmasked


def test_support_map_of_another_box_is_refused(dataset, capsys):
    from cryodiff.io.mrc import write_map

    folder, _ = dataset
    write_map(folder / "small.mrc", torch.ones(20, 20, 20), PIXEL_A)
    code = main(["reconstruct", str(folder / "particles.star"), "--out",
                 str(folder / "m.mrc"), "--mask", str(folder / "small.mrc")])
    assert code == 2
    assert "small.mrc" in capsys.readouterr().err
    assert not (folder / "m.mrc").exists()
