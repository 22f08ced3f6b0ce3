"""``cryodiff project``: RELION's projections from the command line, CTF, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryodiff.cli import main
from cryodiff.ctf import apply_ctf, ctf_2d
from cryodiff.geometry import euler_to_matrix
from cryodiff.io.mrc import read_stack, stack_info, write_map
from cryodiff.io.star import particles_from_arrays, write_particles
from cryodiff.projection import project, relion_shifts_px


def _standardised_errors(ours: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    ours, reference = ours.double(), reference.double()
    ours = (ours - ours.mean()) / ours.std()
    reference = (reference - reference.mean()) / reference.std()
    return (ours - reference).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)


@pytest.mark.reference
@pytest.mark.filterwarnings("ignore:.*no pixel size")
@pytest.mark.parametrize("name,volume,extra", [
    ("rln_proj_64_shifted", "ribosome70S_64_fourier_cropped.mrc", []),
    ("rln_proj_65_shifted", "ribosome70S_65.mrc", ["--relion-odd-box"]),
])
def test_reproduces_relion_project(reference_data, tmp_path, name, volume, extra):
    folder = reference_data / "relion_reference"
    out = tmp_path / "proj.mrcs"
    argv = ["project", str(folder / volume), "--star", str(folder / f"{name}.star"),
            "--out", str(out), "--batch-size", "3", *extra]
    assert main(argv) == 0
    assert stack_info(out) == (4, int(name[9:11]), 1.0)
    errors = _standardised_errors(read_stack(out), read_stack(folder / f"{name}.mrcs"))
    assert errors.max() < 0.02, errors


def _write_case(tmp_path, box=24, n=5, ctf=True):
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn(box, box, box, generator=generator)
    write_map(tmp_path / "map.mrc", volume, 2.0)
    eulers = torch.rand(n, 3, generator=generator, dtype=torch.float64) * torch.tensor(
        [360.0, 180.0, 360.0], dtype=torch.float64)
    shifts_A = torch.randn(n, 2, generator=generator, dtype=torch.float64) * 3
    ctf_values = None
    if ctf:
        from cryodiff.ctf import ctf_params
        ctf_values = ctf_params(np.linspace(8000, 20000, n), np.linspace(7000, 19000, n),
                                np.linspace(0, 90, n), 300.0, 2.7, 0.1, 50.0,
                                dtype=torch.float32)
    particles = particles_from_arrays("images.mrcs", eulers.numpy(), shifts_A.numpy(),
                                      ctf_values, 2.0, box, n=n, base_dir=tmp_path)
    write_particles(tmp_path / "particles.star", particles)
    return volume, eulers, shifts_A, ctf_values


def test_ctf_and_shifts_follow_the_star(tmp_path):
    volume, eulers, shifts_A, ctf_values = _write_case(tmp_path)
    out = tmp_path / "out.mrcs"
    assert main(["project", str(tmp_path / "map.mrc"), "--star",
                 str(tmp_path / "particles.star"), "--out", str(out), "--ctf",
                 "--batch-size", "2"]) == 0
    expected = project(volume, euler_to_matrix(eulers),
                       relion_shifts_px(shifts_A, 2.0, volume.shape[-1]))
    expected = apply_ctf(expected, ctf_2d(ctf_values, volume.shape[-1], 2.0))
    assert stack_info(out) == (5, 24, 2.0)
    torch.testing.assert_close(read_stack(out), expected, atol=1e-4 * expected.abs().max(),
                               rtol=0)


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    _write_case(tmp_path, ctf=False)
    star = str(tmp_path / "particles.star")
    out = tmp_path / "out.mrcs"
    cases = [
        (["project", str(tmp_path / "missing.mrc"), "--star", star, "--out", str(out)],
         "missing.mrc"),
        (["project", str(tmp_path / "map.mrc"), "--star", star, "--out", str(out), "--ctf"],
         "CTF"),
        (["project", str(tmp_path / "map.mrc"), "--star", star, "--out", str(out),
          "--batch-size", "0"], "batch-size"),
    ]
    write_map(tmp_path / "map32.mrc", torch.zeros(32, 32, 32), 2.0)
    cases.append((["project", str(tmp_path / "map32.mrc"), "--star", star, "--out", str(out)],
                  "does not match"))
    for argv, words in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and err.startswith("cryodiff: error:")
    assert not out.exists()
