"""RELION STAR particle files: every reference format reads; written files round-trip and
are read by ASPIRE; bad tables raise CryodiffError."""

from __future__ import annotations

import warnings
from dataclasses import fields

import numpy as np
import pytest
import torch

from cryodiff.ctf import CtfParams
from cryodiff.errors import CryodiffError
from cryodiff.io.mrc import write_stack
from cryodiff.io.star import ParticleStack, particles_from_arrays, read_particles, write_particles

# file -> (particles, box or None when neither the STAR nor an existing stack says, pixel sizes)
REFERENCE_STARS = {
    "star_formats/sample_particles_relion30.star": (17, None, [5.0e4 / 37369.207031]),
    "star_formats/sample_particles_relion31.star": (17, None, [1.4]),
    "star_formats/relion31.star": (5, 256, [2.806]),
    "star_formats/relion31_6opticsgroups.star": (139, 196, [1.24, 1.25]),
    "star_formats/relion5.star": (17, 448, [0.89]),
    "real_particles/empiar_10076_7.star": (7, 320, [1.31]),
    "real_particles/relion31.star": (5, 256, [2.806]),
    "real_particles/sample.star": (17, 200, [1.4]),
    "relion_reference/rln_proj_64_centered.star": (4, 64, [1.0]),
    "relion_reference/rln_proj_64_shifted.star": (4, 64, [1.0]),
    "relion_reference/rln_proj_65.star": (5, 65, [1.0]),
    "relion_reference/rln_proj_65_centered.star": (4, 65, [1.0]),
    "relion_reference/rln_proj_65_shifted.star": (4, 65, [1.0]),
}


def _read(path) -> ParticleStack:
    with warnings.catch_warnings():
        # rln_proj_65 records no pixel size anywhere; the 1 Å fallback warns, as it should.
        warnings.simplefilter("ignore", RuntimeWarning)
        return read_particles(path)


# Numbers go through text: some pandas/NumPy versions parse the last digit of a 17-digit
# float one unit in the last place off (seen on a GPU machine with pandas 2, NumPy 2.5).
TEXT_RTOL = 1e-14


def assert_same_particles(a: ParticleStack, b: ParticleStack) -> None:
    assert len(a) == len(b) and a.box == b.box
    assert a.image_paths == b.image_paths
    np.testing.assert_array_equal(a.image_indices, b.image_indices)
    np.testing.assert_allclose(a.pixel_size_A, b.pixel_size_A, rtol=TEXT_RTOL, atol=0)
    np.testing.assert_allclose(a.shifts_A, b.shifts_A, rtol=TEXT_RTOL, atol=1e-300)
    assert (a.eulers_deg is None) == (b.eulers_deg is None)
    if a.eulers_deg is not None:
        np.testing.assert_allclose(a.eulers_deg, b.eulers_deg, rtol=TEXT_RTOL, atol=1e-300)
    assert (a.ctf is None) == (b.ctf is None)
    if a.ctf is not None:
        for field in fields(CtfParams):
            torch.testing.assert_close(getattr(a.ctf, field.name), getattr(b.ctf, field.name),
                                       rtol=TEXT_RTOL, atol=1e-300, msg=field.name)


@pytest.mark.parametrize("name", sorted(REFERENCE_STARS))
def test_reference_star_reads_and_round_trips(reference_data, tmp_path, name):
    n, box, pixel_sizes = REFERENCE_STARS[name]
    particles = _read(reference_data / name)
    assert len(particles) == n and particles.box == box
    np.testing.assert_allclose(np.unique(particles.pixel_size_A), pixel_sizes)
    assert particles.shifts_A.shape == (n, 2) and particles.image_indices.min() >= 0
    assert all(p.is_absolute() for p in particles.image_paths)
    out = tmp_path / "written.star"
    write_particles(out, particles)
    again = read_particles(out)
    assert_same_particles(particles, again)
    kept = set(particles.table.columns) - {"rlnOriginX", "rlnOriginY", "rlnMagnification",
                                          "rlnDetectorPixelSize", "rlnVoltage",
                                          "rlnSphericalAberration", "rlnAmplitudeContrast"}
    assert kept <= set(again.table.columns)


def test_relion30_fields(reference_data):
    particles = read_particles(reference_data / "star_formats/sample_particles_relion30.star")
    pixel_size_A = 5.0 * 1e4 / 37369.207031  # detector µm and magnification
    np.testing.assert_allclose(particles.shifts_A[0], [0.1996 * pixel_size_A] * 2)
    np.testing.assert_allclose(particles.eulers_deg[0], [109.186640, 122.200343, 71.118492])
    assert particles.ctf.defocus_u_A[0].item() == pytest.approx(21186.804688)
    assert particles.ctf.voltage_kV[0].item() == 300.0
    assert particles.image_paths[0].name == "sample.mrcs"
    assert particles.table["rlnRandomSubset"].tolist()[:2] == [2, 2]  # unknown columns kept


def test_optics_groups_merged_per_particle(reference_data):
    particles = read_particles(reference_data / "star_formats/relion31_6opticsgroups.star")
    # Particle 0 is in group 6 (1.25 Å, Cs 2.7); group 4 has Cs 2.6, group 2 is 1.24 Å.
    assert particles.optics_group[0] == 6 and particles.pixel_size_A[0] == 1.25
    for group, pixel_size_A, cs_mm in [(2, 1.24, 2.7), (4, 1.25, 2.6)]:
        members = particles.optics_group == group
        np.testing.assert_allclose(particles.pixel_size_A[members], pixel_size_A)
        np.testing.assert_allclose(particles.ctf.cs_mm[torch.from_numpy(members)], cs_mm,
                                   rtol=1e-6)
    assert particles.ctf.bfactor_A2.abs().max() == 0  # absent column -> 0
    assert particles.image_indices[0] == 2  # 3@... is the third image
    assert particles.image_paths[0] == (reference_data / "star_formats" / "Polish/job520/"
                                        "Micrographs/0003_shiny.mrcs")


