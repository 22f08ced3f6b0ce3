"""Denoising real particles: the written STAR keeps the input's tables (read back by starfile
and by ASPIRE, which we did not write), the checkpoint's box and pixel size are enforced, and
real grey levels are mapped to the training scale and back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from cryodiff.cli import main as cli
from cryodiff.denoise import denoise_with, load_denoiser, match_training_scale
from cryodiff.io.mrc import read_stack, write_stack
from cryodiff.io.star import read_particles
from cryodiff.io.star_write import PARTICLE_CTF_COLUMNS, write_derived_particles
from cryodiff.resample import resample_particles
from cryodiff.training.data import Normalisation, PairedStackData
from cryodiff.training.loop import train
from training_helpers import blob_pairs, tiny_config

BOX = 32


def _blocks(path) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    blocks = starfile.read(path, always_dict=True)
    optics = blocks.pop("optics", None)
    return optics, next(iter(blocks.values()))


def _trained_run(tmp_path, pixel_size_A: float, target: str = "clean_ctf"):
    config = tiny_config(box=BOX, steps=1, val_every=100, target=target)
    run = tmp_path / f"run_{pixel_size_A:g}_{target}"
    train(config, run, PairedStackData(*blob_pairs(20, BOX), config, pixel_size_A=pixel_size_A),
          progress=False)
    return run


@pytest.mark.parametrize("star", ["real_particles/empiar_10076_7.star",
                                  "real_particles/relion31.star", "real_particles/sample.star",
                                  "star_formats/relion31_6opticsgroups.star",
                                  "star_formats/sample_particles_relion30.star"])
@pytest.mark.parametrize("drop_ctf", [False, True])
def test_derived_star_keeps_every_column_but_the_image_name(reference_data, tmp_path, star,
                                                             drop_ctf):
    source = reference_data / star
    particles = read_particles(source)
    out = tmp_path / "sub" / "den.star"
    out.parent.mkdir()
    write_derived_particles(out, particles, tmp_path / "sub" / "den.mrcs", drop_ctf=drop_ctf)
    optics_in, table_in = _blocks(source)
    optics_out, table_out = _blocks(out)
    if optics_in is None:
        assert optics_out is None
    else:
        pd.testing.assert_frame_equal(optics_out, optics_in, check_dtype=False)
    n = len(table_in)
    assert table_out["rlnImageName"].tolist() == [f"{i:06d}@den.mrcs" for i in range(1, n + 1)]
    dropped = [c for c in PARTICLE_CTF_COLUMNS if c in table_in.columns] if drop_ctf else []
    assert "rlnDefocusU" not in table_out.columns if drop_ctf else True
    expected = table_in.drop(columns=["rlnImageName", *dropped])
    pd.testing.assert_frame_equal(table_out.drop(columns=["rlnImageName"]), expected,
                                  check_dtype=False)


def test_resampled_particles_keep_content_and_geometry(reference_data, tmp_path):
    """Fourier cropping 256 → 32 px: pixel size × 8, origins in Å unchanged, and the images
    equal the low-pass content of the originals (their mean is preserved exactly)."""
    source = reference_data / "real_particles/relion31.star"
    star = resample_particles(source, tmp_path / "small.mrcs", BOX)
    before, after = read_particles(source), read_particles(star)
    assert after.box == BOX and after.pixel_size_A == pytest.approx(before.pixel_size_A * 8)
    assert after.shifts_A == pytest.approx(before.shifts_A)
    assert after.eulers_deg == pytest.approx(before.eulers_deg)
    original = read_stack(before.image_paths[0]).double()
    small = read_stack(tmp_path / "small.mrcs").double()
    assert small.mean(dim=(-2, -1)) == pytest.approx(original.mean(dim=(-2, -1)), rel=1e-5,
                                                     abs=1e-5)


@pytest.mark.parametrize("name", ["relion31", "empiar_10076_7"])  # with and without poses
def test_cli_denoise_real_star_is_read_by_aspire_and_starfile(reference_data, tmp_path, name):
    aspire_source = pytest.importorskip("aspire.source")
    star_in = resample_particles(reference_data / f"real_particles/{name}.star",
                                 tmp_path / f"{name}_32.mrcs", BOX)
    pixel_size_A = float(read_particles(star_in).pixel_size_A[0])
    run = _trained_run(tmp_path, pixel_size_A)
    out = tmp_path / "out" / "den.mrcs"
    out.parent.mkdir()
    assert cli(["denoise", str(star_in), "--checkpoint", str(run), "--out", str(out),
                "--steps", "1", "--device", "cpu"]) == 0
    denoised = read_stack(out)
    assert denoised.shape == (len(read_particles(star_in)), BOX, BOX)
    assert bool(torch.isfinite(denoised).all())

    optics_in, table_in = _blocks(star_in)
    optics_out, table_out = _blocks(out.with_suffix(".star"))
    pd.testing.assert_frame_equal(optics_out, optics_in, check_dtype=False)
    pd.testing.assert_frame_equal(table_out.drop(columns=["rlnImageName"]),
                                  table_in.drop(columns=["rlnImageName"]), check_dtype=False)

    source = aspire_source.RelionSource(str(out.with_suffix(".star")))
    original = aspire_source.RelionSource(str(star_in))
    assert source.n == len(denoised) and source.L == BOX
    assert source.pixel_size == pytest.approx(pixel_size_A)
    np.testing.assert_allclose(source.images[:].asnumpy(), denoised.numpy(), rtol=1e-6)
    for key in ("_rlnDefocusU", "_rlnDefocusV", "_rlnVoltage"):
        np.testing.assert_array_equal(source.get_metadata(key), original.get_metadata(key))
    if "rlnAngleRot" in table_in.columns:
        np.testing.assert_allclose(source.rotations, original.rotations, atol=1e-12)
        np.testing.assert_allclose(source.offsets, original.offsets, atol=1e-12)


def test_cli_denoise_refuses_a_checkpoint_of_another_box_or_pixel_size(reference_data,
                                                                       tmp_path, capsys):
    run = _trained_run(tmp_path, 22.448)  # relion31.star at 32 px
    checkpoint = load_denoiser(run).checkpoint
    assert load_denoiser(run).pixel_size_A == pytest.approx(22.448)
    other_pixel = resample_particles(reference_data / "real_particles/empiar_10076_7.star",
                                     tmp_path / "e32.mrcs", BOX)  # 32 px at 13.1 Å
    cases = [(other_pixel, "32 px at 13.1 Å/px"),
             (reference_data / "real_particles/relion31.star", "256 px at 2.806 Å/px")]
    for star, particles_size in cases:
        capsys.readouterr()
        out = tmp_path / "refused.mrcs"
        assert cli(["denoise", str(star), "--checkpoint", str(run), "--out", str(out),
                    "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert checkpoint in err and "32 px at 22.45 Å/px" in err and particles_size in err
        assert not out.exists() and not out.with_suffix(".star").exists()


def test_pixel_size_of_a_simulated_folder_is_recorded(tmp_path):
    noisy, clean = blob_pairs(20, 16)
    write_stack(tmp_path / "particles.mrcs", noisy, 3.25)
    write_stack(tmp_path / "clean_ctf.mrcs", clean, 3.25)
    config = tiny_config(steps=1, val_every=100)
    data = PairedStackData.from_folder(tmp_path, config)
    assert data.pixel_size_A == pytest.approx(3.25)
    train(config, tmp_path / "run", data, progress=False)
    assert load_denoiser(tmp_path / "run").pixel_size_A == pytest.approx(3.25)


def test_match_training_scale_hits_the_training_statistics():
    norm = Normalisation(condition_mean=0.3, condition_std=2.0, target_mean=0.1, target_std=0.5)
    images = torch.randn(4, 12, 12, generator=torch.Generator().manual_seed(1)) * 40 + 900
    scaled, a, b = match_training_scale(images, norm)
    assert scaled.mean(dim=(-2, -1)).double() == pytest.approx(0.3, abs=1e-4)
    assert scaled.std(dim=(-2, -1)).double() == pytest.approx(2.0, rel=1e-5)
    assert ((scaled.double() - b) / a) == pytest.approx(images.double(), rel=1e-6)


def test_matched_denoising_follows_a_change_of_grey_levels(tmp_path):
    """Real particles come in arbitrary units: with ``match_scale`` the output of ``c·x + d``
    is ``c·(output of x) + d`` (the same samples, drawn in the training units)."""
    run = _trained_run(tmp_path, 2.0)
    denoiser = load_denoiser(run)
    images = blob_pairs(3, BOX, seed=7)[0]
    one = denoise_with(denoiser, images, steps=2, sampler="ddim", match_scale=True, seed=4)
    other = denoise_with(denoiser, 250.0 * images - 40.0, steps=2, sampler="ddim",
                         match_scale=True, seed=4)
    scale = float(one.mean.std())
    assert (other.mean - (250.0 * one.mean - 40.0)).abs().max() / 250.0 < 1e-4 * scale
    plain = denoise_with(denoiser, 250.0 * images - 40.0, steps=2, sampler="ddim", seed=4)
    assert not torch.allclose(plain.mean, other.mean)
