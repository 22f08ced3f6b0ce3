"""Denoising with a checkpoint: shapes, posterior std, determinism, the CLI on a stack."""

from __future__ import annotations

import pytest
import torch

from cryodiff.cli import main as cli
from cryodiff.denoise import denoise_with, load_denoiser
from cryodiff.training.data import PairedStackData
from cryodiff.training.loop import train
from cryodiff.training.postprocess import train_postprocessor
from training_helpers import blob_pairs, tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("denoise") / "run"
    config = tiny_config(steps=4, val_every=100)
    data = PairedStackData(*blob_pairs(40, 16), config)
    train(config, run, data, progress=False)
    return run


def test_posterior_mean_std_and_determinism(run_dir):
    denoiser = load_denoiser(run_dir)
    images = blob_pairs(5, 16, seed=3)[0]
    one = denoise_with(denoiser, images, steps=3, n_samples=1, batch_size=2)
    assert one.mean.shape == (5, 16, 16) and one.std is None
    again = denoise_with(denoiser, images, steps=3, n_samples=1, batch_size=2)
    assert torch.equal(one.mean, again.mean)
    several = denoise_with(denoiser, images, steps=3, sampler="ddpm", n_samples=3, batch_size=6)
    assert several.std.shape == (5, 16, 16) and bool((several.std > 0).all())


def test_postprocessor_is_stored_and_applied(run_dir, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    config = tiny_config(steps=4, val_every=100)
    train_postprocessor(run, PairedStackData(*blob_pairs(40, 16), config), progress=False)
    denoiser = load_denoiser(run)
    assert denoiser.postprocessor is not None
    images = blob_pairs(3, 16, seed=4)[0]
    with_post = denoise_with(denoiser, images, steps=2)
    without = denoise_with(denoiser, images, steps=2, postprocess=False)
    assert not torch.equal(with_post.mean, without.mean)


def test_cli_denoise_stack_and_errors(run_dir, tmp_path, capsys):
    from cryodiff.io.mrc import read_stack, write_stack
    write_stack(tmp_path / "in.mrcs", blob_pairs(3, 16, seed=5)[0], 2.0)
    out = tmp_path / "out.mrcs"
    assert cli(["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(run_dir), "--out",
                str(out), "--steps", "2", "--samples", "2"]) == 0
    assert read_stack(out).shape == (3, 16, 16)
    assert read_stack(tmp_path / "out_std.mrcs").shape == (3, 16, 16)
    assert cli(["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(tmp_path / "nope"),
                "--out", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    # x0 is a v-model's read-out: an eps checkpoint is refused in one line
    assert cli(["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(run_dir), "--out",
                str(tmp_path / "x0.mrcs"), "--method", "x0"]) == 2
    assert "needs a v-predicting model" in capsys.readouterr().err
    assert not (tmp_path / "x0.mrcs").exists()


@pytest.mark.parametrize("target", ["clean_ctf", "clean"])
def test_cli_denoise_star_keeps_ctf_only_for_clean_ctf_target(target, tmp_path, capsys):
    """A model that restores the CTF (target ``clean``) must give a STAR without CTF columns,
    so that `cryodiff reconstruct` does not weight by the CTF a second time."""
    from cryodiff.ctf import ctf_params
    from cryodiff.io.mrc import read_stack, write_stack
    from cryodiff.io.star import particles_from_arrays, read_particles, write_particles

    config = tiny_config(steps=1, val_every=100, target=target)
    run = tmp_path / "run"
    train(config, run, PairedStackData(*blob_pairs(20, 16), config), progress=False)
    n = 4
    write_stack(tmp_path / "in.mrcs", blob_pairs(n, 16, seed=6)[0], 3.0)
    eulers = torch.tensor([[0.0, 0.0, 0.0], [10.0, 80.0, 30.0], [200.0, 45.0, -60.0],
                           [90.0, 120.0, 5.0]])
    ctf = ctf_params(torch.tensor([12000.0, 15000.0, 18000.0, 21000.0]), amplitude_contrast=0.07)
    write_particles(tmp_path / "in.star", particles_from_arrays(
        "in.mrcs", eulers, None, ctf, 3.0, 16, base_dir=tmp_path))
    out = tmp_path / "den.mrcs"
    assert cli(["denoise", str(tmp_path / "in.star"), "--checkpoint", str(run), "--out",
                str(out), "--steps", "1", "--device", "cpu"]) == 0
    written = read_particles(tmp_path / "den.star")
    assert read_stack(out).shape == (n, 16, 16)
    assert [p.name for p in written.image_paths] == ["den.mrcs"] * n
    assert written.image_indices.tolist() == list(range(n))
    assert written.eulers_deg == pytest.approx(eulers.double().numpy())
    assert float(written.pixel_size_A[0]) == 3.0
    if target == "clean_ctf":
        assert written.ctf is not None
        assert written.ctf.defocus_u_A.tolist() == ctf.defocus_u_A.tolist()
        assert float(written.ctf.amplitude_contrast[0]) == pytest.approx(0.07)
    else:
        assert written.ctf is None
        # The optics table still describes the microscope.
        assert float(written.optics["rlnAmplitudeContrast"].iloc[0]) == pytest.approx(0.07)
        capsys.readouterr()
        assert cli(["reconstruct", str(tmp_path / "den.star"), "--out",
                    str(tmp_path / "map.mrc"), "--quiet"]) == 0
        assert "reconstructing without CTF" in capsys.readouterr().out