def test_several_stacks_in_one_file(reference_data):
    particles = read_particles(reference_data / "star_formats/relion5.star")
    assert {p.name for p in particles.image_paths} == {"toy_images_a.mrcs", "toy_images_b.mrcs"}


def test_pixel_origins_converted_to_angstrom(reference_data):
    particles = read_particles(reference_data / "relion_reference/rln_proj_64_shifted.star")
    np.testing.assert_array_equal(particles.shifts_A[:2], [[6, 10], [10, -5]])
    assert particles.ctf is None


def _simulated(tmp_path, n=6, box=33, pixel_size_A=2.1, with_ctf=True):
    rng = np.random.default_rng(1)
    write_stack(tmp_path / "particles.mrcs", rng.normal(size=(n, box, box)), pixel_size_A)
    ctf = None
    if with_ctf:
        values = [rng.uniform(1e4, 2e4, n), rng.uniform(1e4, 2e4, n), rng.uniform(-90, 90, n),
                  np.full(n, 300.0), np.full(n, 2.7), np.full(n, 0.07), np.full(n, 50.0),
                  np.zeros(n)]
        ctf = CtfParams(*(torch.tensor(v, dtype=torch.float32) for v in values))
    return particles_from_arrays(tmp_path / "particles.mrcs", rng.uniform(-180, 180, (n, 3)),
                                 rng.normal(0, 3, (n, 2)), ctf, pixel_size_A, box)


@pytest.mark.parametrize("with_ctf", [True, False])
def test_written_file_is_relion31_and_round_trips(tmp_path, with_ctf):
    particles = _simulated(tmp_path, with_ctf=with_ctf)
    write_particles(tmp_path / "particles.star", particles)
    text = (tmp_path / "particles.star").read_text()
    assert text.count("# version 30001") == 2
    assert "data_optics" in text and "data_particles" in text
    assert "000006@particles.mrcs" in text
    for column in ["rlnOriginXAngst", "rlnImagePixelSize", "rlnImageSize",
                   "rlnImageDimensionality", "rlnVoltage", "rlnAngleRot"]:
        assert f"_{column} " in text
    again = read_particles(tmp_path / "particles.star")
    assert_same_particles(particles, again)
    assert again.optics["rlnVoltage"].tolist() == [300.0]


def test_subset(tmp_path):
    particles = _simulated(tmp_path)
    part = particles.subset([4, 1])
    np.testing.assert_array_equal(part.image_indices, [4, 1])
    np.testing.assert_array_equal(part.eulers_deg, particles.eulers_deg[[4, 1]])
    assert torch.equal(part.ctf.defocus_u_A, particles.ctf.defocus_u_A[[4, 1]])
    assert len(part) == 2


@pytest.mark.slow
def test_aspire_reads_written_star(tmp_path, monkeypatch):
    pytest.importorskip("aspire")
    monkeypatch.chdir(tmp_path)  # ASPIRE writes a ./logs folder on import
    from aspire.source import RelionSource

    from cryodiff.io.images import load_images

    particles = _simulated(tmp_path, n=5, box=32, pixel_size_A=1.7)
    write_particles(tmp_path / "particles.star", particles)
    source = RelionSource(str(tmp_path / "particles.star"))
    assert (source.n, source.L, source.pixel_size) == (5, 32, pytest.approx(1.7))
    np.testing.assert_allclose(source.images[:].asnumpy(), load_images(particles).numpy(),
                               rtol=1e-6)
    np.testing.assert_allclose(source.get_metadata("_rlnDefocusU"),
                               particles.ctf.defocus_u_A.numpy(), rtol=1e-6)


def _write_star(path, text):
    path.write_text(text)
    return path


def test_missing_file_and_columns(tmp_path):
    with pytest.raises(CryodiffError, match="file not found"):
        read_particles(tmp_path / "nothing.star")
    no_name = _write_star(tmp_path / "no_name.star",
                          "data_particles\n\nloop_\n_rlnAngleRot #1\n_rlnAngleTilt #2\n1 2\n3 4\n")
    with pytest.raises(CryodiffError, match="rlnImageName is missing") as error:
        read_particles(no_name)
    assert error.value.path == str(no_name)


def test_undefined_optics_group_and_bad_names(tmp_path):
    optics = ("data_optics\n\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n1 1.5\n\n"
              "data_particles\n\nloop_\n_rlnImageName\n_rlnOpticsGroup\n")
    star = _write_star(tmp_path / "groups.star", optics + "1@a.mrcs 1\n2@a.mrcs 3\n")
    with pytest.raises(CryodiffError, match="optics group 3"):
        read_particles(star)
    star = _write_star(tmp_path / "names.star", optics + "x@a.mrcs 1\n")
    with pytest.raises(CryodiffError, match="not of the form N@stack"):
        read_particles(star)
    star = _write_star(tmp_path / "zero.star", optics + "0@a.mrcs 1\n")
    with pytest.raises(CryodiffError, match="start at 1"):
        read_particles(star)
